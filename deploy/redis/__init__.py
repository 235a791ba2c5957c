"""Redis, the shared store of budgets and the answer cache (``core.redis_store``), as the
local stack and the tests run it: Debian's ``redis-server`` (``make tools`` installs it),
on loopback, with its own data folder and log, append-only so a restart keeps the
counters. Compose and Kubernetes run the ``redis`` image with the same settings
(``deploy/redis/redis.conf``)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from deploy.process import ManagedProcess, StackError, port_open

CONFIG = Path(__file__).resolve().parent / "redis.conf"


def redis_binary() -> str:
    """The ``redis-server`` on ``PATH``; ``StackError`` naming the install step if none."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise StackError("no redis-server on PATH: run 'make tools' (Debian's redis-server)")
    return binary


def redis_process(
    *, port: int, data_dir: Path, log_path: Path, pid_path: Path | None = None
) -> ManagedProcess:
    """``redis-server`` on 127.0.0.1:``port``, its files under ``data_dir``; ready when the
    port accepts connections. Its URL: ``redis://127.0.0.1:{port}/0``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return ManagedProcess(
        "redis",
        [
            redis_binary(),
            str(CONFIG),
            "--port",
            str(port),
            "--dir",
            str(data_dir),
        ],  # it logs to stdout (the config names no file), which goes to log_path
        log_path=log_path,
        ready=port_open("127.0.0.1", port),
        pid_path=pid_path,
        cwd=data_dir,
    )


REDIS_PORT = 6379


def wanted_locally(env: Mapping[str, str]) -> bool:
    """Whether ``headwater up`` starts Redis: budgets or the answer cache are configured in
    the environment (``HEADWATER_BUDGETS``, ``HEADWATER_ANSWER_CACHE``, its tenant
    policies) and no store of the operator's own is (``HEADWATER_REDIS_URL``)."""
    budgets = env.get("HEADWATER_BUDGETS", "").strip() not in ("", "[]")
    cache = env.get("HEADWATER_ANSWER_CACHE", "off").strip() not in ("", "off")
    policies = env.get("HEADWATER_ANSWER_CACHE_TENANT_POLICIES", "").strip() not in ("", "{}")
    return (budgets or cache or policies) and not env.get("HEADWATER_REDIS_URL")


def local_redis(*, run_dir: Path, data_dir: Path, port: int = REDIS_PORT) -> ManagedProcess:
    """The local stack's Redis (pid file ``redis.pid`` for ``headwater down``)."""
    return redis_process(
        port=port,
        data_dir=data_dir / "redis",
        log_path=run_dir / "redis.log",
        pid_path=run_dir / "redis.pid",
    )
