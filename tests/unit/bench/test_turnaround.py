"""bench.turnaround: its summary, its options, and a short run end to end against the
canned upstream of bench.upstream_client (a stand-in for vLLM: the pure bench logic)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.turnaround import parse_args, spin, summarise
from deploy.process import ManagedProcess, free_port, http_ok


def test_ratios_are_of_block_medians_against_the_first_turnaround() -> None:
    result = summarise({0: [300.0, 100.0, 320.0], 250: [270.0, 280.0, 50.0]}, {0: [3.0], 250: []})
    assert result["rps"] == {"0": 300.0, "250": 270.0}
    assert result["ratio"] == {"0": 1.0, "250": 0.9}
    assert result["rps_blocks"]["250"] == [270.0, 280.0, 50.0]
    assert result["llm_cpu_ms_per_request"] == {"0": 3.0}  # none measured for 250


def test_spin_holds_the_thread_for_the_time_asked() -> None:
    began = time.perf_counter()
    spin(0.02)
    assert time.perf_counter() - began >= 0.02


def test_options() -> None:
    assert parse_args([]).turnaround_us == [0, 100, 300, 600]
    assert parse_args(["--turnaround-us", "0,50"]).turnaround_us == [0, 50]
    for bad in ("0,-5", "0,100,100"):
        with pytest.raises(SystemExit):
            parse_args(["--turnaround-us", bad])


def test_a_short_run_prints_one_json_object(tmp_path: Path) -> None:
    port = free_port()
    upstream = ManagedProcess(
        "canned upstream",
        [sys.executable, "-m", "bench.upstream_client", "--serve", str(port)],
        log_path=tmp_path / "upstream.log",
        ready=http_ok(f"http://127.0.0.1:{port}/health"),
    )
    upstream.start()
    try:
        upstream.wait_ready(60)
        argv = ["--llm-url", f"http://127.0.0.1:{port}/v1", "--turnaround-us", "0,200"]
        done = subprocess.run(
            [sys.executable, "-m", "bench.turnaround", *argv, "--blocks", "2", "--requests", "64"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    finally:
        upstream.stop()
    result = json.loads(done.stdout)
    assert set(result["rps"]) == {"0", "200"} and result["ratio"]["0"] == 1.0
    assert all(len(blocks) == 2 for blocks in result["rps_blocks"].values())
    assert result["llm_cpu_ms_per_request"] == {}  # a server it did not start
