"""Revocation latency: from a group removal, an ACL change or a key revocation being
written to the first request that no longer sees the document (or is refused).

    python -m bench.revocation --quick               # ~1-2 minutes on 2 cores
    python -m bench.revocation --quick --replicas 2  # the split deployment, ~1.5 minutes

Default: a private Kafka broker and one Headwater app (API + worker over the embedded
store, run in-process with Starlette's test client; no LLM is needed for search). Each run
first makes a document visible to the user, then revokes access, alternately by
(a) an ACL change through ``PUT /v1/documents/{id}/acl`` (Kafka -> worker -> payload
update, no re-embedding) and (b) removing the user from the group on
``headwater.principals.v1`` (directory -> next request), and polls ``POST /v1/search``
(narrowed to the document) until the hit is gone. Baseline in the same run: the search
round trip. Prints one JSON object.

``--replicas 2``: the production topology instead (``deploy.split``): a Qdrant server
(../shared/bin/qdrant), ``headwater worker`` and two ``headwater api`` processes over
HTTP, keys on the keys topic. Each change is written through replica one (or the
principals topic) and polled on replica two; a third kind of run, (c), revokes a key
through replica one's admin API and polls replica two (``GET /v1/models``, the cheapest
authenticated request) until it answers 401. The search polls of (a) and (b) cost a query
embedding each, so their figures include up to one search round trip of polling.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from typing import Any

import httpx
from fastapi.testclient import TestClient

from acl.models import Principal
from bench.harness import workspace
from core.kafka import KafkaProducer
from core.settings import Settings
from deploy.process import StackError, free_port
from deploy.split import SplitDeployment
from deploy.stack import private_broker
from headwater.keys_cli import open_registry
from headwater.processes import build_app

USER_KEY, CONNECTOR_KEY = "bench-user", "bench-connector"


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _sees(client: TestClient | httpx.Client, doc_id: str, key: str = USER_KEY) -> bool:
    response = client.post(
        "/v1/search",
        json={"query": "quarterly forecast", "top_k": 3, "filter": {"doc_id": [doc_id]}},
        headers={"Authorization": f"Bearer {key}"},
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


def _split_env(settings: Settings) -> dict[str, str]:
    return {
        "HEADWATER_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "HEADWATER_API_KEYS_SOURCE": "topic",
        "HEADWATER_CONSUMER_GROUP": settings.consumer_group,
        "HEADWATER_DATA_DIR": str(settings.data_dir),
        # The benchmark polls as fast as answers come: the per-key limit would throttle it.
        "HEADWATER_RATE_LIMIT_RPS": "0",
        # Search needs no model server; nothing listens here, so none is ever asked.
        "HEADWATER_LLM_SMALL_URL": f"http://127.0.0.1:{free_port()}/v1",
        "HEADWATER_LOG_LEVEL": "WARNING",
    }


class _Replicas:
    """The two API replicas as one client each, and the keys the runs use."""

    def __init__(self, one: httpx.Client, two: httpx.Client, *, admin: str, connector: str):
        self.one, self.two = one, two
        self._admin = {"Authorization": f"Bearer {admin}"}
        self._connector = {"Authorization": f"Bearer {connector}"}

    def publish(self, doc_id: str, run_no: int) -> None:
        self.one.post(
            "/v1/documents",
            headers=self._connector,
            json={
                "doc_id": doc_id,
                "version": 1,
                "acl": {"groups": ["finance"]},
                "text": f"Quarterly forecast number {run_no}: revenue up four percent.",
            },
        ).raise_for_status()

    def change_acl(self, doc_id: str) -> None:
        self.one.put(
            f"/v1/documents/{doc_id}/acl",
            headers=self._connector,
            json={"version": 2, "acl": {"groups": ["board"]}},
        ).raise_for_status()

    def new_key(self, user_id: str) -> tuple[str, str]:
        created = self.one.post(
            "/v1/admin/keys", headers=self._admin, json={"user_id": user_id, "groups": ["finance"]}
        )
        created.raise_for_status()
        return created.json()["key"], created.json()["id"]

    def revoke(self, key_id: str) -> None:
        self.one.delete(f"/v1/admin/keys/{key_id}", headers=self._admin).raise_for_status()

    def refused_on_two(self, key: str) -> bool:
        response = self.two.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
        if response.status_code not in (200, 401):
            response.raise_for_status()
        return response.status_code == 401


def run_replicas(*, runs: int) -> dict[str, Any]:
    """The split deployment: written through replica one, seen on replica two."""
    with workspace() as root, private_broker(root) as bootstrap:
        settings = Settings(
            kafka_bootstrap=bootstrap,
            data_dir=root / "data",
            api_keys_source="topic",
            consumer_group=f"revocation-{uuid.uuid4().hex[:6]}",
        )
        with open_registry(settings) as registry:
            admin, _ = registry.create(Principal(tenant="acme", user_id="root", roles=("admin",)))
            connector, _ = registry.create(
                Principal(tenant="acme", user_id="bench", roles=("connector",))
            )
            user, _ = registry.create(
                Principal(tenant="acme", user_id="rita@acme.com", groups=("finance",))
            )
        producer = KafkaProducer(bootstrap)
        try:
            with SplitDeployment(root, env=_split_env(settings)) as split:
                try:
                    split.start_qdrant()
                    split.start_worker()  # first: it creates the collection on the server
                    split.wait_ready(300)
                    one, two = split.start_apis(2, need_llm=False)
                    split.wait_ready(300)
                except StackError as exc:
                    raise SystemExit(f"the split deployment did not start: {exc}") from exc
                with (
                    httpx.Client(base_url=one, timeout=30) as first,
                    httpx.Client(base_url=two, timeout=30) as second,
                ):
                    replicas = _Replicas(first, second, admin=admin, connector=connector)
                    return _measure_replicas(
                        replicas, user=user, producer=producer, settings=settings, runs=runs
                    )
        finally:
            producer.close()


def _measure_replicas(
    replicas: _Replicas, *, user: str, producer: KafkaProducer, settings: Settings, runs: int
) -> dict[str, Any]:
    def member(groups: list[str]) -> None:
        producer.send(
            settings.principals_topic,
            key=b"acme/rita@acme.com",
            value=json.dumps({"groups": groups}).encode(),
        )

    timings: dict[str, list[float]] = {"acl_change": [], "group_removal": [], "key_revocation": []}
    floor: list[float] = []
    member(["finance"])
    for run_no in range(runs):
        kind = ("acl_change", "group_removal", "key_revocation")[run_no % 3]
        if kind == "key_revocation":
            key, key_id = replicas.new_key(f"bot-{run_no}@acme.com")
            _until(lambda key=key: not replicas.refused_on_two(key))
            started = time.perf_counter()
            replicas.revoke(key_id)
            _until(lambda key=key: replicas.refused_on_two(key))
            timings[kind].append(time.perf_counter() - started)
            continue
        doc_id = f"forecast-{run_no}"
        replicas.publish(doc_id, run_no)
        _until(lambda doc_id=doc_id: _sees(replicas.two, doc_id, user))
        started = time.perf_counter()
        _sees(replicas.two, doc_id, user)
        floor.append(time.perf_counter() - started)
        started = time.perf_counter()
        if kind == "acl_change":
            replicas.change_acl(doc_id)
        else:
            member([])
        _until(lambda doc_id=doc_id: not _sees(replicas.two, doc_id, user))
        timings[kind].append(time.perf_counter() - started)
        if kind == "group_removal":
            member(["finance"])
    every = [value for values in timings.values() for value in values]
    result: dict[str, Any] = {
        "replicas": 2,
        "runs": runs,
        "revocation_p50_s": round(statistics.median(every), 4),
        "revocation_p99_s": round(_quantile(every, 0.99), 4),
    }
    for kind, values in timings.items():
        result[f"{kind}_p50_s"] = round(statistics.median(values), 4)
        result[f"{kind}_p99_s"] = round(_quantile(values, 0.99), 4)
        result[f"{kind}_max_s"] = round(max(values), 4)
    result["search_roundtrip_p50_s"] = round(statistics.median(floor), 4)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="Revocation latency benchmark.")
    parser.add_argument("--quick", action="store_true", help="40 revocations (42 with replicas)")
    parser.add_argument(
        "--runs", type=int, help="revocations (by ACL and group; with replicas also by key)"
    )
    parser.add_argument(
        "--replicas",
        type=int,
        choices=(1, 2),
        default=1,
        help="1: one in-process app; 2: two API processes, a worker and a Qdrant server",
    )
    args = parser.parse_args()
    if args.replicas == 2:
        runs = args.runs or (42 if args.quick else 201)
        if runs < 3:
            parser.error("--replicas 2 needs at least 3 runs (one of each kind)")
        print(json.dumps(run_replicas(runs=runs)))
    else:
        print(json.dumps(run(runs=args.runs or (40 if args.quick else 200))))


if __name__ == "__main__":
    main()
