"""The ``mode: serving`` analysis end to end on tiny inputs (structure only, no timing thresholds)."""

from __future__ import annotations

import zipfile

import pytest

from optimizers.errors import RecipeError
from optimizers.serving.analysis import ServingReport, ServingSpec, run_serving_analysis, serving_figure


def test_spec_validation_names_the_problem():
    with pytest.raises(RecipeError, match="p95_budget_ms"):
        ServingSpec.parse({"model": "zoo:digits-cnn", "p95_budget_ms": -1})
    with pytest.raises(RecipeError, match="no_such_pass"):
        ServingSpec.parse({"model": "zoo:digits-cnn", "steps": ["no_such_pass"]})
    spec = ServingSpec.parse({"mode": "serving", "model": "zoo:digits-cnn", "steps": ["onnx_export"]})
    assert spec.steps == [{"pass": "onnx_export"}]


def test_image_classifier_gets_a_sweep_a_recommendation_and_a_triton_zip(tmp_path):
    spec = ServingSpec.parse(
        {
            "model": "zoo:digits-cnn",
            "steps": ["onnx_export"],
            "p95_budget_ms": 10_000,
            "batching": {
                "max_batch_sizes": [1, 4],
                "max_queue_delays_ms": [0, 1],
                "rates_per_s": [20, 80],
                "requests_per_cell": 8,
            },
            "triton": {"model_name": "digits"},
        }  # fmt: skip
    )
    report = run_serving_analysis(spec, tmp_path)
    assert report.artifact_format == "onnx" and len(report.sweep.cells) == 8
    assert report.recommendation is not None and report.recommendation.max_batch_size in (1, 4)
    names = zipfile.ZipFile(report.triton_zip).namelist()
    assert sorted(names) == ["digits/1/model.onnx", "digits/config.pbtxt"]
    assert "dynamic_batching" in report.triton_config
    assert ServingReport.model_validate_json((tmp_path / "serving.json").read_text()) == report
    figure = serving_figure(report)
    assert len(figure["data"]) == 4 + 1  # one curve per setting, plus the recommended point


def test_causal_lm_gets_the_kv_cache_table_and_rooflines(tmp_path):
    spec = ServingSpec.parse({"model": "zoo:tiny-lm", "kv_cache": {"context_lens": [128, 640], "probe_bytes": 1 << 20}})
    report = run_serving_analysis(spec, tmp_path)
    assert report.sweep is None and serving_figure(report) is None
    assert [(row.kind, row.context_len) for row in report.kv_cache] == [
        ("MHA", 128), ("GQA", 128), ("MQA", 128), ("MHA", 640), ("GQA", 640), ("MQA", 640),
    ]  # fmt: skip
    actual = [row for row in report.kv_cache if row.actual]
    assert [row.cache_bytes for row in actual] == [128 * 8192, 640 * 8192]
    assert [bound.context_len for bound in report.rooflines] == [128, 640]
    assert report.rooflines[0].tokens_per_s > report.rooflines[1].tokens_per_s > 0
