"""onnx_export of a causal LM (KV cache as graph inputs/outputs) and the ONNX Runtime causal runtime."""

from __future__ import annotations

import numpy as np
import pytest

from optimizers.errors import PreflightError
from optimizers.evaluation.causal_lm import GENERATION_PROMPTS, CausalLMEvaluator
from optimizers.passes import get_pass
from optimizers.pipeline import run_recipe
from optimizers.recipe import Recipe
from optimizers.runtimes.causal import greedy_generate, load_causal_runtime
from tests.optimizers.conftest import run_pass

IDS = [1, 450, 275, 912, 33, 1800, 7, 300, 12, 640]


@pytest.fixture(scope="module")
def tiny_lm_onnx(tiny_lm, tmp_path_factory):
    return run_pass("onnx_export", tiny_lm, tmp_path_factory.mktemp("onnx-lm") / "onnx")


@pytest.fixture(scope="module")
def runtimes(tiny_lm, tiny_lm_onnx):
    return load_causal_runtime(tiny_lm), load_causal_runtime(tiny_lm_onnx)


def test_the_export_keeps_the_cache_tokenizer_and_config_and_loads_in_onnx_runtime(tiny_lm_onnx, runtimes):
    import onnx

    assert (tiny_lm_onnx.format, tiny_lm_onnx.task) == ("onnx", "causal-lm")
    assert tiny_lm_onnx.metadata["kv_cache"] is True and tiny_lm_onnx.metadata["verified_max_abs_diff"] < 1e-3
    assert (tiny_lm_onnx.folder / "config.json").is_file()
    assert (tiny_lm_onnx.folder / "tokenizer_config.json").is_file()
    graph = onnx.load(str(tiny_lm_onnx.onnx_file), load_external_data=False).graph
    layers = tiny_lm_onnx.metadata["cache_layers"]
    assert [item.name for item in graph.input] == ["input_ids"] + [
        f"past_key_values.{i}.{kind}" for i in range(layers) for kind in ("key", "value")
    ]
    assert [item.name for item in graph.output] == ["logits"] + [
        f"present.{i}.{kind}" for i in range(layers) for kind in ("key", "value")
    ]
    dims = [dim.dim_param or dim.dim_value for dim in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "sequence"]
    _, ort_runtime = runtimes
    assert ort_runtime.name == "onnxruntime-cpu" and ort_runtime.threads()["kv_cache"] is True
    assert (ort_runtime.vocab_size, ort_runtime.max_context) == (2048, 640)


def test_onnx_logits_match_pytorch_and_the_cache_matches_full_recomputation(runtimes):
    torch_runtime, ort_runtime = runtimes
    expected = torch_runtime.logits(IDS)
    full = ort_runtime.logits(IDS)
    assert full.shape == expected.shape == (len(IDS), 2048) and full.dtype == np.float32
    assert np.max(np.abs(full - expected)) < 1e-3
    # Prefill 6 tokens, then 4 single-token steps against the cache: the same logits as one full pass.
    rows = [ort_runtime.prefill(IDS[:6])] + [ort_runtime.step(token) for token in IDS[6:]]
    assert np.max(np.abs(np.stack(rows) - full[5:])) < 1e-4
    # A second prefill starts a fresh sequence (no stale cache).
    assert np.max(np.abs(ort_runtime.prefill(IDS[:3]) - full[2])) < 1e-4


def test_greedy_generation_is_identical_to_pytorch(runtimes):
    torch_runtime, ort_runtime = runtimes
    for prompt in (IDS[:4], IDS):
        assert greedy_generate(ort_runtime, prompt, 12, eos_id=None) == greedy_generate(
            torch_runtime, prompt, 12, eos_id=None
        )


def test_the_evaluator_scores_the_onnx_model_like_pytorch(tiny_lm, tiny_lm_onnx):
    evaluator = CausalLMEvaluator(None, max_samples=4)
    baseline = evaluator.evaluate(tiny_lm)
    generations = dict(evaluator.last_generations)
    metrics = evaluator.evaluate(tiny_lm_onnx)
    assert metrics["eval_tokens"] == baseline["eval_tokens"]
    assert metrics["perplexity"] == pytest.approx(baseline["perplexity"], rel=1e-4)
    assert metrics["kl_divergence"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["top1_agreement"] == pytest.approx(1.0, abs=1e-3)
    assert list(evaluator.last_generations) == list(GENERATION_PROMPTS)
    assert evaluator.last_generations == generations


def test_a_torchscript_export_of_a_causal_lm_is_refused_before_running(tiny_lm):
    technique = get_pass("onnx_export")
    with pytest.raises(PreflightError, match="dynamo"):
        technique.preflight(tiny_lm, technique.parse_config({"exporter": "torchscript"}))


def test_a_recipe_exports_and_benchmarks_the_onnx_variant_with_generation_stats(tmp_path):
    recipe = Recipe.parse(
        {
            "model": "zoo:tiny-lm",
            "steps": ["onnx_export"],
            "benchmark": {"batch_sizes": [1], "threads": 1},
            "evaluation": {"max_samples": 2},
        }
    )
    report = run_recipe(recipe, tmp_path / "run", quick=True)
    assert [(v.name, v.format) for v in report.variants] == [("baseline", "hf"), ("onnx_export", "onnx")]
    baseline, exported = report.variants
    assert exported.benchmark_info.runtime == "onnxruntime-cpu" and exported.benchmark_info.isolated_process
    assert exported.benchmark_info.threads["kv_cache"] is True
    generation = exported.generation
    assert generation is not None and generation.rounds >= 3
    assert generation.prompt_tokens == baseline.generation.prompt_tokens
    assert generation.new_tokens == baseline.generation.new_tokens
    assert generation.decode_tokens_per_s > 0 and generation.prefill_tokens_per_s > 0
    assert exported.benchmark["1"].p50_ms > 0
    assert exported.metrics["perplexity"] == pytest.approx(baseline.metrics["perplexity"], rel=1e-4)
    assert exported.generations == baseline.generations
