"""webapp.jobs.results: typed rows for the results tables."""

from __future__ import annotations

from tests.webapp.helpers import sample_report
from webapp.jobs.results import build_results, metric_values


def test_confidence_intervals_are_folded_into_their_metric():
    values = metric_values({"cosine": 0.99, "cosine_ci_low": 0.98, "cosine_ci_high": 0.995, "eval_samples": 64.0})
    assert [(v.name, v.value, v.ci_low, v.ci_high) for v in values] == [
        ("cosine", 0.99, 0.98, 0.995),
        ("eval_samples", 64.0, None, None),
    ]


def test_gate_rows_have_deltas_and_variants_know_baseline_and_candidate():
    results = build_results(sample_report())
    assert results.outcome == "needs_approval"
    assert [round(row.delta, 4) for row in results.gate_rows] == [-0.007, -0.01]
    assert [(v.is_baseline, v.is_final) for v in results.variants] == [(True, False), (False, False), (False, True)]
    assert [stats.batch_size for stats in results.variants[0].benchmark] == [1, 8]


def test_missing_or_foreign_reports_give_no_results():
    assert build_results(None) is None
    assert build_results({"something": "else"}) is None
