"""The local stack without Docker: Kafka broker, vLLM server and one Headwater process.

``headwater up`` starts the three in the background (pid files and logs in ``.run/``),
waits until each is healthy and prints the URLs; ``headwater down`` stops them.
Test fixtures build the same processes on free ports (see ``kafka_process`` and
``llm_process``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from deploy.process import (
    ManagedProcess,
    StackError,
    free_port,
    group_alive,
    http_ok,
    port_open,
    stop_group,
)
from deploy.redis import REDIS_PORT, local_redis, wanted_locally

REPO = Path(__file__).resolve().parent.parent
LLM_MODEL_NAME = "smollm2-135m-instruct"


@dataclass(frozen=True)
class StackPaths:
    run_dir: Path
    data_dir: Path
    models_dir: Path

    @classmethod
    def default(cls) -> StackPaths:
        cache = Path(os.environ.get("HEADWATER_CACHE_DIR", REPO / ".cache"))
        return cls(
            run_dir=REPO / ".run",
            data_dir=Path(os.environ.get("HEADWATER_DATA_DIR", REPO / ".data")),
            models_dir=Path(os.environ.get("HEADWATER_MODELS_DIR", cache / "models")),
        )


def kafka_process(
    *,
    port: int,
    data_dir: Path,
    log_path: Path,
    pid_path: Path | None = None,
    controller_port: int | None = None,
    cpus: Sequence[int] | None = None,
) -> ManagedProcess:
    """A single-node KRaft broker on 127.0.0.1:``port`` (deploy/kafka/kafka.sh)."""
    return ManagedProcess(
        "kafka",
        [str(REPO / "deploy/kafka/kafka.sh"), "start", "--foreground"],
        env={
            "KAFKA_PORT": str(port),
            # A free port of its own: the script's default (port + 1) may be taken.
            "KAFKA_CONTROLLER_PORT": str(controller_port or free_port()),
            "KAFKA_DATA_DIR": str(data_dir),
        },
        log_path=log_path,
        ready=port_open("127.0.0.1", port),
        pid_path=pid_path,
        cpus=cpus,
    )


@contextmanager
def private_broker(root: Path) -> Iterator[str]:
    """A Kafka broker of its own on a free port, its data under ``root``; stopped on exit
    (benchmarks and ``headwater eval --start-kafka``). Yields its bootstrap address."""
    port = free_port()
    broker = kafka_process(port=port, data_dir=root / "kafka", log_path=root / "kafka.log")
    broker.start()
    try:
        broker.wait_ready(120)
        yield f"127.0.0.1:{port}"
    finally:
        broker.stop()


def llm_process(
    *,
    model_dir: Path,
    served_name: str,
    port: int,
    log_path: Path,
    pid_path: Path | None = None,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    cpus: Sequence[int] | None = None,
) -> ManagedProcess:
    """vLLM's OpenAI server on CPU, from its own virtualenv (deploy/llm/serve.sh); with
    ``cpus``, its processes and its OpenMP compute threads stay on those CPUs."""
    if cpus:
        env = {**(env or {}), "VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, cpus))}
    if not (model_dir / "config.json").exists():
        raise StackError(f"no model at {model_dir}: run 'make setup' (deploy/llm/setup.sh) first")
    argv = [str(REPO / "deploy/llm/serve.sh"), str(model_dir), served_name, str(port)]
    return ManagedProcess(
        f"llm {served_name}",
        [*argv, "--", *extra_args] if extra_args else argv,
        env=env,
        log_path=log_path,
        ready=http_ok(f"http://127.0.0.1:{port}/health"),
        pid_path=pid_path,
        cpus=cpus,
    )


def headwater_process(
    *,
    env: dict[str, str],
    port: int,
    log_path: Path,
    pid_path: Path | None = None,
    cpus: Sequence[int] | None = None,
) -> ManagedProcess:
    """``headwater serve``: the API and the ingest worker over the embedded store."""
    return ManagedProcess(
        "headwater",
        [sys.executable, "-m", "headwater.cli", "serve"],
        env={**env, "HEADWATER_PORT": str(port)},
        log_path=log_path,
        ready=http_ok(f"http://127.0.0.1:{port}/readyz"),
        pid_path=pid_path,
        cwd=REPO,
        cpus=cpus,
    )


def _local_env(paths: StackPaths, *, kafka_port: int, llm_port: int) -> dict[str, str]:
    return {
        "HEADWATER_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_port}",
        "HEADWATER_LLM_SMALL_URL": f"http://127.0.0.1:{llm_port}/v1",
        "HEADWATER_LLM_SMALL_MODEL": LLM_MODEL_NAME,
        "HEADWATER_LLM_SMALL_TOKENIZER": str(paths.models_dir / LLM_MODEL_NAME),
        "HEADWATER_DATA_DIR": str(paths.data_dir),
        "HEADWATER_API_KEYS_FILE": os.environ.get(
            "HEADWATER_API_KEYS_FILE", str(REPO / "deploy/local/api-keys.json")
        ),
    }


# Every part either stack may run, in the order they start; stopped in reverse.
PARTS = (
    "kafka",
    "llm",
    "redis",
    "qdrant-1",
    "qdrant-2",
    "qdrant-3",
    "headwater",
    "worker-1",
    "worker-2",
    "api-1",
    "api-2",
)


def up(
    *,
    api_port: int = 8000,
    kafka_port: int = 9092,
    llm_port: int = 8001,
    scale: bool = False,
    say: Callable[[str], None] = print,
) -> dict[str, str]:
    """Start the stack in the background and wait until every part is healthy. With
    ``scale``, the scale-out topology (``deploy.scale``) instead of one ``headwater serve``:
    a three-node Qdrant cluster, two ingest workers and two API replicas."""
    paths = StackPaths.default()
    running = [name for name in PARTS if _pid_alive(paths.run_dir / f"{name}.pid")]
    if running:
        raise StackError(f"already running: {', '.join(running)} (run 'make down' first)")
    first = [
        kafka_process(
            port=kafka_port,
            controller_port=kafka_port + 1,
            data_dir=paths.data_dir / "kafka",
            log_path=paths.run_dir / "kafka.log",
            pid_path=paths.run_dir / "kafka.pid",
        ),
        llm_process(
            model_dir=paths.models_dir / LLM_MODEL_NAME,
            served_name=LLM_MODEL_NAME,
            port=llm_port,
            log_path=paths.run_dir / "llm.log",
            pid_path=paths.run_dir / "llm.pid",
        ),
    ]
    env = _local_env(paths, kafka_port=kafka_port, llm_port=llm_port)
    if wanted_locally(os.environ):  # budgets configured: their shared store (deploy/redis)
        first.append(local_redis(run_dir=paths.run_dir, data_dir=paths.data_dir))
        env["HEADWATER_REDIS_URL"] = f"redis://127.0.0.1:{REDIS_PORT}/0"
    urls = {
        "api": f"http://127.0.0.1:{api_port}",
        "docs": f"http://127.0.0.1:{api_port}/docs",
        "kafka": f"127.0.0.1:{kafka_port}",
        "llm": f"http://127.0.0.1:{llm_port}/v1",
    }
    # Each step's processes start together once the previous step's are ready.
    steps: list[list[ManagedProcess]]
    if scale:
        from deploy.scale import API_PORTS, scaled_cluster, scaled_processes

        cluster, cluster_env = scaled_cluster(paths)
        env |= cluster_env
        workers_and_apis = scaled_processes(paths, env)
        # One node at a time (each joins the one before); one worker creates the
        # collection before the other processes open it.
        steps = [
            *([node] for node in cluster.processes),
            workers_and_apis[:1],
            workers_and_apis[1:],
        ]
        urls |= {
            "api": ", ".join(f"http://127.0.0.1:{port}" for port in API_PORTS),
            "docs": f"http://127.0.0.1:{API_PORTS[0]}/docs",
            "qdrant": ", ".join(cluster.urls),
        }
    else:
        steps = [
            [
                headwater_process(
                    env=env,
                    port=api_port,
                    log_path=paths.run_dir / "headwater.log",
                    pid_path=paths.run_dir / "headwater.pid",
                )
            ]
        ]
    # Kafka and the LLM start together (the LLM is the slow one); the rest needs both.
    _start_steps([first, *steps], say=say)
    return urls


_READY_TIMEOUT_S = {"kafka": 90.0, f"llm {LLM_MODEL_NAME}": 600.0}


def _start_steps(steps: Sequence[Sequence[ManagedProcess]], *, say: Callable[[str], None]) -> None:
    started: list[ManagedProcess] = []
    try:
        for step in steps:
            for process in step:
                process.start()
                started.append(process)
            for process in step:
                waited = process.wait_ready(_READY_TIMEOUT_S.get(process.name, 300.0))
                say(f"{process.name} ready ({waited:.0f}s) - log {process.log_path}")
    except BaseException:
        for process in reversed(started):
            process.stop()
        raise


def down(*, say: Callable[[str], None] = print) -> None:
    """Stop whatever ``up`` started, newest first; leaves no process behind."""
    paths = StackPaths.default()
    for name in reversed(PARTS):
        pid_path = paths.run_dir / f"{name}.pid"
        if not pid_path.exists():
            continue
        pid = int(pid_path.read_text().strip() or 0)
        if pid and group_alive(pid):
            stop_group(pid, timeout_s=30)
            say(f"stopped {name} (pid {pid})")
        pid_path.unlink(missing_ok=True)


def status() -> dict[str, bool]:
    """Each part of the stack that ``up`` started (its pid file exists): running or not.
    Nothing started yet: the three parts of the default stack, stopped."""
    paths = StackPaths.default()
    started = [name for name in PARTS if (paths.run_dir / f"{name}.pid").exists()]
    return {
        name: _pid_alive(paths.run_dir / f"{name}.pid")
        for name in started or ("kafka", "llm", "headwater")
    }


def _pid_alive(pid_path: Path) -> bool:
    if not pid_path.exists():
        return False
    text = pid_path.read_text().strip()
    return bool(text) and group_alive(int(text))
