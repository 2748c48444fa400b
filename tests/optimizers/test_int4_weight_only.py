"""int4_weight_only (torchao) on the tiny causal LM: run, reload as torchao int4, quality; bad input."""

from __future__ import annotations

import json

import pytest
import torch

from optimizers.errors import PreflightError, RecipeError
from optimizers.passes import get_pass
from optimizers.recipe import Recipe
from tests.optimizers.conftest import run_pass
from tests.optimizers.llm_support import QualityJudge, tiny_causal_lm

PERPLEXITY_BOUND = 1.5
#: The CPU configuration (IntxWeightOnlyConfig, FP32); tests/gpu covers the CUDA one.
cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="CPU path; tests/gpu checks the CUDA layout")


@pytest.fixture(scope="module")
def tiny_lm():
    return tiny_causal_lm()


@pytest.fixture(scope="module")
def quality(tiny_lm):
    return QualityJudge(tiny_lm)


@pytest.fixture(scope="module")
def int4(tiny_lm, tmp_path_factory):
    return run_pass("int4_weight_only", tiny_lm, tmp_path_factory.mktemp("int4") / "out")


@cpu_only
@pytest.mark.slow
def test_int4_artifact_reloads_with_int4_torchao_weights_and_full_precision_lm_head(int4):
    from transformers import AutoModelForCausalLM

    config = json.loads((int4.folder / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "torchao"
    model = AutoModelForCausalLM.from_pretrained(int4.folder, local_files_only=True)
    down = model.model.layers[0].mlp.down_proj.weight
    assert type(down).__module__.startswith("torchao")
    expected = "IntxUnpackedToInt8Tensor" if not torch.cuda.is_available() else "Int4TilePackedTo4dTensor"
    assert type(down).__name__ == expected
    assert type(model.lm_head.weight) is torch.nn.Parameter and model.lm_head.weight.dtype == torch.float32
    assert not list(int4.folder.glob("*.bin")), "safetensors only, no pickle"
    meta = int4.metadata
    assert meta["precision"] == "int4-weight" and meta["group_size"] == 32 and meta["ignore"] == ["lm_head"]
    assert meta["quantized_layers"] > 0 and meta["requires_cuda"] is torch.cuda.is_available()


@cpu_only
@pytest.mark.slow
def test_int4_keeps_perplexity_close_and_finite(int4, quality):
    metrics = quality(int4)
    assert 0 < metrics["kl_divergence"]
    assert metrics["perplexity"] < quality.baseline["perplexity"] * PERPLEXITY_BOUND


@cpu_only
@pytest.mark.slow
def test_int4_is_further_from_the_baseline_than_8_bit_weights(tiny_lm, int4, quality, tmp_path):
    eight = run_pass("gptq", tiny_lm, tmp_path / "w8", scheme="W8A16", num_calibration_samples=8, max_seq_length=64)
    assert quality(eight)["kl_divergence"] < quality(int4)["kl_divergence"]


def test_int4_refuses_a_model_that_is_not_a_causal_lm(minilm):
    technique = get_pass("int4_weight_only")
    with pytest.raises(PreflightError, match="quantizes causal language models"):
        technique.preflight(minilm, technique.parse_config({}))


def test_int4_group_size_outside_the_supported_list_is_a_recipe_error():
    with pytest.raises(RecipeError, match="group_size"):
        Recipe.parse(
            {"model": "zoo:minilm", "steps": [{"pass": "int4_weight_only", "group_size": 48}]}, input_format="hf"
        )


def test_int4_refuses_a_group_size_that_does_not_divide_the_layers(tiny_lm, monkeypatch):
    monkeypatch.setattr(
        "optimizers.passes.llm_common.linear_layers", lambda folder: {"model.layers.0.mlp.down_proj": (96, 256)}
    )
    technique = get_pass("int4_weight_only")
    with pytest.raises(PreflightError, match="group_size 64 does not divide .*down_proj \\(96\\)"):
        technique.preflight(tiny_lm, technique.parse_config({"group_size": 64}))
