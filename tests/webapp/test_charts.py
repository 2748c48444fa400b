"""webapp.jobs.charts: report.json → plotly figure JSON."""

from __future__ import annotations

import json

import pytest

from optimizers.report import Report
from tests.webapp.helpers import sample_report
from webapp.jobs.charts import CHART_IDS, latency_figure, report_figures, size_figure, throughput_figure


def test_latency_groups_percentiles_by_batch_and_variant():
    figure = latency_figure(sample_report())
    assert [trace["name"] for trace in figure["data"]] == ["p50", "p95", "p99"]
    p50 = figure["data"][0]
    batches, variants = p50["x"]
    assert batches == ["batch 1"] * 3 + ["batch 8"] * 3
    assert variants == ["baseline", "onnx_export", "ort_quantize_dynamic"] * 2
    assert p50["y"][:3] == [38.0, 34.0, 20.0]
    assert figure["data"][2]["y"][0] == pytest.approx(38.0 * 1.4)
    assert figure["layout"]["barmode"] == "group"


def test_throughput_has_one_trace_per_variant():
    figure = throughput_figure(sample_report())
    assert [trace["name"] for trace in figure["data"]] == ["baseline", "onnx_export", "ort_quantize_dynamic"]
    candidate = figure["data"][2]
    assert candidate["x"] == ["batch 1", "batch 8"]
    assert candidate["y"] == pytest.approx([1000 / 20.0, 8000 / 100.0])


def test_size_in_megabytes_per_variant():
    figure = size_figure(sample_report())
    bars = figure["data"][0]
    assert bars["x"] == ["baseline", "onnx_export", "ort_quantize_dynamic"]
    assert bars["y"] == pytest.approx([90.0, 90.5, 23.0])


def test_all_figures_are_keyed_by_chart_id_and_json_serialisable():
    figures = report_figures(sample_report())
    assert tuple(figures) == CHART_IDS == ("chart-latency", "chart-throughput", "chart-size")
    json.dumps(figures)


def test_figures_accept_a_report_model_and_missing_benchmarks():
    raw = sample_report()
    raw["variants"][1]["benchmark"] = {}
    figures = report_figures(Report.model_validate(raw))
    assert figures["chart-latency"]["data"][0]["x"][1] == ["baseline", "ort_quantize_dynamic"] * 2
    assert figures["chart-throughput"]["data"][1]["x"] == []
