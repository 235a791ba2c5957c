"""The statistics of bench.gateway: quantiles, paired differences, the reported overheads."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.gateway import (
    FULL,
    QUICK,
    c1_result,
    concurrency_result,
    headline,
    parse_args,
    process_tree_cpu_s,
)
from bench.harness import latency_ms, paired_differences, percentile


def test_percentile_interpolates_between_ranks_like_numpy() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 1.0) == 4.0
    assert percentile(values, 0.5) == 2.5
    assert percentile(values, 0.95) == pytest.approx(3.85)
    assert percentile([7.0], 0.95) == 7.0


@pytest.mark.parametrize(("values", "q"), [([], 0.5), ([1.0], -0.1), ([1.0], 1.5)])
def test_percentile_rejects_no_values_and_bad_quantiles(values: list[float], q: float) -> None:
    with pytest.raises(ValueError):
        percentile(values, q)


def test_latency_ms_reports_milliseconds() -> None:
    assert latency_ms([0.010, 0.020, 0.030]) == {"p50_ms": 20.0, "p95_ms": 29.0}


def test_paired_differences_are_second_minus_first_and_need_pairs() -> None:
    assert paired_differences([1.0, 2.0], [1.5, 1.0]) == [0.5, -1.0]
    with pytest.raises(ValueError, match="unpaired"):
        paired_differences([1.0], [1.0, 2.0])


def test_c1_overhead_is_the_difference_of_quantiles_and_paired_median_is_reported() -> None:
    direct = [0.040 + i * 0.001 for i in range(21)]
    gateway = [d + 0.002 for d in direct]
    result = c1_result(direct, gateway)
    assert result["pairs"] == 21
    assert result["overhead_p50_ms"] == pytest.approx(2.0)
    assert result["overhead_p95_ms"] == pytest.approx(2.0)
    assert result["paired_diff_p50_ms"] == pytest.approx(2.0)
    assert result["direct"]["p50_ms"] == pytest.approx(50.0)


def test_throughput_ratio_is_of_block_medians_and_paired_blocks_are_reported() -> None:
    rps = {"direct": [30.0, 10.0, 32.0], "gateway": [29.0, 28.0, 5.0]}
    lat = {"direct": [0.1, 0.2], "gateway": [0.1, 0.3]}
    result = concurrency_result(32, 64, rps, lat)
    assert (result["direct_rps"], result["gateway_rps"]) == (30.0, 28.0)
    assert result["throughput_ratio"] == pytest.approx(28 / 30, abs=1e-3)
    # Back-to-back blocks: 29/30, 28/10, 5/32 -> median 29/30.
    assert result["throughput_ratio_paired_median"] == pytest.approx(29 / 30, abs=1e-3)
    assert result["blocks"] == 3
    assert result["overhead_p50_ms"] == pytest.approx(50.0)
    assert "llm_cpu_ms_per_request" not in result  # vLLM not started by the bench

    llm = {"direct": [2.9, 3.0, 3.4], "gateway": [3.2, 3.1, 3.0]}
    with_llm = concurrency_result(32, 64, rps, lat, llm)
    assert with_llm["llm_cpu_ms_per_request"] == {"direct": 3.0, "gateway": 3.1}


def test_the_passthrough_proxy_is_reported_against_direct_and_the_gateway() -> None:
    rps = {"direct": [30.0, 20.0], "gateway": [24.0, 26.0], "passthrough": [27.0, 29.0]}
    lat = {"direct": [0.1], "gateway": [0.2], "passthrough": [0.15]}
    result = concurrency_result(32, 64, rps, lat)
    assert result["passthrough_rps"] == 28.0
    assert result["throughput_ratio_passthrough"] == pytest.approx(28 / 25, abs=1e-3)
    assert result["gateway_vs_passthrough"] == pytest.approx(25 / 28, abs=1e-3)
    assert result["passthrough"]["p50_ms"] == pytest.approx(150.0)
    assert headline({"c32": result})["throughput_ratio_c32_passthrough"] == pytest.approx(1.12)
    without = concurrency_result(32, 64, {k: rps[k] for k in ("direct", "gateway")}, lat)
    assert "passthrough_rps" not in without


def test_process_tree_cpu_counts_the_children_still_running() -> None:
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
    child = subprocess.Popen([sys.executable, "-c", burn + "time.sleep(30)"])
    try:
        before = process_tree_cpu_s(os.getpid())
        assert before is not None
        deadline = time.monotonic() + 20
        while (process_tree_cpu_s(child.pid) or 0) < 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)
        after = process_tree_cpu_s(os.getpid())
        assert after is not None and after - before >= 0.2  # the child's busy loop
    finally:
        child.kill()
        child.wait()
    assert process_tree_cpu_s(child.pid) is None


def test_headline_has_the_acceptance_keys_even_for_phases_not_run() -> None:
    c1 = c1_result([0.01, 0.02], [0.011, 0.021])
    summary = headline({"c1": c1})
    assert summary["overhead_p50_ms"] == pytest.approx(1.0)
    assert summary["ttft_overhead_ms"] is None
    assert summary["throughput_ratio_c32"] is None
    assert summary["targets"]["throughput_ratio_c32"] == 0.95


def test_quick_is_smaller_than_full_and_options_are_checked() -> None:
    assert all(QUICK[key] <= FULL[key] for key in QUICK)
    assert parse_args(["--quick", "--phases", "c1,c32"]).phases == "c1,c32"
    assert parse_args([]).passthrough and not parse_args(["--no-passthrough"]).passthrough
    with pytest.raises(SystemExit):
        parse_args(["--phases", "c1,c64"])
    with pytest.raises(SystemExit):
        parse_args(["--gateway-url", "http://127.0.0.1:8000/v1"])
