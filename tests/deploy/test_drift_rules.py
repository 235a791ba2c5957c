"""The drift alert's thresholds are the drift monitor's: the console, the JSON API and
``bench/drift.py`` judge with ``retrieval.drift.DriftPolicy``, Prometheus with
``deploy/prometheus/alerts.yml``; they must say the same."""

from __future__ import annotations

import re

from retrieval.drift import DriftPolicy
from tests.deploy.deploy_files import PROMETHEUS, load_yaml


def _rule(name: str) -> str:
    rules = load_yaml(PROMETHEUS / "alerts.yml")["groups"]
    for group in rules:
        for rule in group["rules"]:
            if rule.get("alert") == name:
                return str(rule["expr"])
    raise AssertionError(f"no alert {name}")


def _threshold(expr: str, metric: str, op: str) -> float:
    found = re.search(re.escape(metric) + r"[^<>]*?\)\s*" + re.escape(op) + r"\s*([0-9.]+)", expr)
    assert found, f"{metric} {op} not in {expr}"
    return float(found.group(1))


def test_the_alert_rule_uses_the_monitors_thresholds() -> None:
    policy = DriftPolicy(min_score=0.25)
    drift = _rule("HeadwaterQueryDrift")
    assert _threshold(drift, "headwater_drift_query_distance", ">") == policy.max_query_distance
    assert _threshold(drift, "headwater_drift_score_psi", ">") == policy.max_score_psi
    assert (
        _threshold(drift, "headwater_drift_no_answer_reference_rate", ">")
        == policy.max_no_answer_increase
    )
    probe = _rule("HeadwaterEmbeddingEngineChanged")
    assert _threshold(probe, "headwater_drift_probe_min_cosine", "<") == policy.min_probe_cosine
