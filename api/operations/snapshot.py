"""The operations snapshot: this process's own Prometheus metrics, read from its
registry (the numbers ``/metrics`` serves), shaped for a page."""

from __future__ import annotations

from prometheus_client.metrics import MetricWrapperBase

from api.operations.models import OperationsSnapshot, Sample
from core import metrics
from core.settings import Settings


def _samples(metric: MetricWrapperBase, suffix: str, *, gauge: bool = False) -> list[Sample]:
    """The samples named ``<metric><suffix>`` (``_total`` of a counter, ``""`` of a
    gauge, ``_count`` of a histogram); a count of zero is left out, a gauge's kept."""
    found: list[Sample] = []
    for family in metric.collect():
        for sample in family.samples:
            if sample.name == family.name + suffix and (gauge or sample.value):
                found.append(Sample(labels=dict(sample.labels), value=sample.value))
    return found


def _sum_of(metric: MetricWrapperBase, suffix: str) -> float:
    return sum(sample.value for sample in _samples(metric, suffix))


def _http_requests() -> list[Sample]:
    """Requests per (route, status), summed over methods."""
    totals: dict[tuple[str, str], float] = {}
    for sample in _samples(metrics.HTTP_REQUEST_DURATION, "_count"):
        cell = (sample.labels.get("route", ""), sample.labels.get("status", ""))
        totals[cell] = totals.get(cell, 0.0) + sample.value
    return [
        Sample(labels={"route": route, "status": status}, value=value)
        for (route, status), value in sorted(totals.items())
    ]


def operations_snapshot(settings: Settings, *, ingest_enabled: bool) -> OperationsSnapshot:
    """What this process has counted since it started; counts are process-wide (every
    tenant), the same numbers its ``/metrics`` serves."""
    count = _sum_of(metrics.INGEST_FRESHNESS, "_count")
    total_s = _sum_of(metrics.INGEST_FRESHNESS, "_sum")
    return OperationsSnapshot(
        process_ingest=ingest_enabled,
        ingest_lag=_samples(metrics.INGEST_CONSUMER_LAG, "", gauge=True),
        freshness_s_mean=round(total_s / count, 4) if count else None,
        freshness_count=int(count),
        ingest_events=_samples(metrics.INGEST_EVENTS, "_total"),
        dlq_sent=_samples(metrics.INGEST_DLQ, "_total"),
        route_decisions=_samples(metrics.ROUTE_DECISIONS, "_total"),
        route_target_large_share=settings.router_target_large_share,
        firewall_actions=_samples(metrics.FIREWALL_ACTIONS, "_total"),
        http_requests=_http_requests(),
        llm_backends_healthy=_samples(metrics.LLM_BACKEND_HEALTHY, "", gauge=True),
        follower_staleness_s=_samples(metrics.FOLLOWER_STALENESS, "", gauge=True),
    )
