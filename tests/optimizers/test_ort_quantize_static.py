"""``ort_quantize_static`` on the real MiniLM (and the digits CNN): calibrated INT8 QDQ through ONNX Runtime."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from optimizers.errors import PreflightError
from optimizers.gates import default_rules
from tests.optimizers.conftest import run_pass


def _dequantized_inputs(artifact) -> dict[str, list[bool]]:
    """Per node name: for each input, whether it comes out of a DequantizeLinear."""
    graph = onnx.load(str(artifact.onnx_file)).graph
    dequantized = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    return {node.name: [name in dequantized for name in node.input] for node in graph.node}


def _nodes(artifact, op_type: str) -> list:
    return [node for node in onnx.load(str(artifact.onnx_file)).graph.node if node.op_type == op_type]


def _cosine_floor() -> float:
    rule = next(rule for rule in default_rules("feature-extraction") if rule.metric == "cosine")
    return 1.0 - rule.threshold


@pytest.fixture(scope="module")
def static_int8(minilm_onnx, tmp_path_factory):
    return run_pass("ort_quantize_static", minilm_onnx, tmp_path_factory.mktemp("static") / "q", calibration_samples=64)


def test_static_int8_is_smaller_and_within_the_default_gate(minilm_onnx, static_int8, metrics_of):
    assert static_int8.format == "onnx"
    assert static_int8.size_bytes < 0.5 * minilm_onnx.size_bytes
    assert _nodes(static_int8, "QuantizeLinear") and _nodes(static_int8, "DequantizeLinear")
    metrics = metrics_of(static_int8)
    assert _cosine_floor() <= metrics["cosine"] < 1.0
    details = static_int8.metadata["details"]
    assert details["calibration"] == {
        "dataset": "zoo:pydoc-retrieval/calibration",
        "samples": 64,
        "kind": "text",
        "method": "minmax",
        "max_seq_length": 128,
    }
    assert static_int8.metadata["precision"] == "int8-static"
    assert (static_int8.folder / "tokenizer.json").is_file()


def test_gelu_fed_matmuls_stay_float_by_default(static_int8):
    inputs = _dequantized_inputs(static_int8)
    kept = static_int8.metadata["details"]["kept_float_nodes"]
    assert len(kept) == 6  # one FFN down-projection per MiniLM layer
    for name in kept:
        assert not any(inputs[name]), f"{name} should read float inputs"
    quantized_matmuls = [node.name for node in _nodes(static_int8, "MatMul") if any(inputs[node.name])]
    assert len(quantized_matmuls) >= 36  # the other Linear layers (and attention products)


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_each_calibration_method_runs(minilm_onnx, metrics_of, tmp_path, method):
    quantized = run_pass(
        "ort_quantize_static", minilm_onnx, tmp_path / method, calibration_method=method, calibration_samples=4
    )
    assert quantized.metadata["details"]["calibration"]["method"] == method
    assert quantized.metadata["details"]["calibration"]["samples"] == 4
    assert quantized.metadata["details"]["quantized_nodes"]["MatMul"] > 0
    assert metrics_of(quantized)["cosine"] > 0.9


def test_excluded_op_types_are_not_quantized(minilm_onnx, tmp_path):
    quantized = run_pass(
        "ort_quantize_static", minilm_onnx, tmp_path / "q", op_types_to_exclude=["Gather"], calibration_samples=4
    )
    inputs = _dequantized_inputs(quantized)
    gathers = _nodes(quantized, "Gather")
    assert gathers and not any(any(inputs[node.name]) for node in gathers)
    assert "Gather" not in quantized.metadata["details"]["quantized_nodes"]
    embedding = next(i for i in onnx.load(str(quantized.onnx_file)).graph.initializer if "word_embeddings" in i.name)
    assert embedding.data_type == onnx.TensorProto.FLOAT
    assert any(any(inputs[node.name]) for node in _nodes(quantized, "MatMul"))


def test_calibration_overlapping_the_eval_set_is_refused(minilm_onnx, tmp_path):
    from optimizers.evaluation.datasets import pydoc_retrieval

    leaked = tmp_path / "leaked.jsonl"
    eval_texts = pydoc_retrieval("eval").texts[:3]
    leaked.write_text("".join(json.dumps({"text": text}) + "\n" for text in ["A fresh sentence.", *eval_texts]))
    with pytest.raises(PreflightError, match=r"leaked\.jsonl shares 3 texts with evaluation set"):
        run_pass(
            "ort_quantize_static", minilm_onnx, tmp_path / "q", calibration_dataset=str(leaked), calibration_samples=4
        )
    assert not (tmp_path / "q").exists()


def test_calibration_overlapping_the_recipes_own_eval_file_is_refused(minilm_onnx, tmp_path):
    rows = tmp_path / "mine.jsonl"
    rows.write_text(
        "".join(json.dumps({"text": f"Private sentence number {n} about caching."}) + "\n" for n in range(4))
    )
    with pytest.raises(PreflightError, match=r"shares 4 texts with evaluation set mine\.jsonl"):
        run_pass(
            "ort_quantize_static",
            minilm_onnx,
            tmp_path / "q",
            calibration_dataset=str(rows),
            evaluation_dataset=str(rows),
            calibration_samples=4,
        )


def test_empty_calibration_set_is_refused(minilm_onnx, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(PreflightError, match=r"calibration set empty\.jsonl is empty"):
        run_pass("ort_quantize_static", minilm_onnx, tmp_path / "q", calibration_dataset=str(empty))
    assert not (tmp_path / "q").exists()


def test_fewer_calibration_samples_than_asked_is_refused(minilm_onnx, tmp_path):
    with pytest.raises(PreflightError, match=r"has 164 samples, fewer than the 500 asked for"):
        run_pass("ort_quantize_static", minilm_onnx, tmp_path / "q", calibration_samples=500)
    assert not (tmp_path / "q").exists()


def test_excluding_every_op_type_is_refused(minilm_onnx, tmp_path):
    every = ["MatMul", "Gemm", "Conv", "ConvTranspose", "Gather"]
    with pytest.raises(PreflightError, match="leaves no operator type"):
        run_pass("ort_quantize_static", minilm_onnx, tmp_path / "q", op_types_to_exclude=every)


def test_digits_cnn_static_int8_keeps_accuracy(digits_cnn, tmp_path):
    from optimizers.evaluation.image_classification import classification_metrics, predict
    from optimizers.evaluation.images import digits_image_split
    from optimizers.runtimes import load_runtime

    exported = run_pass("onnx_export", digits_cnn, tmp_path / "onnx")
    quantized = run_pass("ort_quantize_static", exported, tmp_path / "q", calibration_samples=64)
    assert quantized.metadata["details"]["calibration"]["dataset"] == "zoo:digits/calibration"
    assert quantized.metadata["details"]["quantized_nodes"].get("Conv", 0) > 0
    assert quantized.size_bytes < exported.size_bytes
    held_out = digits_image_split("eval")
    baseline = predict(load_runtime(digits_cnn), held_out.images, 64)
    logits = predict(load_runtime(quantized, allow_spinning=False), held_out.images, 64)
    metrics = classification_metrics(logits, held_out.labels, baseline)
    baseline_accuracy = float(np.mean(np.argmax(baseline, axis=1) == held_out.labels))
    assert metrics["accuracy"] >= baseline_accuracy - 0.01
