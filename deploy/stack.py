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


def up(
    *,
    api_port: int = 8000,
    kafka_port: int = 9092,
    llm_port: int = 8001,
    say: Callable[[str], None] = print,
) -> dict[str, str]:
    """Start the stack in the background and wait until every part is healthy."""
    paths = StackPaths.default()
    running = [
        name for name in ("kafka", "llm", "headwater") if _pid_alive(paths.run_dir / f"{name}.pid")
    ]
    if running:
        raise StackError(f"already running: {', '.join(running)} (run 'make down' first)")
    processes = [
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
        headwater_process(
            env=_local_env(paths, kafka_port=kafka_port, llm_port=llm_port),
            port=api_port,
            log_path=paths.run_dir / "headwater.log",
            pid_path=paths.run_dir / "headwater.pid",
        ),
    ]
    timeouts = {"kafka": 90.0, f"llm {LLM_MODEL_NAME}": 600.0, "headwater": 300.0}
    started: list[ManagedProcess] = []
    try:
        # Kafka and the LLM start together (the LLM is the slow one); Headwater needs both.
        for process in processes[:2]:
            process.start()
            started.append(process)
        for process in processes[:2]:
            waited = process.wait_ready(timeouts[process.name])
            say(f"{process.name} ready ({waited:.0f}s) - log {process.log_path}")
        processes[2].start()
        started.append(processes[2])
        waited = processes[2].wait_ready(timeouts["headwater"])
        say(f"headwater ready ({waited:.0f}s) - log {processes[2].log_path}")
    except BaseException:
        for process in reversed(started):
            process.stop()
        raise
    return {
        "api": f"http://127.0.0.1:{api_port}",
        "docs": f"http://127.0.0.1:{api_port}/docs",
        "kafka": f"127.0.0.1:{kafka_port}",
        "llm": f"http://127.0.0.1:{llm_port}/v1",
    }


def down(*, say: Callable[[str], None] = print) -> None:
    """Stop whatever ``up`` started, newest first; leaves no process behind."""
    paths = StackPaths.default()
    for name in ("headwater", "llm", "kafka"):
        pid_path = paths.run_dir / f"{name}.pid"
        if not pid_path.exists():
            continue
        pid = int(pid_path.read_text().strip() or 0)
        if pid and group_alive(pid):
            stop_group(pid, timeout_s=30)
            say(f"stopped {name} (pid {pid})")
        pid_path.unlink(missing_ok=True)


def status() -> dict[str, bool]:
    paths = StackPaths.default()
    return {
        name: _pid_alive(paths.run_dir / f"{name}.pid") for name in ("kafka", "llm", "headwater")
    }


def _pid_alive(pid_path: Path) -> bool:
    if not pid_path.exists():
        return False
    text = pid_path.read_text().strip()
    return bool(text) and group_alive(int(text))
