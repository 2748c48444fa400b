"""``openvino_quantize`` on the real MiniLM (and the digits CNN): OpenVINO IR + NNCF INT8, and its runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest

from optimizers.errors import PreflightError
from tests.optimizers.conftest import run_pass

pytest.importorskip("openvino")
pytest.importorskip("nncf")


def _ir_facts(artifact) -> dict[str, int]:
    """INT8 facts of the IR as saved on disk (not the in-memory model the pass had)."""
    import openvino as ov

    from optimizers.passes.openvino_quantize import int8_facts

    return int8_facts(ov.Core().read_model(str(artifact.folder / "model.xml")))


@pytest.fixture(scope="module")
def ov_int8(minilm_onnx, tmp_path_factory):
    return run_pass("openvino_quantize", minilm_onnx, tmp_path_factory.mktemp("ov") / "int8", calibration_samples=32)


def test_openvino_int8_ir_loads_has_int8_and_stays_close(minilm_onnx, ov_int8, metrics_of):
    from optimizers.runtimes import load_runtime

    assert ov_int8.format == "openvino"
    assert {"model.xml", "model.bin", "tokenizer.json"} <= {path.name for path in ov_int8.folder.iterdir()}
    runtime = load_runtime(ov_int8)
    assert runtime.name == "openvino-cpu"
    assert runtime.threads()["openvino_inference_precision"] == "f32"
    facts = _ir_facts(ov_int8)
    assert facts["fake_quantize"] > 0 or facts["int8_constants"] > 0
    assert ov_int8.size_bytes < 0.5 * minilm_onnx.size_bytes
    assert metrics_of(ov_int8)["cosine"] >= 0.99
    details = ov_int8.metadata["details"]
    assert details["calibration"]["samples"] == 32
    assert details["calibration"]["dataset"] == "zoo:pydoc-retrieval/calibration"
    assert ov_int8.metadata["precision"] == "int8-static"
    assert ov_int8.parent_sha256 == minilm_onnx.sha256


def test_openvino_fp32_conversion_matches_onnx(minilm_onnx, metrics_of, tmp_path):
    converted = run_pass("openvino_quantize", minilm_onnx, tmp_path / "fp32", precision="fp32")
    assert _ir_facts(converted) == {"fake_quantize": 0, "int8_constants": 0}
    assert metrics_of(converted)["cosine"] > 0.9999


def test_openvino_artifacts_benchmark_in_their_own_process(ov_int8):
    from optimizers.benchmark.isolated import measure_isolated
    from optimizers.recipe import BenchmarkSettings

    settings = BenchmarkSettings(batch_sizes=[1, 2], seq_len=32, warmup=1, min_iterations=3, min_seconds=0.0)
    measured = measure_isolated(ov_int8, settings)
    assert set(measured.stats) == {"1", "2"}
    assert measured.info.runtime == "openvino-cpu" and measured.info.isolated_process
    assert all(row.iterations >= 3 and row.p50_ms > 0 for row in measured.stats.values())


def test_accuracy_control_runs_on_a_tiny_validation_subset(minilm_onnx, metrics_of, tmp_path):
    controlled = run_pass(
        "openvino_quantize",
        minilm_onnx,
        tmp_path / "ac",
        accuracy_control=True,
        calibration_samples=8,
        validation_samples=4,
        max_drop=0.002,  # tighter than plain INT8 reaches, so at least one layer group goes back to float
        max_iterations=1,
    )
    report = controlled.metadata["details"]["accuracy_control"]
    assert report["validation_dataset"] == "zoo:pydoc-retrieval/train"
    assert report["validation_samples"] == 4
    assert report["metric"] == "cosine" and report["fp32"] == pytest.approx(1.0, abs=1e-5)
    assert report["max_drop"] == 0.002
    assert _ir_facts(controlled)["fake_quantize"] > 0
    assert metrics_of(controlled)["cosine"] >= 0.98


def test_accuracy_control_default_max_drop_comes_from_the_gate():
    from optimizers.passes.openvino_quantize import default_max_drop

    assert default_max_drop("feature-extraction") == 0.01
    assert default_max_drop("image-classification") == 0.01


def test_overlapping_calibration_is_refused_before_any_work(minilm_onnx, tmp_path):
    from optimizers.evaluation.datasets import pydoc_retrieval

    leaked = tmp_path / "leaked.jsonl"
    leaked.write_text("".join(json.dumps({"text": text}) + "\n" for text in pydoc_retrieval("eval").texts[:2]))
    with pytest.raises(PreflightError, match=r"leaked\.jsonl shares 2 texts with evaluation set"):
        run_pass(
            "openvino_quantize", minilm_onnx, tmp_path / "q", calibration_dataset=str(leaked), calibration_samples=2
        )
    assert not (tmp_path / "q").exists()


def test_too_few_calibration_samples_and_fp32_accuracy_control_are_refused(minilm_onnx, tmp_path):
    with pytest.raises(PreflightError, match="fewer than the 1000 asked for"):
        run_pass("openvino_quantize", minilm_onnx, tmp_path / "q", calibration_samples=1000)
    with pytest.raises(PreflightError, match="accuracy_control applies to precision int8 only"):
        run_pass("openvino_quantize", minilm_onnx, tmp_path / "q", precision="fp32", accuracy_control=True)
    assert not (tmp_path / "q").exists()


def test_openvino_quantize_takes_onnx_only(minilm, tmp_path):
    with pytest.raises(PreflightError, match="takes onnx"):
        run_pass("openvino_quantize", minilm, tmp_path / "q")


def test_digits_cnn_openvino_int8_keeps_accuracy(digits_cnn, tmp_path):
    from optimizers.evaluation.image_classification import predict
    from optimizers.evaluation.images import digits_image_split
    from optimizers.runtimes import load_runtime

    # A comma and a space in the folder: ov.convert_model would split the path at the comma.
    exported = run_pass("onnx_export", digits_cnn, tmp_path / "student, onnx")
    quantized = run_pass("openvino_quantize", exported, tmp_path / "int8", calibration_samples=64)
    assert quantized.metadata["details"]["calibration"]["dataset"] == "zoo:digits/calibration"
    assert _ir_facts(quantized)["fake_quantize"] > 0
    held_out = digits_image_split("eval")
    baseline = np.argmax(predict(load_runtime(digits_cnn), held_out.images, 64), axis=1)
    logits = predict(load_runtime(quantized), held_out.images, 64)
    assert logits.shape == (len(held_out), 10)
    accuracy = float(np.mean(np.argmax(logits, axis=1) == held_out.labels))
    assert accuracy >= float(np.mean(baseline == held_out.labels)) - 0.01
