"""Publish -> searchable time of one document on the running local stack (``make up``).

    python -m bench.publish_to_searchable --runs 20

Each run publishes one new hr-only document to Kafka (idempotent producer, acks=all),
then polls ``POST /v1/search`` as an hr user, narrowed to that document's id, until it
is returned. The
baseline, measured in the same run, is the round trip of the same search for a document
that is already indexed: the floor of this polling method. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid

import httpx

from core.kafka import KafkaProducer
from core.settings import Settings
from ingest.models import DocumentEvent
from ingest.publish import DocumentPublisher


def _found(client: httpx.Client, key: str, query: str, doc_id: str) -> bool:
    # Narrowed to the one document: the same ACL-filtered search path, and an answer
    # that does not depend on how the other bench documents rank.
    response = client.post(
        "/v1/search",
        json={"query": query, "top_k": 5, "filter": {"doc_id": [doc_id]}},
        headers={"Authorization": f"Bearer {key}"},
    )
    response.raise_for_status()
    return any(hit["doc_id"] == doc_id for hit in response.json()["data"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="documents to publish (default 20)")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="Headwater API")
    parser.add_argument("--key", default="hw-dev-alice", help="API key of an hr user")
    parser.add_argument("--timeout-s", type=float, default=30.0, help="give up on one document")
    args = parser.parse_args()

    settings = Settings()
    producer = KafkaProducer(settings.kafka_bootstrap)
    publisher = DocumentPublisher(producer, settings.documents_topic)
    fresh: list[float] = []
    floor: list[float] = []
    with httpx.Client(base_url=args.url, timeout=10) as client:
        for run in range(args.runs):
            word = f"quokka{uuid.uuid4().hex[:6]}"
            doc_id = f"bench:freshness:{uuid.uuid4().hex}"
            text = f"Bench document {run}: the {word} report covers quarterly travel budgets."
            started = time.perf_counter()
            publisher.publish(
                DocumentEvent(
                    op="upsert",
                    tenant="acme",
                    doc_id=doc_id,
                    version=1,
                    acl={"groups": ["hr"]},
                    title=f"{word} report",
                    text=text,
                )
            )
            while not _found(client, args.key, f"{word} report", doc_id):
                if time.perf_counter() - started > args.timeout_s:
                    raise SystemExit(f"{doc_id} not searchable after {args.timeout_s}s")
            fresh.append(time.perf_counter() - started)
            started = time.perf_counter()
            assert _found(client, args.key, f"{word} report", doc_id)
            floor.append(time.perf_counter() - started)
    producer.close()
    print(
        json.dumps(
            {
                "runs": args.runs,
                "publish_to_searchable_p50_s": round(statistics.median(fresh), 4),
                "publish_to_searchable_p95_s": round(
                    sorted(fresh)[int(0.95 * (len(fresh) - 1))], 4
                ),
                "publish_to_searchable_max_s": round(max(fresh), 4),
                "search_roundtrip_p50_s": round(statistics.median(floor), 4),
            }
        )
    )


if __name__ == "__main__":
    main()
