"""gptq, awq, w8a8 and int4_weight_only on a CUDA GPU (``make gpu-check``; skipped without CUDA).

On a GPU worker llm-compressor calibrates on the device, no CPU patch is applied, and
int4_weight_only switches to torchao's ``Int4WeightOnlyConfig`` (tinygemm layout, bf16).
The model is the small random Llama of ``tests/optimizers/llm_support`` so that the
check needs no zoo build on the GPU machine.
"""

from __future__ import annotations

import json
import time

import pytest

torch = pytest.importorskip("torch")

from optimizers.artifacts import ModelArtifact  # noqa: E402
from tests.optimizers.conftest import run_pass  # noqa: E402
from tests.optimizers.llm_support import build_random_llama, eval_windows, lm_quality  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

SMALL = {"num_calibration_samples": 16, "max_seq_length": 128}


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> ModelArtifact:
    folder = tmp_path_factory.mktemp("llama") / "model"
    build_random_llama(folder)
    return ModelArtifact.from_folder(folder, name="baseline", format="hf", task="causal-lm", write_metadata=False)


@pytest.fixture(scope="module")
def windows(llama):
    return eval_windows(llama)


def cuda_logits(artifact: ModelArtifact, windows, dtype=None):
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": dtype} if dtype is not None else {}
    model = AutoModelForCausalLM.from_pretrained(artifact.folder, device_map="cuda", local_files_only=True, **kwargs)
    with torch.inference_mode():
        return model.eval()(torch.tensor(windows, device="cuda")).logits.float().cpu()


@pytest.fixture(scope="module")
def baseline_logits(llama, windows):
    return cuda_logits(llama, windows)


@pytest.mark.parametrize("name, config", [("gptq", {}), ("awq", {"n_grid": 10}), ("w8a8", {})])
def test_llm_compressor_pass_runs_on_the_gpu(name, config, llama, windows, baseline_logits, tmp_path):
    from optimizers.passes import get_pass

    technique = get_pass(name)
    estimate = technique.preflight(llama, technique.parse_config({**SMALL, **config}))
    started = time.perf_counter()
    artifact = run_pass(name, llama, tmp_path / name, **SMALL, **config)
    seconds = time.perf_counter() - started
    assert artifact.metadata["quantized_on"] == "cuda"
    metrics = lm_quality(baseline_logits, cuda_logits(artifact, windows), windows)
    device = torch.cuda.get_device_name()
    print(f"\n{name} on {device}: {seconds:.1f} s (estimate {estimate.estimated_seconds} s), {metrics}")
    assert 0 < metrics["kl_divergence"] < 1.0
    assert metrics["perplexity"] < lm_quality(baseline_logits, baseline_logits, windows)["perplexity"] * 1.5


def test_int4_weight_only_uses_the_cuda_int4_layout(llama, windows, baseline_logits, tmp_path):
    from transformers import AutoModelForCausalLM

    started = time.perf_counter()
    artifact = run_pass("int4_weight_only", llama, tmp_path / "int4")
    seconds = time.perf_counter() - started
    assert artifact.metadata["requires_cuda"] is True
    assert artifact.metadata["torchao_config"].startswith("Int4WeightOnlyConfig")
    config = json.loads((artifact.folder / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "torchao"
    model = AutoModelForCausalLM.from_pretrained(artifact.folder, device_map="cuda", local_files_only=True)
    assert type(model.model.layers[0].mlp.down_proj.weight).__name__ == "Int4TilePackedTo4dTensor"
    metrics = lm_quality(baseline_logits, cuda_logits(artifact, windows), windows)
    print(f"\nint4_weight_only on {torch.cuda.get_device_name()}: {seconds:.1f} s, {metrics}")
    assert 0 < metrics["kl_divergence"] < 1.0


def test_no_cpu_patch_is_applied_with_cuda():
    from llmcompressor.pipelines.cache import IntermediatesCache

    from optimizers.passes.llm_compressor import _no_pinned_memory_without_cuda

    original = IntermediatesCache.pin_memory
    with _no_pinned_memory_without_cuda():
        assert IntermediatesCache.pin_memory is original
