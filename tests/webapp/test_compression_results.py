"""Results page for compression passes: speedups, per-variant gates, what each pass found,
trade-off, training-loss and sensitivity charts (from ``VariantReport.details``)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.webapp.helpers import sample_report
from webapp.jobs.charts import report_figures, sensitivity_figure, tradeoff_figure, training_figure
from webapp.jobs.results import build_results, detail_facts

SENSITIVITY = [
    {"unit": "layer 0 head 1", "drop": 0.0004, "pruned": True},
    {"unit": "layer 3 head 0", "drop": 0.0310, "pruned": False},
    {"unit": "layer 1 head 2", "drop": 0.0020, "pruned": True},
]


def compression_report() -> dict[str, Any]:
    """Baseline → distill (trained, loss curve) → prune_structured (sensitivity) as a stacked report."""
    report = copy.deepcopy(sample_report())
    distilled, pruned = report["variants"][1], report["variants"][2]
    distilled.update(name="distill", produced_by="distill", format="hf")
    distilled["details"] = {
        "training_curve": [{"step": 1, "loss": 0.9}, {"step": 2, "loss": 0.5}, {"step": 3, "loss": 0.3}],
        "student_layers": 3,
        "notes": ["student initialised from teacher layers 0, 2, 4"],
    }
    distilled["gate"] = {"outcome": "pass", "rules": [], "reasons": []}
    pruned.update(name="prune_structured", produced_by="prune_structured", format="hf")
    pruned["details"] = {
        "sensitivity": SENSITIVITY,
        "parameters_before": 22_713_216,
        "parameters_after": 17_000_000,
        "calibration": {"method": "MinMax", "samples": 64},
    }
    pruned["gate"] = report["gate"]
    return report


def test_speedup_is_baseline_p50_over_variant_p50_per_batch():
    results = build_results(compression_report())
    assert results.variants[0].speedups == []
    assert results.variants[2].speedups == [(1, pytest.approx(38.0 / 20.0)), (8, pytest.approx(190.0 / 100.0))]


def test_each_variant_carries_its_own_gate_outcome():
    results = build_results(compression_report())
    assert [variant.gate_outcome for variant in results.variants] == [None, "pass", "needs_approval"]


def test_details_become_facts_and_notes_but_charted_lists_do_not():
    results = build_results(compression_report())
    assert results.has_details
    assert results.variants[1].notes == ["student initialised from teacher layers 0, 2, 4"]
    assert ("student layers", "3") in results.variants[1].facts
    facts = dict(results.variants[2].facts)
    assert facts["parameters after"] == "17000000"
    assert facts["calibration"] == "method=MinMax, samples=64"
    assert "sensitivity" not in facts and "training curve" not in dict(results.variants[1].facts)
    assert detail_facts({"sparsity": 0.51234567}) == [("sparsity", "0.5123")]
    assert not build_results(sample_report()).has_details


def test_sensitivity_chart_orders_units_most_sensitive_first_and_marks_pruned_ones():
    figure = sensitivity_figure("prune_structured", SENSITIVITY)
    bars = figure["data"][0]
    assert bars["x"] == ["layer 3 head 0", "layer 1 head 2", "layer 0 head 1"]
    assert bars["y"] == pytest.approx([0.031, 0.002, 0.0004])
    assert bars["text"] == ["", "pruned", "pruned"]


def test_training_chart_has_one_curve_per_variant_that_trained():
    figure = training_figure(compression_report())
    assert [trace["name"] for trace in figure["data"]] == ["distill"]
    assert figure["data"][0]["y"] == [0.9, 0.5, 0.3]


def test_tradeoff_chart_puts_every_variant_on_size_and_latency_axes():
    figure = tradeoff_figure(compression_report())
    by_size, by_latency = figure["data"]
    assert by_size["text"] == ["baseline", "distill", "prune_structured"]
    assert by_latency["x"] == pytest.approx([38.0, 34.0, 20.0])
    assert by_latency["y"] == pytest.approx([1.0, 1.0, 0.993])  # the cosine axis: no accuracy or perplexity here


def test_accuracy_is_preferred_over_cosine_for_classifiers():
    report = compression_report()
    for variant, accuracy in zip(report["variants"], (0.98, 0.97, 0.96), strict=True):
        variant["metrics"]["accuracy"] = accuracy
    assert tradeoff_figure(report)["data"][0]["y"] == pytest.approx([0.98, 0.97, 0.96])


def test_compression_figures_are_keyed_for_the_page():
    figures = report_figures(compression_report())
    assert {"chart-tradeoff", "chart-training", "chart-sensitivity-2"} <= set(figures)
    assert "chart-sensitivity-1" not in figures


@pytest.mark.django_db
def test_job_page_shows_speedups_gates_details_and_compression_charts(make_job, team, owner, client):
    job = make_job(team, submitter=owner, status="succeeded", report=compression_report(), progress=100)
    client.force_login(owner)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert 'id="pass-details"' in page and "student initialised from teacher layers 0, 2, 4" in page
    assert "1.90×" in page  # 38 ms → 20 ms at batch 1
    for chart in ("chart-tradeoff", "chart-training", "chart-sensitivity-2"):
        assert f'id="{chart}"' in page
