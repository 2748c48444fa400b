"""webapp.jobs.charts: report.json → plotly figure JSON."""

from __future__ import annotations

import json

import pytest

from optimizers.report import Report
from tests.webapp.helpers import sample_report
from webapp.jobs.charts import (
    CHART_IDS,
    latency_figure,
    profile_figure,
    report_figures,
    size_figure,
    throughput_figure,
)


def test_latency_has_one_panel_per_batch_with_p50_p95_p99_per_variant():
    figure = latency_figure(sample_report())
    traces = figure["data"]
    assert [trace["name"] for trace in traces] == ["p50", "p95", "p99"] * 2
    assert [trace.get("showlegend") for trace in traces] == [True] * 3 + [False] * 3
    assert [trace["xaxis"] for trace in traces] == ["x"] * 3 + ["x2"] * 3
    assert [a["text"] for a in figure["layout"]["annotations"]] == ["batch 1", "batch 8"]
    p50_batch1, p99_batch1, p50_batch8 = traces[0], traces[2], traces[3]
    assert p50_batch1["x"] == ["baseline", "onnx_export", "ort_quantize_dynamic"]
    assert p50_batch1["y"] == [38.0, 34.0, 20.0]
    assert p99_batch1["y"][0] == pytest.approx(38.0 * 1.4)
    assert p50_batch8["y"] == [190.0, 170.0, 100.0]
    assert figure["layout"]["barmode"] == "group"


def test_throughput_has_one_trace_per_variant():
    figure = throughput_figure(sample_report())
    assert [trace["name"] for trace in figure["data"]] == ["baseline", "onnx_export", "ort_quantize_dynamic"]
    candidate = figure["data"][2]
    assert candidate["x"] == ["batch 1", "batch 8"]
    assert candidate["y"] == pytest.approx([1000 / 20.0, 8000 / 100.0])


def test_size_in_mebibytes_per_variant():
    figure = size_figure(sample_report())
    bars = figure["data"][0]
    assert bars["x"] == ["baseline", "onnx_export", "ort_quantize_dynamic"]
    assert bars["y"] == pytest.approx([90e6 / 2**20, 90.5e6 / 2**20, 23e6 / 2**20])


def test_all_figures_are_keyed_by_chart_id_and_json_serialisable():
    figures = report_figures(sample_report())
    assert tuple(figures) == (*CHART_IDS, "chart-tradeoff")
    assert CHART_IDS == ("chart-latency", "chart-throughput", "chart-size")
    json.dumps(figures)


def test_report_without_benchmarks_still_gives_figures():
    raw = sample_report()
    for variant in raw["variants"]:
        variant["benchmark"] = {}
    figures = report_figures(raw)
    assert figures["chart-latency"]["data"] == []
    assert figures["chart-size"]["data"][0]["x"][0] == "baseline"


def test_figures_accept_a_report_model_and_missing_benchmarks():
    raw = sample_report()
    raw["variants"][1]["benchmark"] = {}
    figures = report_figures(Report.model_validate(raw))
    assert figures["chart-latency"]["data"][0]["x"] == ["baseline", "ort_quantize_dynamic"]
    assert figures["chart-throughput"]["data"][1]["x"] == []


def test_profile_chart_appears_when_the_baseline_was_profiled():
    raw = sample_report()
    raw["profile"] = {
        "runtime": "pytorch-eager",
        "batch_size": 1,
        "seq_len": 128,
        "shares": {"preprocess": 0.1, "model": 0.85, "postprocess": 0.05},
        "top_ops": [{"op": "aten::addmm", "self_ms": 5.0, "calls": 36, "share": 0.6}],
    }
    figures = report_figures(raw)
    assert "chart-profile" in figures
    pie, bars = figures["chart-profile"]["data"]
    assert pie["labels"] == ["preprocess", "model", "postprocess"]
    assert list(bars["y"]) == ["aten::addmm"]


def test_profile_stages_keep_pipeline_order_whatever_the_stored_key_order():
    # PostgreSQL's jsonb hands keys back shortest first; the cached figure must not depend on who stored it.
    profile = {"shares": {"model": 0.85, "extra": 0.02, "preprocess": 0.1, "postprocess": 0.03}, "top_ops": []}
    pie = profile_figure(profile)["data"][0]
    assert pie["labels"] == ["preprocess", "model", "postprocess", "extra"]
    assert list(pie["values"]) == pytest.approx([10.0, 85.0, 3.0, 2.0])
