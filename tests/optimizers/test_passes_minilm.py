"""Each pass on the real pretrained MiniLM: it runs, the artifact loads, the metric moves as expected."""

from __future__ import annotations

import onnx
import pytest

from optimizers.errors import PassError, PreflightError
from tests.optimizers.conftest import run_pass


def _op_types(artifact) -> set[str]:
    return {node.op_type for node in onnx.load(str(artifact.onnx_file)).graph.node}


def test_onnx_export_has_dynamic_batch_and_sequence_axes(minilm_onnx):
    graph = onnx.load(str(minilm_onnx.onnx_file)).graph
    assert minilm_onnx.format == "onnx"
    assert (
        max(o.version for o in onnx.load(str(minilm_onnx.onnx_file)).opset_import if o.domain in ("", "ai.onnx")) >= 17
    )
    for tensor in [*graph.input, graph.output[0]]:
        dims = tensor.type.tensor_type.shape.dim
        assert dims[0].dim_param and dims[1].dim_param, f"{tensor.name} has a fixed batch or sequence axis"


def test_onnx_export_is_verified_and_matches_pytorch(minilm_onnx, metrics_of):
    assert minilm_onnx.metadata["verified_max_abs_diff"] < 1e-3
    assert metrics_of(minilm_onnx)["cosine"] > 0.99999


def test_onnx_export_fails_loudly_when_outputs_differ(minilm, tmp_path):
    with pytest.raises(PassError, match="differs from PyTorch"):
        run_pass("onnx_export", minilm, tmp_path / "strict", atol=1e-12)


def test_onnx_export_keeps_the_tokenizer_and_lineage(minilm, minilm_onnx):
    assert (minilm_onnx.folder / "tokenizer.json").is_file()
    assert (minilm_onnx.folder / "inferopt.json").is_file()
    assert not list(minilm_onnx.folder.glob("*.safetensors"))
    assert minilm_onnx.parent_sha256 == minilm.sha256
    assert minilm_onnx.produced_by == "onnx_export"


def test_ort_optimize_saves_a_fused_graph(minilm_onnx, metrics_of, tmp_path):
    optimized = run_pass("ort_optimize", minilm_onnx, tmp_path / "opt")
    assert optimized.metadata["nodes_after"] < optimized.metadata["nodes_before"]
    assert "SkipLayerNormalization" in _op_types(optimized)
    assert metrics_of(optimized)["cosine"] > 0.9999


def test_ort_optimize_level_is_configurable(minilm_onnx, tmp_path):
    basic = run_pass("ort_optimize", minilm_onnx, tmp_path / "basic", level="basic")
    assert "SkipLayerNormalization" not in _op_types(basic)


def test_ort_quantize_dynamic_int8_per_channel_is_smaller_and_close(minilm_onnx, metrics_of, tmp_path):
    quantized = run_pass("ort_quantize_dynamic", minilm_onnx, tmp_path / "q")
    assert {"MatMulInteger", "DynamicQuantizeLinear"} & _op_types(quantized)
    assert quantized.size_bytes < 0.75 * minilm_onnx.size_bytes
    metrics = metrics_of(quantized)
    assert 0.98 < metrics["cosine"] < 1.0
    per_tensor = metrics_of(run_pass("ort_quantize_dynamic", minilm_onnx, tmp_path / "pt", per_channel=False))
    assert per_tensor["cosine"] < metrics["cosine"], "per-channel scales should be more accurate than per-tensor"


def test_ort_quantize_dynamic_refuses_a_fused_graph(minilm_onnx, tmp_path):
    optimized = run_pass("ort_optimize", minilm_onnx, tmp_path / "opt", level="all")
    with pytest.raises(PreflightError, match="plain exported graph"):
        run_pass("ort_quantize_dynamic", optimized, tmp_path / "q")


def test_torch_quantize_dynamic_stores_int8_safetensors_and_reloads(minilm, metrics_of, tmp_path):
    quantized = run_pass("torch_quantize_dynamic", minilm, tmp_path / "tq")
    files = {p.name for p in quantized.folder.iterdir()}
    assert {"quantized_linear.safetensors", "model.safetensors"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)
    assert quantized.size_bytes < 0.75 * minilm.size_bytes
    assert quantized.metadata["quantized_layers"] == 37  # 6 layers × 6 Linear + pooler
    metrics = metrics_of(quantized)
    assert 0.9 < metrics["cosine"] < 1.0


def test_onnx_export_refuses_torch_quantized_input(minilm, tmp_path):
    quantized = run_pass("torch_quantize_dynamic", minilm, tmp_path / "tq")
    with pytest.raises(PreflightError, match="PyTorch-quantized"):
        run_pass("onnx_export", quantized, tmp_path / "onnx")


def test_pass_refuses_wrong_input_format(minilm, tmp_path):
    with pytest.raises(PreflightError, match="takes onnx"):
        run_pass("ort_quantize_dynamic", minilm, tmp_path / "q")
