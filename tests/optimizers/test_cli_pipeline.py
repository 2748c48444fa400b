"""The CLI runs a whole recipe and writes report.json in the documented shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from optimizers.errors import CancelledError
from optimizers.pipeline import run_recipe
from optimizers.recipe import Recipe

RECIPE = """
model: zoo:minilm
steps:
  - pass: onnx_export
  - pass: ort_quantize_dynamic
    per_channel: true
benchmark: {batch_sizes: [1, 2], seq_len: 32}
evaluation: {max_samples: 16}
"""
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    (folder / "recipe.yaml").write_text(RECIPE)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "optimizers",
            "run",
            str(folder / "recipe.yaml"),
            "--out",
            str(folder / "out"),
            "--quick",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    return completed, folder / "out"


def test_cli_writes_the_documented_report(cli_run):
    completed, out = cli_run
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == "zoo:minilm" and report["task"] == "feature-extraction"
    assert [v["name"] for v in report["variants"]] == ["baseline", "onnx_export", "ort_quantize_dynamic"]
    for variant in report["variants"]:
        assert {"name", "format", "path", "sha256", "size_bytes", "metrics", "benchmark"} <= set(variant)
        assert set(variant["benchmark"]) == {"1", "2"}
        for stats in variant["benchmark"].values():
            assert {"p50_ms", "p95_ms", "p99_ms", "throughput_per_s"} <= set(stats)
            assert stats["p50_ms"] > 0
        assert variant["benchmark_info"]["isolated_process"] is True
    gate = report["gate"]
    assert gate["outcome"] == "needs_approval"  # INT8 loses a little cosine: a reviewer must decide
    assert {"metric", "kind", "threshold", "baseline", "candidate", "passed"} <= set(gate["rules"][0])
    assert Path(report["variants"][-1]["path"], "model.onnx").is_file()
    assert "gate: needs_approval" in completed.stdout
    assert report["profile"]["top_ops"] and set(report["profile"]["shares"]) == {"preprocess", "model", "postprocess"}


def test_cli_reports_bad_recipes_without_a_traceback(tmp_path):
    (tmp_path / "bad.yaml").write_text("model: zoo:minilm\nsteps:\n  - pass: ort_quantize_dynamic\n")
    completed = subprocess.run(
        [sys.executable, "-m", "optimizers", "run", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert completed.returncode == 2
    assert "takes onnx models, but receives hf" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_cache_reuses_a_pass_output_and_cancel_stops_between_steps(tmp_path):
    recipe = Recipe.parse(
        {
            "model": "zoo:minilm",
            "steps": [{"pass": "onnx_export"}, {"pass": "ort_optimize"}],
            "evaluation": {"max_samples": 4},
        }
    )
    logs: list[str] = []
    stages: list[str] = []

    def cancel_after_first_step() -> bool:
        return any(stage.startswith("step 2") for stage in stages)

    for attempt in range(2):
        logs.clear()
        stages.clear()
        with pytest.raises(CancelledError):
            run_recipe(
                recipe,
                tmp_path / f"out{attempt}",
                on_progress=lambda event: stages.append(event.stage),
                on_log=logs.append,
                should_cancel=cancel_after_first_step,
                cache_dir=tmp_path / "cache",
            )
    assert any("reused cached output" in line for line in logs), logs
    assert not any(stage == "evaluate" for stage in stages)
