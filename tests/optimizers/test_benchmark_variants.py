"""Runtime variants of the baseline (``benchmark.variants``): parsing, skip rules, and real CPU rows on MiniLM.

The pure parts (names, which variant runs where and why not) are checked on their own; then a
real recipe run on MiniLM times eager vs SDPA attention and ``torch.compile`` on this CPU, and
reports FP16 as skipped because there is no CUDA GPU here.
"""

from __future__ import annotations

import pytest

from optimizers.benchmark.variants import (
    Machine,
    RuntimeVariant,
    parse_variant,
    parse_variants,
    plan,
    skip_reason,
    speedup_reference,
    wants_gpu,
)
from optimizers.errors import RecipeError
from optimizers.recipe import BenchmarkSettings, Recipe

H100 = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "compute_capability": [9, 0], "memory_mb": 81_559}
T4 = {"index": 0, "name": "Tesla T4", "compute_capability": [7, 5], "memory_mb": 15_360}
CPU_BOX = Machine(cxx_compiler=True)
GPU_BOX = Machine(gpus=(H100,), triton=True, cxx_compiler=True)


def test_variant_names_are_tokens_joined_by_plus():
    assert parse_variant("fp16") == RuntimeVariant(name="fp16", precision="fp16")
    assert parse_variant("sdpa") == RuntimeVariant(name="sdpa", attention="sdpa")
    assert parse_variant("FP32+SDPA").name == "sdpa"  # fp32 is implied
    assert parse_variant("fp32").name == "fp32"
    assert parse_variant("torch_compile+bf16") == RuntimeVariant(
        name="bf16+torch_compile", precision="bf16", compile=True
    )
    flash = parse_variant("flash_attention")
    assert (flash.name, flash.precision, flash.attn_implementation) == (
        "fp16+flash_attention",
        "fp16",
        "flash_attention_2",
    )
    assert parse_variant("fp16+sdpa+torch_compile").describe() == "FP16, SDPA attention, torch.compile"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("int8", "unknown benchmark variant token 'int8'"),
        ("fp16+bf16", "two precisions"),
        ("sdpa+eager_attention", "two attention implementations"),
        ("fp32+flash_attention", "flash attention runs in fp16 or bf16 only"),
        ("", "non-empty"),
    ],
)
def test_bad_variant_names_are_refused_with_the_reason(text, message):
    with pytest.raises(RecipeError, match=message):
        parse_variant(text)


def test_two_spellings_of_one_variant_are_refused():
    with pytest.raises(RecipeError, match="'sdpa' and 'fp32\\+sdpa' are the same variant"):
        parse_variants(["sdpa", "fp32+sdpa"])


def test_recipe_validates_and_normalises_benchmark_variants():
    recipe = Recipe.parse({"model": "zoo:minilm", "benchmark": {"variants": ["FP16", "flash_attention", "sdpa"]}})
    assert recipe.benchmark.variants == ["fp16", "fp16+flash_attention", "sdpa"]
    with pytest.raises(RecipeError, match="unknown benchmark variant token 'fp8'"):
        Recipe.parse({"model": "zoo:minilm", "benchmark": {"variants": ["fp8"]}})
    assert BenchmarkSettings().variants == []


def test_half_precision_and_flash_want_a_gpu_the_rest_do_not():
    assert wants_gpu(["sdpa", "bf16"]) and wants_gpu(["flash_attention"])
    assert not wants_gpu(["eager_attention", "sdpa", "torch_compile"]) and not wants_gpu([])


def test_skip_reasons_on_a_cpu_worker():
    def reason(name, machine=CPU_BOX, **kwargs):
        options = {"task": "feature-extraction", "artifact_format": "hf", **kwargs}
        return skip_reason(parse_variant(name), machine, **options)

    assert reason("fp16") == "FP16 is timed on a CUDA GPU only; this worker has none"
    assert reason("flash_attention") == "flash attention is timed on a CUDA GPU only; this worker has none"
    assert reason("sdpa") is None and reason("eager_attention") is None and reason("torch_compile") is None
    assert reason("torch_compile", Machine()) == (
        "torch.compile on a CPU needs a C++ compiler (g++ or clang++), and this worker has none"
    )
    assert reason("sdpa", artifact_format="onnx").startswith("runtime variants re-time a Hugging Face FP32 baseline")
    assert reason("sdpa", quantized=True).startswith("runtime variants re-time a Hugging Face FP32 baseline")
    assert reason("sdpa", task="causal-lm") == (
        "runtime variants are measured for feature-extraction models only, not causal-lm"
    )


def test_skip_reasons_on_gpu_workers():
    def reason(name, machine):
        return skip_reason(parse_variant(name), machine, task="feature-extraction", artifact_format="hf")

    assert reason("fp16", GPU_BOX) is None and reason("bf16+torch_compile", GPU_BOX) is None
    assert reason("flash_attention", GPU_BOX) == "flash-attn is not installed on this worker (pip install flash-attn)"
    with_flash = Machine(gpus=(H100,), flash_attn=True, triton=True)
    assert reason("flash_attention", with_flash) is None
    old = Machine(gpus=(T4,), flash_attn=True, triton=True)
    assert reason("flash_attention", old) == "flash attention 2 needs compute capability ≥ 8.0; this GPU has 7.5"
    assert reason("fp16+torch_compile", Machine(gpus=(H100,))) == (
        "torch.compile on a GPU needs Triton, which is not installed on this worker"
    )


def test_a_gpu_plan_starts_with_an_fp32_reference_on_the_same_gpu():
    rows = plan(["fp16", "sdpa"], GPU_BOX, task="feature-extraction", artifact_format="hf")
    assert [(variant.name, reason) for variant, reason in rows] == [("fp32", None), ("fp16", None), ("sdpa", None)]
    assert speedup_reference(rows[1][0], "cuda") == "fp32" and speedup_reference(rows[0][0], "cuda") == "baseline"
    on_cpu = plan(["fp16", "sdpa"], CPU_BOX, task="feature-extraction", artifact_format="hf")
    assert [variant.name for variant, _ in on_cpu] == ["fp16", "sdpa"]  # no GPU reference row on a CPU
    assert speedup_reference(on_cpu[1][0], "cpu") == "baseline"


@pytest.mark.slow
def test_recipe_run_times_attention_and_compile_variants_on_this_cpu(tmp_path):
    from optimizers.pipeline import run_recipe
    from optimizers.report import Report

    recipe = Recipe.parse(
        {
            "model": "zoo:minilm",
            "evaluation": {"max_samples": 8, "batch_size": 8},
            "profile": False,
            "benchmark": {
                "batch_sizes": [2],
                "seq_len": 32,
                "variants": ["eager_attention", "sdpa", "torch_compile", "fp16"],
            },
        }
    )
    logs: list[str] = []
    report = run_recipe(recipe, tmp_path / "out", quick=True, on_log=logs.append)
    rows = {row.name: row for row in report.runtime_variants}
    assert list(rows) == ["eager_attention", "sdpa", "torch_compile", "fp16"]
    for name in ("eager_attention", "sdpa", "torch_compile"):
        row = rows[name]
        assert row.status == "measured", row.reason
        assert row.device.startswith("cpu: ") and row.benchmark_info.device == row.device
        assert row.reference == "baseline" and row.of_variant == report.variants[0].name
        stats = row.benchmark["2"]
        assert stats.batch_size == 2 and stats.seq_len == 32 and stats.iterations >= 5 and stats.p50_ms > 0
        assert row.cosine_to_fp32 > 0.9999  # same weights, same precision: only the kernels differ
    assert rows["eager_attention"].benchmark_info.threads["attention"] == "eager"
    assert rows["sdpa"].benchmark_info.threads["attention"] == "sdpa"
    assert rows["torch_compile"].benchmark_info.runtime == "pytorch-compile"
    assert rows["torch_compile"].first_call_s > 0
    assert rows["fp16"].status == "skipped"
    assert rows["fp16"].reason == "FP16 is timed on a CUDA GPU only; this worker has none"
    assert not rows["fp16"].benchmark
    # Pass variants are untouched: the baseline is still the only variant, and the JSON round-trips.
    assert [variant.name for variant in report.variants] == [report.variants[0].name]
    again = Report.model_validate_json((tmp_path / "out" / "report.json").read_text())
    assert [row.name for row in again.runtime_variants] == list(rows)
    assert any("benchmark variant fp16: skipped" in line for line in logs)
