"""Causal-LM evaluation, runtimes, generation benchmark and default gates."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from optimizers.errors import RecipeError
from optimizers.evaluation.causal_lm import (
    GENERATION_PROMPTS,
    CausalLMEvaluator,
    TokenScores,
    compare_window,
    lm_metrics,
    log_softmax,
    sliding_windows,
)
from optimizers.gates import default_rules, evaluate_gate
from optimizers.llama_cpp_tools import find_converter
from optimizers.report import VariantReport

needs_converter = pytest.mark.skipif(find_converter() is None, reason="run scripts/llama_cpp_tools.sh first")


def test_sliding_windows_score_every_token_exactly_once():
    stream = list(range(1000))
    windows = sliding_windows(stream, window=256, stride=128)
    scored = [target for window in windows for target in window.targets.tolist()]
    assert scored == stream[1 : len(scored) + 1]  # in order, no gaps, no repeats
    assert all(len(window.ids) == 256 for window in windows)
    assert all(window.first_scored == 127 for window in windows[1:])  # ≥ 128 tokens of context
    assert len(sliding_windows(stream, window=256, stride=128, max_windows=3)) == 3


def test_metrics_of_identical_distributions_and_of_a_different_one():
    rng = np.random.default_rng(0)
    base = log_softmax(rng.normal(size=(50, 16)).astype(np.float32))
    targets = rng.integers(0, 16, size=50)
    same = compare_window(base, base, targets)
    other = compare_window(log_softmax(rng.normal(size=(50, 16)).astype(np.float32)), base, targets)
    metrics = lm_metrics(TokenScores(*same, window_of=np.repeat(np.arange(5), 10)))
    assert metrics["kl_divergence"] == pytest.approx(0.0, abs=1e-6) and metrics["top1_agreement"] == 1.0
    assert metrics["perplexity_ci_low"] <= metrics["perplexity"] <= metrics["perplexity_ci_high"]
    assert metrics["perplexity"] == pytest.approx(math.exp(np.mean(same[0])))
    assert metrics["eval_samples"] == 5 and metrics["eval_tokens"] == 50
    worse = lm_metrics(TokenScores(*other, window_of=np.repeat(np.arange(5), 10)))
    assert worse["kl_divergence"] > 0.1 and worse["kl_divergence_p99"] >= worse["kl_divergence"]
    assert worse["top1_agreement"] < 1.0


@pytest.fixture(scope="module")
def evaluator_and_baseline(tiny_lm):
    evaluator = CausalLMEvaluator(None, max_samples=8)
    return evaluator, evaluator.evaluate(tiny_lm), dict(evaluator.last_generations)


def test_baseline_perplexity_is_finite_and_it_agrees_with_itself(evaluator_and_baseline):
    evaluator, metrics, generations = evaluator_and_baseline
    assert 1.0 < metrics["perplexity"] < 200.0  # trained: far below the vocabulary size (2048)
    assert metrics["kl_divergence"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["top1_agreement"] == 1.0
    assert metrics["eval_samples"] == 8 and metrics["eval_tokens"] >= 8 * 128
    assert "zoo:tiny-lm-eval" in evaluator.describe()
    assert list(generations) == list(GENERATION_PROMPTS)
    assert all(isinstance(text, str) and text.strip() for text in generations.values())


def test_the_same_model_evaluated_again_gives_the_same_numbers(evaluator_and_baseline, tiny_lm):
    evaluator, metrics, generations = evaluator_and_baseline
    again = evaluator.evaluate(tiny_lm)
    assert again["perplexity"] == pytest.approx(metrics["perplexity"], rel=1e-6)
    assert evaluator.last_generations == generations


@needs_converter
def test_gguf_is_scored_through_llama_cpp_on_the_same_token_ids(evaluator_and_baseline, tiny_lm_f16):
    evaluator, baseline, generations = evaluator_and_baseline
    metrics = evaluator.evaluate(tiny_lm_f16)
    assert metrics["eval_tokens"] == baseline["eval_tokens"]
    assert metrics["perplexity"] == pytest.approx(baseline["perplexity"], rel=0.01)
    assert 0.0 < metrics["kl_divergence"] < 1e-3  # F16 rounding: tiny but real
    assert metrics["top1_agreement"] > 0.98
    same = sum(evaluator.last_generations[p] == generations[p] for p in GENERATION_PROMPTS)
    assert same >= len(GENERATION_PROMPTS) - 1


@needs_converter
def test_llama_cpp_runtime_logits_match_pytorch(tiny_lm, tiny_lm_f16):
    from optimizers.runtimes.causal import greedy_generate, load_causal_runtime

    ids = [1, 450, 275, 912, 33, 1800, 7, 300]
    torch_runtime, llama_runtime = load_causal_runtime(tiny_lm), load_causal_runtime(tiny_lm_f16, context=64)
    assert llama_runtime.name == "llama.cpp" and llama_runtime.threads()["llama_cpp_threads"] >= 1
    expected, got = torch_runtime.logits(ids), llama_runtime.logits(ids)
    assert got.shape == expected.shape == (len(ids), 2048)
    assert np.max(np.abs(got - expected)) < 0.05
    # Prefill + steps (KV cache) give the same tokens as full recomputation.
    new = greedy_generate(llama_runtime, ids, 6, eos_id=None)
    assert len(new) == 6
    full = llama_runtime.logits(ids + new[:-1])
    assert [int(np.argmax(row)) for row in full[len(ids) - 1 :]] == new


def test_a_jsonl_dataset_can_replace_the_builtin_text(tiny_lm, tmp_path):
    from optimizers.zoo.tiny_lm import corpus_splits

    path = tmp_path / "texts.jsonl"
    path.write_text("\n".join(json.dumps({"text": text}) for text in corpus_splits()["eval"][:40]))
    evaluator = CausalLMEvaluator(str(path), max_samples=4)
    metrics = evaluator.evaluate(tiny_lm)
    assert metrics["eval_samples"] == 4 and math.isfinite(metrics["perplexity"])
    assert evaluator.dataset_name == "texts.jsonl"


def test_empty_or_too_short_evaluation_text_is_refused(tiny_lm, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(RecipeError, match="no rows"):
        CausalLMEvaluator(str(empty), max_samples=4)
    short = tmp_path / "short.jsonl"
    short.write_text(json.dumps({"text": "Too short."}))
    with pytest.raises(RecipeError, match="too short"):
        CausalLMEvaluator(str(short), max_samples=4).evaluate(tiny_lm)
    with pytest.raises(RecipeError, match="zoo:tiny-lm-eval"):
        CausalLMEvaluator("zoo:nope", max_samples=4)


def test_torch_dynamic_int8_keeps_the_lm_head_of_a_causal_lm(evaluator_and_baseline, tmp_path):
    from tests.optimizers.conftest import run_pass

    evaluator, baseline, _ = evaluator_and_baseline
    from optimizers.resolve import resolve_model

    quantized = run_pass("torch_quantize_dynamic", resolve_model("zoo:tiny-lm"), tmp_path / "int8")
    metrics = evaluator.evaluate(quantized)
    assert metrics["perplexity"] == pytest.approx(baseline["perplexity"], rel=0.2)
    assert metrics["top1_agreement"] > 0.8


def _report(name: str, metrics: dict[str, float]) -> VariantReport:
    return VariantReport(name=name, format="gguf", path="", sha256="", size_bytes=1, metrics=metrics)


def test_default_gate_for_causal_lms_is_1_percent_at_8_bits_and_5_percent_at_4_bits():
    baseline = _report("baseline", {"perplexity": 20.0, "kl_divergence": 0.0, "top1_agreement": 1.0})
    plus3 = _report("q", {"perplexity": 20.6, "kl_divergence": 0.01, "top1_agreement": 0.97})
    (rule8,) = default_rules("causal-lm", {"weight_bits": 8})
    (rule4,) = default_rules("causal-lm", {"weight_bits": 4})
    assert (rule8.metric, rule8.kind, rule8.threshold) == ("perplexity", "relative_drop", 0.01)
    assert rule4.threshold == 0.05 and default_rules("causal-lm")[0].threshold == 0.01
    assert evaluate_gate([rule8], baseline, plus3).outcome == "fail"
    assert evaluate_gate([rule4], baseline, plus3).outcome == "needs_approval"  # any increase needs a reviewer
    same = _report("f32", {"perplexity": 20.0, "kl_divergence": 0.0, "top1_agreement": 1.0})
    assert evaluate_gate([rule8], baseline, same).outcome == "pass"


@needs_converter
def test_generation_benchmark_measures_prefill_decode_and_latency(tiny_lm_f16):
    from optimizers.benchmark.generation import measure_generation
    from optimizers.recipe import BenchmarkSettings

    # One thread: on a busy shared machine, llama.cpp's spinning barriers make 2 threads crawl.
    settings = BenchmarkSettings(warmup=1, min_iterations=3, min_seconds=0.0, threads=1)
    stats, info, generation = measure_generation(tiny_lm_f16, settings)
    assert generation.prompt_tokens == 512 and generation.new_tokens == 128
    assert generation.rounds >= 3
    assert generation.decode_tokens_per_s > 10 and generation.prefill_tokens_per_s > generation.decode_tokens_per_s
    assert 0 < generation.itl_p50_ms <= generation.itl_p95_ms
    assert generation.ttft_ms == pytest.approx(1000 * 512 / generation.prefill_tokens_per_s, rel=0.5)
    assert stats["1"].seq_len == 512 and stats["1"].batch_size == 1
    assert info.runtime == "llama.cpp" and info.threads["llama_cpp_threads"] == 1 and info.peak_rss_mb > 0
