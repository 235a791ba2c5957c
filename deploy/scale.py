"""The scale-out topology on one machine: a three-node Qdrant cluster, ingest workers in
one consumer group, API replicas (the compose topology minus containers).

    with ScaleOut(root, env={"HEADWATER_KAFKA_BOOTSTRAP": bootstrap}) as scale:
        scale.start_qdrant_cluster(nodes=3, shards=3, replicas=2)
        scale.start_workers(2)
        scale.start_apis(2)
        scale.wait_ready(300)
        scale.cluster.kill(2)      # kill -9 of a node
        scale.restart_node(2)      # same ports and storage: it rejoins and catches up
        scale.kill("worker-1")     # kill -9 of a Headwater process (start it again with
                                   # scale.process("worker-1").start())

Every Headwater process is given all the nodes' URLs (``HEADWATER_QDRANT_URL``, comma
separated) and moves to the next node when one does not answer; collections are created
with ``shards`` shards of ``replicas`` copies, so losing one node loses no data and
stops no query. ``headwater up --scale`` runs the same parts in the background.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.process import ManagedProcess, StackError, free_port, http_ok
from deploy.split import (
    QDRANT_BIN_ENV,
    SplitDeployment,
    api_ready,
    headwater_command,
    qdrant_binary,
    worker_ready,
)
from deploy.stack import StackPaths


@dataclass(frozen=True)
class NodePorts:
    http: int
    grpc: int
    p2p: int

    @classmethod
    def free(cls) -> NodePorts:
        return cls(http=free_port(), grpc=free_port(), p2p=free_port())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"


def cluster_node(
    *,
    binary: Path,
    index: int,
    ports: NodePorts,
    bootstrap: NodePorts | None,
    data_dir: Path,
    log_path: Path,
    pid_path: Path | None = None,
) -> ManagedProcess:
    """Node ``index`` of a Qdrant cluster on loopback; the first starts the cluster, the
    others join it through the first's p2p port (``bootstrap``). A node restarted with
    the same storage rejoins from its own state."""
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [str(binary), "--uri", f"http://127.0.0.1:{ports.p2p}"]
    if bootstrap is not None:
        argv += ["--bootstrap", f"http://127.0.0.1:{bootstrap.p2p}"]
    return ManagedProcess(
        f"qdrant-{index}",
        argv,
        env={
            "QDRANT__SERVICE__HOST": "127.0.0.1",
            "QDRANT__SERVICE__HTTP_PORT": str(ports.http),
            "QDRANT__SERVICE__GRPC_PORT": str(ports.grpc),
            "QDRANT__CLUSTER__ENABLED": "true",
            "QDRANT__CLUSTER__P2P__PORT": str(ports.p2p),
            "QDRANT__STORAGE__STORAGE_PATH": str(data_dir / "storage"),
            "QDRANT__STORAGE__SNAPSHOTS_PATH": str(data_dir / "snapshots"),
            "QDRANT__TELEMETRY_DISABLED": "true",
            "QDRANT__LOG_LEVEL": "WARN",
        },
        log_path=log_path,
        ready=http_ok(f"{ports.url}/readyz"),
        pid_path=pid_path,
        cwd=data_dir,
    )


class QdrantCluster:
    """``nodes`` Qdrant nodes on loopback, each with its own ports and storage."""

    def __init__(
        self,
        root: Path,
        *,
        nodes: int = 3,
        binary: Path | None = None,
        ports: Sequence[NodePorts] | None = None,
        pid_dir: Path | None = None,
        log_dir: Path | None = None,
    ):
        self.binary = binary or qdrant_binary()
        if not os.access(self.binary, os.X_OK):
            raise StackError(f"no Qdrant server binary at {self.binary} (set {QDRANT_BIN_ENV})")
        self.root = root
        self.ports = list(ports) if ports else [NodePorts.free() for _ in range(nodes)]
        self.pid_dir = pid_dir
        self.log_dir = log_dir or root
        self.processes: list[ManagedProcess] = [self._node(i) for i in range(len(self.ports))]

    @property
    def urls(self) -> list[str]:
        return [ports.url for ports in self.ports]

    def _node(self, index: int) -> ManagedProcess:
        name = f"qdrant-{index + 1}"
        return cluster_node(
            binary=self.binary,
            index=index + 1,
            ports=self.ports[index],
            bootstrap=self.ports[0] if index else None,
            data_dir=self.root / name,
            log_path=self.log_dir / f"{name}.log",
            pid_path=self.pid_dir / f"{name}.pid" if self.pid_dir else None,
        )

    def start(self, *, timeout_s: float = 60) -> list[str]:
        """Start the nodes one after the other (each joins once the previous answers)."""
        for process in self.processes:
            process.start()
            process.wait_ready(timeout_s)
        return self.urls

    def kill(self, index: int) -> None:
        """kill -9 of node ``index`` (0-based) and its children."""
        self.processes[index].kill()

    def restart(self, index: int, *, timeout_s: float = 60) -> float:
        """Start node ``index`` again on its ports and storage; seconds until ready."""
        process = self._node(index)
        self.processes[index] = process
        process.start()
        return process.wait_ready(timeout_s)

    def peers(self, index: int = 0) -> int:
        """How many peers node ``index`` sees in the cluster (0 if it does not answer)."""
        try:
            return len(self._get(self.urls[index], "/cluster")["peers"])
        except (urllib.error.URLError, OSError, KeyError, ValueError):
            return 0

    def _get(self, url: str, path: str) -> Any:
        with urllib.request.urlopen(f"{url}{path}", timeout=2) as response:  # noqa: S310
            return json.load(response)["result"]

    def replica_states(self, collection: str) -> dict[str, int]:
        """Shard replicas of ``collection`` (or the collection an alias of that name
        names) by state (``Active``, ``Dead``, ``Partial``...), counted over every node's
        view of its own (local) replicas."""
        states: dict[str, int] = {}
        for url in self.urls:
            try:
                aliases = self._get(url, "/aliases")["aliases"]
            except (urllib.error.URLError, OSError, KeyError, ValueError):
                continue
            targets = {a["alias_name"]: a["collection_name"] for a in aliases}
            collection = targets.get(collection, collection)
            break
        for url in self.urls:
            try:
                local = self._get(url, f"/collections/{collection}/cluster")["local_shards"]
            except (urllib.error.URLError, OSError, KeyError, ValueError):
                states["unreachable"] = states.get("unreachable", 0) + 1
                continue
            for shard in local:
                states[shard["state"]] = states.get(shard["state"], 0) + 1
        return states

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


class ScaleOut(SplitDeployment):
    """The split deployment on a Qdrant cluster, with several ingest workers."""

    cluster: QdrantCluster | None = None

    def start_qdrant_cluster(
        self,
        *,
        nodes: int = 3,
        shards: int = 3,
        replicas: int = 2,
        binary: Path | None = None,
        timeout_s: float = 60,
    ) -> list[str]:
        """Start the cluster; every process started afterwards gets all its nodes."""
        self.cluster = QdrantCluster(self.root, nodes=nodes, binary=binary)
        # Stopped last with the rest (``SplitDeployment.stop`` stops qdrant* last).
        self.processes.extend(self.cluster.processes)
        urls = self.cluster.start(timeout_s=timeout_s)
        self.qdrant_url = ",".join(urls)
        self.env.update(
            {
                "HEADWATER_QDRANT_URL": self.qdrant_url,
                "HEADWATER_QDRANT_SHARDS": str(shards),
                "HEADWATER_QDRANT_REPLICAS": str(replicas),
            }
        )
        return urls

    def start_workers(self, count: int) -> list[ManagedProcess]:
        """``count`` workers in the deployment's consumer group (not waiting)."""
        return [self.start_worker(name=f"worker-{i + 1}") for i in range(count)]

    def restart_node(self, index: int, *, timeout_s: float = 60) -> float:
        """Restart cluster node ``index``, keeping the process list current."""
        assert self.cluster is not None
        old = self.cluster.processes[index]
        waited = self.cluster.restart(index, timeout_s=timeout_s)
        self.processes[self.processes.index(old)] = self.cluster.processes[index]
        return waited

    def process(self, name: str) -> ManagedProcess:
        for process in self.processes:
            if process.name == name:
                return process
        raise KeyError(name)

    def kill(self, name: str) -> None:
        """kill -9 of the process called ``name`` and its children."""
        self.process(name).kill()


# ``headwater up --scale``: the fixed local ports of each part.
QDRANT_PORTS = [
    NodePorts(http=6333 + 10 * i, grpc=6334 + 10 * i, p2p=6335 + 10 * i) for i in range(3)
]
API_PORTS = (8000, 8002)
WORKER_PORTS = (8010, 8011)


def scaled_processes(paths: StackPaths, env: dict[str, str]) -> list[ManagedProcess]:
    """The Headwater processes of the scale-out stack (Kafka, the LLM server and the
    Qdrant nodes are started before them): two workers, then two API replicas."""
    parts = [
        (f"worker-{n}", "worker", port, "headwater-worker", worker_ready(f"{_local(port)}/metrics"))
        for n, port in enumerate(WORKER_PORTS, start=1)
    ] + [
        (f"api-{n}", "api", port, f"headwater-api-{n}", api_ready(_local(port)))
        for n, port in enumerate(API_PORTS, start=1)
    ]
    return [
        headwater_command(
            command,
            name=name,
            env={**env, "HEADWATER_PORT": str(port), "HEADWATER_SERVICE_NAME": service},
            log_path=paths.run_dir / f"{name}.log",
            ready=ready,
            pid_path=paths.run_dir / f"{name}.pid",
        )
        for name, command, port, service, ready in parts
    ]


def _local(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def scaled_cluster(paths: StackPaths) -> tuple[QdrantCluster, dict[str, str]]:
    """The local Qdrant cluster of ``headwater up --scale`` and the settings pointing at it."""
    cluster = QdrantCluster(
        paths.data_dir / "qdrant-cluster",
        ports=QDRANT_PORTS,
        pid_dir=paths.run_dir,
        log_dir=paths.run_dir,
    )
    env = {
        "HEADWATER_QDRANT_URL": ",".join(cluster.urls),
        "HEADWATER_QDRANT_SHARDS": "3",
        "HEADWATER_QDRANT_REPLICAS": "2",
    }
    return cluster, env
