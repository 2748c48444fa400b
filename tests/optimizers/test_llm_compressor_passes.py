"""gptq, awq and w8a8 (llm-compressor) on the tiny causal LM: run, reload, quality; and bad input.

Calibration is kept small (8 windows of 64 tokens) so each pass runs in seconds here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from optimizers.errors import PassError, PreflightError, RecipeError
from optimizers.passes import get_pass
from optimizers.recipe import Recipe
from tests.optimizers.conftest import run_pass
from tests.optimizers.llm_support import QualityJudge, tiny_causal_lm

SMALL = {"num_calibration_samples": 8, "max_seq_length": 64}
#: Quantized perplexity may rise, but not past this multiple of the baseline's.
PERPLEXITY_BOUND = 1.5


@pytest.fixture(scope="module")
def tiny_lm():
    return tiny_causal_lm()


@pytest.fixture(scope="module")
def quality(tiny_lm):
    return QualityJudge(tiny_lm)


@pytest.fixture(scope="module")
def gptq_artifact(tiny_lm, tmp_path_factory):
    return run_pass("gptq", tiny_lm, tmp_path_factory.mktemp("gptq") / "out", **SMALL)


@pytest.fixture(scope="module")
def w8a8_artifact(tiny_lm, tmp_path_factory):
    return run_pass("w8a8", tiny_lm, tmp_path_factory.mktemp("w8a8") / "out", **SMALL)


def quantization_config(artifact) -> dict:
    return json.loads((artifact.folder / "config.json").read_text())["quantization_config"]


# ---------------------------------------------------------------- running the passes


@pytest.mark.slow
def test_gptq_writes_w4a16_compressed_tensors_that_keep_perplexity(tiny_lm, gptq_artifact, quality):
    config = quantization_config(gptq_artifact)
    weights = config["config_groups"]["group_0"]["weights"]
    assert config["quant_method"] == "compressed-tensors"
    assert (weights["num_bits"], weights["strategy"], weights["group_size"]) == (4, "group", 128)
    assert config["ignore"] == ["lm_head"]
    meta = gptq_artifact.metadata
    assert meta["scheme"] == "W4A16" and meta["group_size"] == 128 and meta["ignore"] == ["lm_head"]
    assert meta["calibration"]["samples"] == 8 and meta["calibration"]["seq_len"] == 64
    assert meta["estimate"]["seconds"] > 0 and meta["estimate"]["memory_mb"] > 0
    assert meta["quantized_layers"] > 0
    assert gptq_artifact.size_bytes < tiny_lm.size_bytes
    assert gptq_artifact.parent_sha256 == tiny_lm.sha256
    metrics = quality(gptq_artifact)
    assert metrics["kl_divergence"] > 0, "4-bit weights must change the logits"
    assert metrics["perplexity"] < quality.baseline["perplexity"] * PERPLEXITY_BOUND


@pytest.mark.slow
def test_w8a8_is_closer_to_the_baseline_than_4_bit_gptq(gptq_artifact, w8a8_artifact, quality):
    weights = quantization_config(w8a8_artifact)["config_groups"]["group_0"]
    assert weights["weights"]["num_bits"] == 8 and weights["input_activations"]["num_bits"] == 8
    eight, four = quality(w8a8_artifact), quality(gptq_artifact)
    assert eight["perplexity"] < quality.baseline["perplexity"] * PERPLEXITY_BOUND
    assert 0 < eight["kl_divergence"] < four["kl_divergence"]
    assert eight["top1_agreement"] > 0.9


@pytest.mark.slow
def test_awq_writes_asymmetric_4_bit_weights_that_keep_perplexity(tiny_lm, tmp_path, quality):
    artifact = run_pass("awq", tiny_lm, tmp_path / "awq", n_grid=4, **SMALL)
    weights = quantization_config(artifact)["config_groups"]["group_0"]["weights"]
    assert (weights["num_bits"], weights["symmetric"]) == (4, False)
    assert artifact.metadata["scheme"] == "W4A16_ASYM"
    metrics = quality(artifact)
    assert metrics["kl_divergence"] > 0
    assert metrics["perplexity"] < quality.baseline["perplexity"] * PERPLEXITY_BOUND


# ---------------------------------------------------------------- bad input, refused in preflight


def preflight(name, artifact, **config):
    technique = get_pass(name)
    return technique.preflight(artifact, technique.parse_config(config))


@pytest.mark.parametrize("name", ["gptq", "awq", "w8a8"])
def test_a_model_that_is_not_a_causal_lm_is_refused(minilm, name):
    with pytest.raises(PreflightError, match="quantizes causal language models.*feature-extraction"):
        preflight(name, minilm)


def test_empty_calibration_text_is_refused(tiny_lm, tmp_path):
    empty = tmp_path / "calibration.jsonl"
    empty.write_text('{"text": "   "}\n{"text": ""}\n')
    with pytest.raises(PreflightError, match="has no text"):
        preflight("gptq", tiny_lm, calibration_dataset=str(empty))


def test_too_short_calibration_text_is_refused(tiny_lm, tmp_path):
    short = tmp_path / "calibration.jsonl"
    short.write_text('{"text": "Only a few words here."}\n')
    with pytest.raises(PreflightError, match="too short: .* tokens"):
        preflight("gptq", tiny_lm, calibration_dataset=str(short))


def test_calibration_text_that_overlaps_the_evaluation_split_is_refused(tiny_lm, tmp_path):
    from optimizers.passes.llm_common import builtin_texts

    leaked = tmp_path / "calibration.jsonl"
    leaked.write_text("".join(json.dumps({"text": text}) + "\n" for text in builtin_texts("eval")[:20]))
    with pytest.raises(PreflightError, match="shares 20 texts with evaluation"):
        preflight("gptq", tiny_lm, calibration_dataset=str(leaked))


def test_an_unknown_calibration_set_is_refused(tiny_lm):
    with pytest.raises(PreflightError, match="unknown calibration set 'zoo:nope'"):
        preflight("gptq", tiny_lm, calibration_dataset="zoo:nope")


def test_a_quantization_scheme_outside_the_list_is_a_recipe_error():
    with pytest.raises(RecipeError, match="scheme"):
        Recipe.parse({"model": "zoo:minilm", "steps": [{"pass": "gptq", "scheme": "W3A5"}]}, input_format="hf")


def test_a_scheme_the_installed_library_does_not_know_is_refused():
    from optimizers.passes.llm_compressor import _check_scheme_known

    _check_scheme_known("W4A16")
    with pytest.raises(PreflightError, match="not known to compressed-tensors"):
        _check_scheme_known("W3A5")


def test_an_already_quantized_model_is_refused(gptq_artifact):
    with pytest.raises(PreflightError, match="already quantized \\(compressed-tensors\\)"):
        preflight("gptq", gptq_artifact.model_copy(update={"name": "gptq-output"}))


def test_a_cpu_worker_refuses_an_estimate_over_its_time_budget(tiny_lm, monkeypatch):
    monkeypatch.setenv("INFEROPT_CPU_PASS_TIME_BUDGET_S", "1")
    monkeypatch.setattr("optimizers.passes.llm_compressor.cuda_available", lambda: False)
    with pytest.raises(PreflightError, match="over its budget of 1 s .*INFEROPT_CPU_PASS_TIME_BUDGET_S"):
        preflight("gptq", tiny_lm, **SMALL)


def test_a_cpu_worker_refuses_an_estimate_over_its_memory(tiny_lm, monkeypatch):
    monkeypatch.setattr("optimizers.passes.llm_common.available_memory_mb", lambda: 100.0)
    monkeypatch.setattr("optimizers.passes.llm_compressor.cuda_available", lambda: False)
    with pytest.raises(PreflightError, match="only 0.1 GiB is available"):
        preflight("awq", tiny_lm, **SMALL)


def test_preflight_fits_the_tiny_lm_on_this_cpu_and_gives_the_estimate(tiny_lm):
    result = preflight("gptq", tiny_lm, **SMALL)
    assert 0 < result.estimated_seconds < 600
    assert 0 < result.estimated_memory_mb < 4096
    assert "calibration tokens" in result.notes[0]


def test_estimates_need_no_torch_and_a_gpu_is_faster(tiny_lm):
    code = (
        "import sys, json\n"
        "from optimizers.artifacts import ModelArtifact\n"
        "from optimizers.passes import get_pass\n"
        f"artifact = ModelArtifact.model_validate_json({tiny_lm.model_dump_json()!r})\n"
        "out = {}\n"
        "for name in ('gptq', 'awq', 'w8a8', 'int4_weight_only'):\n"
        "    p = get_pass(name); c = p.parse_config({})\n"
        "    cpu, gpu = p.estimate(artifact, c, on_gpu=False), p.estimate(artifact, c, on_gpu=True)\n"
        "    out[name] = [cpu.estimated_seconds, gpu.estimated_seconds, cpu.estimated_memory_mb]\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'estimates': out}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["torch"] is False
    for cpu_seconds, gpu_seconds, memory in report["estimates"].values():
        assert 0 < gpu_seconds < cpu_seconds and memory > 0


# ---------------------------------------------------------------- nothing half-written


def test_a_failure_after_writing_leaves_no_output_folder(tiny_lm, tmp_path, monkeypatch):
    def broken_reload(folder, input_ids):
        assert (Path(folder) / "config.json").is_file()  # the files were being written
        raise PassError("simulated failure while verifying")

    monkeypatch.setattr("optimizers.passes.llm_compressor._verify_reload", broken_reload)
    with pytest.raises(PassError, match="simulated"):
        run_pass("gptq", tiny_lm, tmp_path / "out", **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_the_awq_cpu_patch_is_scoped_to_the_run():
    import torch

    if torch.cuda.is_available():
        pytest.skip("the patch applies only without CUDA")
    from llmcompressor.pipelines.cache import IntermediatesCache

    from optimizers.passes.llm_compressor import _no_pinned_memory_without_cuda

    original = IntermediatesCache.pin_memory
    with _no_pinned_memory_without_cuda():
        assert IntermediatesCache.pin_memory is not original
    assert IntermediatesCache.pin_memory is original
