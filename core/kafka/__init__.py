"""The one Kafka adapter (confluent-kafka): the producer, the topic follower every reader
uses, group reads for the dead-letter tools, and the admin (topics, consumer lag).
No other package of ours imports ``confluent_kafka``."""

from core.kafka.admin import (
    ConfigChange,
    ConsumerLag,
    consumer_lag,
    ensure_topics,
    migrate_topics,
    topic_configs,
)
from core.kafka.follower import Record, TopicFollower, read_records, read_to_end
from core.kafka.headers import Headers, header_pairs
from core.kafka.producer import Delivered, KafkaProducer, key_partition, producer_config

__all__ = [
    "ConfigChange",
    "ConsumerLag",
    "Delivered",
    "Headers",
    "KafkaProducer",
    "Record",
    "TopicFollower",
    "consumer_lag",
    "ensure_topics",
    "header_pairs",
    "key_partition",
    "migrate_topics",
    "producer_config",
    "read_records",
    "read_to_end",
    "topic_configs",
]
