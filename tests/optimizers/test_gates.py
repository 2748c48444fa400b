"""Gate logic: fail on a broken rule, needs_approval on any quality loss, pass otherwise."""

from __future__ import annotations

from optimizers.gates import default_rules, evaluate_gate
from optimizers.recipe import GateRule
from optimizers.report import LatencyStats, VariantReport


def _stats(p50: float) -> LatencyStats:
    return LatencyStats(
        batch_size=1,
        seq_len=128,
        iterations=10,
        seconds=1.0,
        p50_ms=p50,
        p90_ms=p50,
        p95_ms=p50,
        p99_ms=p50,
        mean_ms=p50,
        stdev_ms=0.0,
        throughput_per_s=1000 / p50,
        stable=True,
        window_spread=0.0,
        preprocess_p50_ms=0.1,
        postprocess_p50_ms=0.1,
    )


def _variant(metrics: dict[str, float], *, p50: float = 10.0, size: int = 100) -> VariantReport:
    return VariantReport(
        name="v", format="onnx", path="/x", sha256="0", size_bytes=size, metrics=metrics, benchmark={"1": _stats(p50)}
    )


BASE = _variant({"cosine": 1.0, "recall_at_1": 0.60}, p50=20.0, size=100)
RULES = default_rules("feature-extraction")


def test_identical_quality_passes():
    assert evaluate_gate(RULES, BASE, _variant({"cosine": 1.0, "recall_at_1": 0.60})).outcome == "pass"


def test_float_noise_is_not_degradation():
    assert evaluate_gate(RULES, BASE, _variant({"cosine": 0.9999999, "recall_at_1": 0.60})).outcome == "pass"


def test_any_quality_drop_needs_approval_even_within_threshold():
    report = evaluate_gate(RULES, BASE, _variant({"cosine": 0.993, "recall_at_1": 0.61}))
    assert report.outcome == "needs_approval"
    assert all(rule.passed for rule in report.rules)
    assert "cosine dropped" in report.reasons[0]


def test_drop_beyond_threshold_fails_with_reason():
    report = evaluate_gate(RULES, BASE, _variant({"cosine": 0.95, "recall_at_1": 0.60}))
    assert report.outcome == "fail"
    failed = [rule for rule in report.rules if not rule.passed]
    assert [rule.metric for rule in failed] == ["cosine"]
    assert failed[0].baseline == 1.0 and failed[0].candidate == 0.95


def test_missing_metric_fails_rather_than_passing_silently():
    report = evaluate_gate([GateRule(metric="accuracy", kind="absolute_drop", threshold=0.1)], BASE, _variant({}))
    assert report.outcome == "fail"
    assert "not measured" in report.rules[0].detail


def test_lower_is_better_metrics_and_relative_rules():
    base = _variant({"perplexity": 10.0})
    rule = GateRule(metric="perplexity", kind="relative_drop", threshold=0.05)
    assert evaluate_gate([rule], base, _variant({"perplexity": 10.4})).outcome == "needs_approval"
    assert evaluate_gate([rule], base, _variant({"perplexity": 11.0})).outcome == "fail"
    assert evaluate_gate([rule], base, _variant({"perplexity": 9.0})).outcome == "pass"


def test_recovery_ratio():
    rule = GateRule(metric="recall_at_1", kind="recovery_ratio", threshold=0.95)
    assert evaluate_gate([rule], BASE, _variant({"recall_at_1": 0.58})).rules[0].passed
    assert not evaluate_gate([rule], BASE, _variant({"recall_at_1": 0.50})).rules[0].passed


def test_speed_and_size_rules():
    speed = GateRule(metric="p50_ms", kind="min_speedup", threshold=1.5)
    size = GateRule(metric="size_bytes", kind="max_size_ratio", threshold=0.5)
    fast_small = _variant({"cosine": 1.0}, p50=10.0, size=40)
    slow_big = _variant({"cosine": 1.0}, p50=18.0, size=90)
    assert evaluate_gate([speed, size], BASE, fast_small).outcome == "pass"
    report = evaluate_gate([speed, size], BASE, slow_big)
    assert report.outcome == "fail" and not any(rule.passed for rule in report.rules)
    assert "speedup 1.11x" in report.rules[0].detail
