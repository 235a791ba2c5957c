"""Revocation latency: from a group removal or an ACL change being published to the
first request that no longer sees the document.

    python -m bench.revocation --quick      # ~1-2 minutes on 2 cores

A private Kafka broker and one Headwater app (API + worker over the embedded store, run
in-process with Starlette's test client; no LLM is needed for search). Each run first
makes a document visible to the user, then revokes access, alternately by
(a) an ACL change through ``PUT /v1/documents/{id}/acl`` (Kafka -> worker -> payload
update, no re-embedding) and (b) removing the user from the group on
``headwater.principals.v1`` (directory -> next request), and polls ``POST /v1/search``
(narrowed to the document) until the hit is gone. Baseline in the same run: the search
round trip. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from typing import Any

from fastapi.testclient import TestClient

from bench.harness import workspace
from core.kafka import KafkaProducer
from core.settings import Settings
from deploy.stack import private_broker
from headwater.processes import build_app

USER_KEY, CONNECTOR_KEY = "bench-user", "bench-connector"


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _sees(client: TestClient, doc_id: str) -> bool:
    response = client.post(
        "/v1/search",
        json={"query": "quarterly forecast", "top_k": 3, "filter": {"doc_id": [doc_id]}},
        headers={"Authorization": f"Bearer {USER_KEY}"},
    )
    response.raise_for_status()
    return bool(response.json()["data"])


def _until(check: Any, timeout_s: float = 30.0) -> float:
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > timeout_s:
            raise SystemExit("timed out waiting for the change")
    return time.perf_counter() - started


def run(*, runs: int) -> dict[str, Any]:
    with workspace() as root, private_broker(root) as bootstrap:
        keys = root / "keys.json"
        keys.write_text(
            json.dumps(
                {
                    "keys": [
                        {
                            "key": USER_KEY,
                            "tenant": "acme",
                            "user_id": "rita@acme.com",
                            "groups": ["finance"],
                        },
                        {
                            "key": CONNECTOR_KEY,
                            "tenant": "acme",
                            "user_id": "bench",
                            "roles": ["connector"],
                        },
                    ]
                }
            )
        )
        settings = Settings(
            kafka_bootstrap=bootstrap,
            data_dir=root / "data",
            api_keys_file=keys,
            consumer_group=f"revocation-{uuid.uuid4().hex[:6]}",
        )
        producer = KafkaProducer(bootstrap)
        connector = {"Authorization": f"Bearer {CONNECTOR_KEY}"}

        def member(groups: list[str]) -> None:
            producer.send(
                settings.principals_topic,
                key=b"acme/rita@acme.com",
                value=json.dumps({"groups": groups}).encode(),
            )

        acl_change: list[float] = []
        group_removal: list[float] = []
        floor: list[float] = []
        with TestClient(build_app(settings)) as client:
            member(["finance"])
            for run_no in range(runs):
                doc_id = f"forecast-{run_no}"
                client.post(
                    "/v1/documents",
                    headers=connector,
                    json={
                        "doc_id": doc_id,
                        "version": 1,
                        "acl": {"groups": ["finance"]},
                        "text": f"Quarterly forecast number {run_no}: revenue up four percent.",
                    },
                ).raise_for_status()
                _until(lambda doc_id=doc_id: _sees(client, doc_id))
                started = time.perf_counter()
                _sees(client, doc_id)
                floor.append(time.perf_counter() - started)
                started = time.perf_counter()
                if run_no % 2 == 0:
                    client.put(
                        f"/v1/documents/{doc_id}/acl",
                        headers=connector,
                        json={"version": 2, "acl": {"groups": ["board"]}},
                    ).raise_for_status()
                    _until(lambda doc_id=doc_id: not _sees(client, doc_id))
                    acl_change.append(time.perf_counter() - started)
                else:
                    member([])
                    _until(lambda doc_id=doc_id: not _sees(client, doc_id))
                    group_removal.append(time.perf_counter() - started)
                    member(["finance"])
        producer.close()
    both = acl_change + group_removal
    return {
        "runs": runs,
        "revocation_p50_s": round(statistics.median(both), 4),
        "revocation_p99_s": round(_quantile(both, 0.99), 4),
        "acl_change_p50_s": round(statistics.median(acl_change), 4),
        "acl_change_max_s": round(max(acl_change), 4),
        "group_removal_p50_s": round(statistics.median(group_removal), 4),
        "group_removal_max_s": round(max(group_removal), 4),
        "search_roundtrip_p50_s": round(statistics.median(floor), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Revocation latency benchmark.")
    parser.add_argument("--quick", action="store_true", help="40 revocations")
    parser.add_argument("--runs", type=int, help="revocations (half by ACL, half by group)")
    args = parser.parse_args()
    print(json.dumps(run(runs=args.runs or (40 if args.quick else 200))))


if __name__ == "__main__":
    main()
