"""Profiling: the pre/model/post split and the top operators, for PyTorch and ONNX Runtime."""

from __future__ import annotations

import pytest

from optimizers.benchmark.isolated import profile_isolated
from optimizers.profiling import profile_artifact


def test_torch_profile_splits_time_and_names_matmuls(minilm):
    profile = profile_artifact(minilm, batch_size=1, seq_len=32, iterations=2)
    assert profile.runtime == "pytorch-eager" and profile.device.startswith("cpu")
    assert profile.model_ms > 0 and profile.preprocess_ms > 0 and profile.postprocess_ms > 0
    assert sum(profile.shares.values()) == pytest.approx(1.0)
    assert profile.top_ops and profile.top_ops == sorted(profile.top_ops, key=lambda op: op.self_ms, reverse=True)
    assert any(op.op in ("aten::addmm", "aten::linear", "aten::mm") for op in profile.top_ops[:3])


def test_onnx_profile_in_its_own_process_uses_ort_operator_names(minilm_onnx):
    profile = profile_isolated(minilm_onnx, batch_size=1, seq_len=32)
    assert profile.runtime == "onnxruntime-cpu"
    names = {op.op for op in profile.top_ops}
    assert "MatMul" in names
    assert sum(op.share for op in profile.top_ops) <= 1.0 + 1e-6
