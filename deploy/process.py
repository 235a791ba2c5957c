"""Start, health-poll and stop the processes of the local stack and of test fixtures.

Each process runs in its own session (process group), so stopping it also stops its
children (vLLM's engine core, the JVM behind a shell). A pid file lets a later
command (``headwater down``) find a process that an earlier one (``headwater up``)
started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ReadyCheck = Callable[[], bool]


class StackError(RuntimeError):
    """A process did not start or become ready; the message carries its log tail."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int) -> ReadyCheck:
    def check() -> bool:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return True
        return False

    return check


def http_ok(url: str) -> ReadyCheck:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - local URL
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    return check


class ManagedProcess:
    """One child process with a log file, a readiness check and an optional pid file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        ready: ReadyCheck,
        env: Mapping[str, str] | None = None,
        pid_path: Path | None = None,
        cwd: Path | None = None,
        cpus: Sequence[int] | None = None,
    ):
        self.name = name
        # ``cpus``: the process and its children run on these CPUs only (taskset, from
        # util-linux), e.g. to keep a benchmark's model server off the cores it measures.
        pinned = ["taskset", "-c", ",".join(map(str, cpus))] if cpus else []
        self.argv = [*pinned, *argv]
        self.log_path = log_path
        self.ready = ready
        self.env = {**os.environ, **(env or {})}
        self.pid_path = pid_path
        self.cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        if self.pid_path:
            self.pid_path.parent.mkdir(parents=True, exist_ok=True)
            self.pid_path.write_text(str(self._popen.pid))

    def wait_ready(self, timeout_s: float) -> float:
        """Poll until ready; returns seconds waited. Raises ``StackError`` on exit or timeout."""
        started = time.monotonic()
        while True:
            waited = time.monotonic() - started
            if self._popen and self._popen.poll() is not None:
                raise StackError(
                    f"{self.name} exited with code {self._popen.returncode}\n{self.log_tail()}"
                )
            if self.ready():
                return waited
            if waited > timeout_s:
                raise StackError(f"{self.name} not ready after {timeout_s:.0f}s\n{self.log_tail()}")
            time.sleep(0.25)

    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def wait(self, timeout_s: float) -> int | None:
        """The exit code, or None if it is still running after ``timeout_s``."""
        if self._popen is None:
            return None
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self._popen.wait(timeout=timeout_s)
        return None

    def stop(self, timeout_s: float = 30.0) -> None:
        pid = self.pid
        if pid is not None:
            stop_group(pid, timeout_s=timeout_s)
            if self._popen:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._popen.wait(timeout=1)
        if self.pid_path:
            self.pid_path.unlink(missing_ok=True)

    def kill(self) -> None:
        """kill -9 of the process and its children (a crash, for chaos tests), reaped."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.stop(timeout_s=5)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return f"(no log at {self.log_path})"
        return f"--- last lines of {self.log_path} ---\n" + "\n".join(text[-lines:])


def group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(pid: int, *, timeout_s: float = 30.0) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while group_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.1)
    if group_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while group_alive(pid) and time.monotonic() < deadline + 10:
            _reap(pid)
            time.sleep(0.1)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
