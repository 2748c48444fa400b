"""A whole recipe on zoo:digits-cnn: passes, evaluation, isolated benchmarks, gate, report."""

from __future__ import annotations

import pytest

from optimizers.pipeline import run_recipe
from optimizers.recipe import Recipe

RECIPE = {
    "model": "zoo:digits-cnn",
    "steps": [{"pass": "prune_unstructured", "sparsity": 0.5}, {"pass": "onnx_export"}],
    "benchmark": {"batch_sizes": [1, 4]},
    "evaluation": {"max_samples": 1000},
}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return run_recipe(Recipe.parse(RECIPE), tmp_path_factory.mktemp("image-run"), quick=True)


def test_every_variant_is_evaluated_and_benchmarked_in_its_own_process(report):
    assert report.task == "image-classification"
    assert [(v.name, v.format) for v in report.variants] == [
        ("baseline", "torch"),
        ("prune_unstructured", "torch"),
        ("onnx_export", "onnx"),
    ]
    for variant in report.variants:
        assert variant.metrics["eval_samples"] == 336 and variant.metrics["accuracy"] > 0.9
        assert set(variant.benchmark) == {"1", "4"}
        assert variant.benchmark_info.isolated_process
        for stats in variant.benchmark.values():
            assert stats.p50_ms > 0 and stats.iterations >= 5 and stats.seq_len == 0
    assert report.variants[0].benchmark_info.runtime == "pytorch-eager"
    assert report.variants[2].benchmark_info.runtime == "onnxruntime-cpu"


def test_the_gate_judges_accuracy_and_details_reach_the_report(report):
    pruned, exported = report.variants[1], report.variants[2]
    assert pruned.details["sparsity"] == pytest.approx(0.5, abs=0.005)
    assert [rule.metric for rule in exported.gate.rules] == ["accuracy"]
    assert exported.gate.outcome in ("pass", "needs_approval", "fail")
    # The export of the pruned model computes what the pruned model computes.
    assert exported.metrics["accuracy"] == pytest.approx(pruned.metrics["accuracy"], abs=1e-9)


def test_a_demo_model_not_built_yet_is_built_inside_the_run_with_progress(tmp_path, monkeypatch):
    # A fresh zoo cache: the run itself must train zoo:digits-cnn and say so as it goes.
    monkeypatch.setenv("INFEROPT_ZOO_DIR", str(tmp_path / "zoo"))
    events = []
    recipe = Recipe.parse({"model": "zoo:digits-cnn", "steps": [], "profile": False, "benchmark": {"batch_sizes": [1]}})
    report = run_recipe(recipe, tmp_path / "run", quick=True, on_progress=events.append)
    building = [event for event in events if event.stage == "build demo model"]
    assert len(building) >= 3, [event.stage for event in events]
    assert all(event.message.startswith("building zoo:digits-cnn: ") for event in building)
    assert any(event.percent < 1.0 for event in building)
    assert (tmp_path / "zoo").is_dir() and any((tmp_path / "zoo").iterdir())
    assert report.variants[0].metrics["accuracy"] > 0.9
