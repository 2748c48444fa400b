"""qat on zoo:digits-cnn: trains with fake quantization, converts to an INT8 ONNX graph that reloads."""

from __future__ import annotations

import onnx
import pydantic
import pytest

from optimizers.errors import PreflightError
from optimizers.evaluation import evaluator_for
from optimizers.passes import get_pass
from optimizers.passes.base import PassContext
from optimizers.passes.qat import cpu_has_vnni
from optimizers.runtimes import load_runtime


@pytest.fixture(scope="module")
def qat_run(digits_cnn, tmp_path_factory):
    technique = get_pass("qat")
    config = technique.parse_config({"steps": 60})
    technique.preflight(digits_cnn, config)
    messages: list[str] = []
    ctx = PassContext(
        work_dir=tmp_path_factory.mktemp("qat") / "out", progress=lambda fraction, message: messages.append(message)
    )
    try:
        return technique.run(digits_cnn, config, ctx), messages
    finally:
        technique.cleanup(ctx)


def test_qat_converts_to_an_int8_qdq_onnx_graph(qat_run, digits_cnn):
    quantized, _ = qat_run
    assert (quantized.format, quantized.task) == ("onnx", "image-classification")
    model = onnx.load(str(quantized.onnx_file))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm"} <= ops
    int8 = [init for init in model.graph.initializer if init.data_type == onnx.TensorProto.INT8 and len(init.dims) > 1]
    assert len(int8) == 4, "the weights of both convolutions and both Linear layers are stored as INT8"
    assert quantized.size_bytes < 0.6 * digits_cnn.size_bytes
    assert quantized.metadata["weight_bits"] == 8


def test_activations_use_7_bits_exactly_where_the_cpu_lacks_vnni(qat_run):
    # ONNX Runtime's u8s8 kernels on plain AVX2 saturate with full-range activations (seen in CI on such a CPU).
    quantized, _ = qat_run
    reduce_range = quantized.metadata["details"]["reduce_range"]
    assert reduce_range is (not cpu_has_vnni())
    assert any("7-bit" in note for note in quantized.metadata["details"]["notes"]) is reduce_range


def test_qat_accuracy_is_close_to_float_and_reported_beside_ptq(qat_run, digits_cnn):
    quantized, _ = qat_run
    details = quantized.metadata["details"]
    assert {"float_accuracy", "ptq_accuracy", "qat_accuracy"} <= set(details)
    assert details["qat_accuracy"] >= details["float_accuracy"] - 0.02
    load_runtime(quantized)
    evaluator = evaluator_for("image-classification", dataset=None, max_samples=10_000, batch_size=64)
    baseline = evaluator.evaluate(digits_cnn)
    metrics = evaluator.evaluate(quantized)
    assert metrics["accuracy"] >= baseline["accuracy"] - 0.02
    assert metrics["top1_agreement"] > 0.97


def test_qat_records_the_training_curve_and_step_progress(qat_run):
    quantized, messages = qat_run
    curve = quantized.metadata["details"]["training_curve"]
    assert curve[-1]["step"] == 60 and all(point["loss"] >= 0 for point in curve)
    assert "step 60 of 60, loss" in " ".join(messages)
    assert any(message.startswith("step 10 of 60, loss ") for message in messages)


def test_qat_refuses_sentence_encoders_and_zero_steps(minilm):
    technique = get_pass("qat")
    with pytest.raises(PreflightError, match="takes torch models"):
        technique.preflight(minilm, technique.parse_config({}))
    with pytest.raises(pydantic.ValidationError):
        technique.parse_config({"steps": 0})
