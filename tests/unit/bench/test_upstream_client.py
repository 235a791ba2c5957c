"""bench.upstream_client runs end to end (a few rounds) and reports both clients."""

from __future__ import annotations

import json
import subprocess
import sys


def test_the_bench_prints_cpu_per_request_of_both_clients() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.upstream_client", "--requests", "40", "--rounds", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout)
    for client in ("aiohttp", "http1"):
        assert result[f"{client}_cpu_us_per_request"] > 0
        assert len(result[f"{client}_cpu_us_rounds"]) == 2
    assert result["cpu_ratio_http1_to_aiohttp"] > 0
