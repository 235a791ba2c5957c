"""The split deployment on one machine: a Qdrant server, ``headwater api`` replicas and
``headwater worker``, each its own OS process (as compose and Kubernetes run them), on a
Kafka broker the caller provides. Tests and benchmarks start it on free ports:

    with SplitDeployment(root, env={"HEADWATER_KAFKA_BOOTSTRAP": bootstrap}) as split:
        split.start_qdrant()
        split.start_worker()
        urls = split.start_apis(2)
        split.wait_ready(180)

Every process is configured through ``HEADWATER_*`` variables only (the common ``env``
plus its own port and service name) and stopped, newest first, when the context exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from deploy.process import ManagedProcess, ReadyCheck, StackError, free_port, http_ok
from deploy.stack import REPO

QDRANT_BIN_ENV = "HEADWATER_QDRANT_BIN"
# The team's server build (../shared/bin/QDRANT.md); HEADWATER_QDRANT_BIN points elsewhere.
DEFAULT_QDRANT_BIN = REPO.parent / "shared" / "bin" / "qdrant"


def qdrant_binary() -> Path:
    """Where the Qdrant server binary is expected (it may be absent)."""
    return Path(os.environ.get(QDRANT_BIN_ENV, DEFAULT_QDRANT_BIN))


def qdrant_process(
    *, binary: Path, http_port: int, grpc_port: int, data_dir: Path, log_path: Path
) -> ManagedProcess:
    """One Qdrant node on loopback with storage of its own; ready when ``/readyz`` is 200."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return ManagedProcess(
        "qdrant",
        [str(binary)],
        env={
            "QDRANT__SERVICE__HOST": "127.0.0.1",
            "QDRANT__SERVICE__HTTP_PORT": str(http_port),
            "QDRANT__SERVICE__GRPC_PORT": str(grpc_port),
            "QDRANT__STORAGE__STORAGE_PATH": str(data_dir / "storage"),
            "QDRANT__STORAGE__SNAPSHOTS_PATH": str(data_dir / "snapshots"),
            "QDRANT__TELEMETRY_DISABLED": "true",
        },
        log_path=log_path,
        ready=http_ok(f"http://127.0.0.1:{http_port}/readyz"),
        cwd=data_dir,  # the server writes its own files (an init marker) next to it
    )


def api_ready(base_url: str, *, need_llm: bool = True) -> ReadyCheck:
    """``GET /readyz`` answers 200; without ``need_llm``, every check but the model servers'
    passes (a search-only run has no LLM, and readiness reports it as missing)."""

    def check() -> bool:
        try:
            with urllib.request.urlopen(f"{base_url}/readyz", timeout=2) as response:  # noqa: S310
                return bool(response.status == 200)
        except urllib.error.HTTPError as error:
            if need_llm or error.code != 503:
                return False
            checks = json.loads(error.read() or b"{}").get("checks", {})
            return bool(checks) and all(
                ok for name, ok in checks.items() if not name.startswith("llm_")
            )
        except (urllib.error.URLError, OSError, ValueError):
            return False

    return check


def worker_ready(metrics_url: str) -> ReadyCheck:
    """The worker serves ``/metrics`` from its start; it consumes once its lag reporter has
    published a partition's lag (the faust consumer runs by then)."""

    def check() -> bool:
        try:
            with urllib.request.urlopen(metrics_url, timeout=2) as response:  # noqa: S310
                return b"headwater_ingest_consumer_lag{" in response.read()
        except (urllib.error.URLError, OSError):
            return False

    return check


def headwater_command(
    command: str,
    *,
    name: str,
    env: Mapping[str, str],
    log_path: Path,
    ready: ReadyCheck,
    pid_path: Path | None = None,
) -> ManagedProcess:
    """``headwater COMMAND`` from this interpreter, in the repository."""
    return ManagedProcess(
        name,
        [sys.executable, "-m", "headwater.cli", command],
        env=env,
        log_path=log_path,
        ready=ready,
        pid_path=pid_path,
        cwd=REPO,
    )


class SplitDeployment:
    """A Qdrant server, API replicas and an ingest worker as separate processes."""

    def __init__(self, root: Path, *, env: Mapping[str, str]):
        self.root = root
        self.env = dict(env)
        self.processes: list[ManagedProcess] = []
        self.api_urls: list[str] = []
        self.qdrant_url: str | None = None
        self.worker_metrics_url: str | None = None
        self._pending: list[ManagedProcess] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _start(self, process: ManagedProcess) -> ManagedProcess:
        self.processes.append(process)
        process.start()
        self._pending.append(process)
        return process

    def start_qdrant(self, binary: Path | None = None, *, timeout_s: float = 60) -> str:
        """Start the Qdrant server and wait for it; its URL becomes the processes' store."""
        binary = binary or qdrant_binary()
        if not os.access(binary, os.X_OK):
            raise StackError(f"no Qdrant server binary at {binary} (set {QDRANT_BIN_ENV})")
        http_port = free_port()
        process = self._start(
            qdrant_process(
                binary=binary,
                http_port=http_port,
                grpc_port=free_port(),
                data_dir=self.root / "qdrant",
                log_path=self.root / "qdrant.log",
            )
        )
        process.wait_ready(timeout_s)
        self._pending.remove(process)
        self.qdrant_url = f"http://127.0.0.1:{http_port}"
        self.env["HEADWATER_QDRANT_URL"] = self.qdrant_url
        return self.qdrant_url

    def start_worker(
        self, *, env: Mapping[str, str] | None = None, name: str = "worker"
    ) -> ManagedProcess:
        """Start ``headwater worker`` (not waiting); ``/metrics`` on a port of its own.
        Workers of one deployment share its consumer group (their ``name``s differ)."""
        port = free_port()
        self.worker_metrics_url = f"http://127.0.0.1:{port}/metrics"
        return self._start(
            headwater_command(
                "worker",
                name=name,
                env={
                    **self.env,
                    "HEADWATER_PORT": str(port),
                    "HEADWATER_SERVICE_NAME": "headwater-worker",
                    **(env or {}),
                },
                log_path=self.root / f"{name}.log",
                ready=worker_ready(self.worker_metrics_url),
            )
        )

    def start_apis(
        self, count: int, *, env: Mapping[str, str] | None = None, need_llm: bool = True
    ) -> list[str]:
        """Start ``count`` ``headwater api`` replicas (not waiting); returns their base URLs."""
        if "HEADWATER_QDRANT_URL" not in self.env:
            raise StackError("the API replicas need the Qdrant server: start_qdrant() first")
        urls: list[str] = []
        for _ in range(count):
            replica = f"api-{len(self.api_urls)}"
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            self._start(
                headwater_command(
                    "api",
                    name=replica,
                    env={
                        **self.env,
                        "HEADWATER_PORT": str(port),
                        "HEADWATER_SERVICE_NAME": f"headwater-{replica}",
                        **(env or {}),
                    },
                    log_path=self.root / f"{replica}.log",
                    ready=api_ready(url, need_llm=need_llm),
                )
            )
            self.api_urls.append(url)
            urls.append(url)
        return urls

    def wait_ready(self, timeout_s: float) -> None:
        """Wait until every process started since the last wait is ready (``StackError``
        with its log tail if one exits or is not ready within ``timeout_s`` in all)."""
        started, self._pending = self._pending, []
        deadline = time.monotonic() + timeout_s
        for process in started:
            process.wait_ready(max(1.0, deadline - time.monotonic()))

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(process.log_tail(lines) for process in self.processes)

    def stop(self) -> None:
        """Stop every process with its children: the Headwater processes are asked to stop
        all at once (each shuts down gracefully in parallel), then each is waited for,
        newest first, and killed past its grace period; the Qdrant server last."""
        for process in self.processes:
            if not process.name.startswith("qdrant") and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        while self.processes:
            self.processes.pop().stop()
        self._pending = []
