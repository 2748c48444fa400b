"""On a CUDA machine: the capability probe sees the GPU, runtimes name it, TensorRT / ORT GPU where installed.

Skipped without CUDA (``make gpu-check`` runs them). The TensorRT and onnxruntime-gpu tests
skip on their own when the library is missing (the lent GPU image has neither).
"""

from __future__ import annotations

import importlib.util
import json

import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_probe_reports_the_gpu_and_its_architecture_queue():
    from optimizers.capabilities import gpu_info, gpu_info_isolated, probe, suggested_queues

    gpus = gpu_info()
    assert gpus and gpus[0]["name"] == torch.cuda.get_device_name(0)
    assert tuple(gpus[0]["compute_capability"]) == torch.cuda.get_device_capability(0)
    assert gpus[0]["memory_mb"] > 1000
    assert gpu_info_isolated() == gpus  # the way a Celery parent probes, without touching CUDA itself
    capabilities = probe(queues=["gpu"], gpus=gpus)
    major, minor = gpus[0]["compute_capability"]
    assert suggested_queues(capabilities) == ["gpu", f"gpu.sm{major}{minor}"]
    verdict = capabilities["passes"]["tensorrt_build"]
    if importlib.util.find_spec("tensorrt") is None:
        assert verdict == {
            "runnable": False,
            "reason": "needs Python packages not installed on this worker: tensorrt",
        }
    else:
        assert verdict["runnable"] is True


def test_benchmark_device_name_says_which_gpu():
    from optimizers.benchmark.hardware import device_name

    major, minor = torch.cuda.get_device_capability()
    assert device_name("cuda") == f"cuda: {torch.cuda.get_device_name()} (compute capability {major}.{minor})"


@pytest.fixture
def tiny_encoder_onnx(tmp_path):
    pytest.importorskip("onnx")
    from transformers import AutoModel, BertConfig

    config = BertConfig(
        vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128
    )
    encoder = AutoModel.from_config(config, attn_implementation="eager").eval()

    class Encoder(torch.nn.Module):
        # transformers 5's forward takes more positional parameters than the exporter should guess at.
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask):
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    model = Encoder().eval()
    ids = torch.randint(0, 1000, (2, 16))
    folder = tmp_path / "onnx"
    folder.mkdir()
    torch.onnx.export(
        model,
        (ids, torch.ones_like(ids)),
        str(folder / "model.onnx"),
        input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state"],
        dynamic_axes={n: {0: "batch", 1: "sequence"} for n in ("input_ids", "attention_mask", "last_hidden_state")},
        opset_version=17,
        dynamo=False,
    )
    with torch.inference_mode():
        expected = model(ids, torch.ones_like(ids)).numpy()
    return folder, ids.numpy(), expected


def test_tensorrt_engine_builds_runs_and_refuses_another_gpu(tiny_encoder_onnx, tmp_path):
    pytest.importorskip("tensorrt", reason="tensorrt is not installed on this GPU machine")
    import numpy as np
    import tensorrt as trt

    from optimizers.artifacts import ModelArtifact
    from optimizers.errors import PreflightError
    from optimizers.passes.tensorrt_build import (
        ENGINE_FILE,
        ENGINE_METADATA_FILE,
        build_engine,
        build_profile,
        engine_metadata,
        graph_inputs,
    )
    from optimizers.runtimes.tensorrt_gpu import TensorRTRuntime

    folder, ids, expected = tiny_encoder_onnx
    profile = build_profile(graph_inputs(folder / "model.onnx"), {}, seq_len=16, max_seq_len=64)
    cache = tmp_path / "timing.cache"
    plan = build_engine(folder / "model.onnx", profile, precision="fp32", workspace_bytes=1 << 30, timing_cache=cache)
    assert cache.stat().st_size > 0
    engine_dir = tmp_path / "engine"
    engine_dir.mkdir()
    (engine_dir / ENGINE_FILE).write_bytes(plan)
    metadata = engine_metadata(
        gpu_name=torch.cuda.get_device_name(),
        compute_capability=torch.cuda.get_device_capability(),
        tensorrt_version=trt.__version__,
        cuda_version=torch.version.cuda,
        precision="fp32",
        profile=profile,
    )
    (engine_dir / ENGINE_METADATA_FILE).write_text(json.dumps(metadata))
    artifact = ModelArtifact(
        name="engine", path=str(engine_dir), format="tensorrt", task="feature-extraction", sha256="", size_bytes=1
    )
    output = TensorRTRuntime(artifact).forward({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    assert np.allclose(output, expected, atol=1e-3)
    (engine_dir / ENGINE_METADATA_FILE).write_text(json.dumps({**metadata, "compute_capability": [1, 0]}))
    with pytest.raises(PreflightError, match="not portable across GPU architectures"):
        TensorRTRuntime(artifact)


def test_onnxruntime_cuda_provider_matches_the_cpu(tiny_encoder_onnx):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is not installed (CPU build of onnxruntime)")
    import numpy as np

    from optimizers.artifacts import ModelArtifact
    from optimizers.runtimes.onnxruntime_gpu import OrtGpuRuntime

    folder, ids, expected = tiny_encoder_onnx
    artifact = ModelArtifact(
        name="onnx", path=str(folder), format="onnx", task="feature-extraction", sha256="", size_bytes=1
    )
    runtime = OrtGpuRuntime(artifact, provider="cuda")
    assert runtime.device == "cuda" and "CUDAExecutionProvider" in runtime.threads()["providers"]
    assert np.allclose(runtime.forward({"input_ids": ids, "attention_mask": np.ones_like(ids)}), expected, atol=1e-3)
