"""A job's benchmark runtime variants on a CUDA GPU: FP16, SDPA and torch.compile rows (``make gpu-check``).

The model is a random BERT encoder in MiniLM-L6's shape with a small local tokenizer
(``benchmarks/gpu_check.write_random_encoder``), so the GPU machine needs no download or zoo
build; it goes through ``run_recipe`` like an uploaded Hugging Face folder would.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

ROOT = Path(__file__).resolve().parents[2]


def test_job_benchmark_times_fp16_sdpa_and_compile_variants_on_the_gpu(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_check import write_random_encoder

    from optimizers.pipeline import run_recipe
    from optimizers.recipe import Recipe

    folder = write_random_encoder(tmp_path / "encoder")
    variants = ["fp16", "sdpa", "fp16+torch_compile", "flash_attention"]
    recipe = Recipe.parse(
        {
            "model": str(folder),
            "evaluation": {"max_samples": 8, "batch_size": 8},
            "profile": False,
            "benchmark": {"batch_sizes": [8], "seq_len": 128, "variants": variants},
        }
    )
    report = run_recipe(recipe, tmp_path / "out", quick=True)
    rows = {row.name: row for row in report.runtime_variants}
    assert list(rows) == ["fp32", "fp16", "sdpa", "fp16+torch_compile", "fp16+flash_attention"]
    gpu = torch.cuda.get_device_name()
    for name in ("fp32", "fp16", "sdpa", "fp16+torch_compile"):
        row = rows[name]
        assert row.status == "measured", f"{name}: {row.reason}"
        assert row.device.startswith(f"cuda: {gpu}"), row.device
        assert row.benchmark["8"].p50_ms > 0 and row.benchmark["8"].iterations >= 5
    assert rows["fp32"].reference == "baseline"
    assert all(rows[name].reference == "fp32" for name in ("fp16", "sdpa", "fp16+torch_compile"))
    assert rows["fp16"].benchmark_info.threads["dtype"] == "float16"
    assert rows["fp16+torch_compile"].benchmark_info.runtime == "pytorch-compile"
    # FP16 on random weights stays close to FP32; FP32 SDPA on the GPU matches the CPU closely.
    assert rows["fp16"].cosine_to_fp32 > 0.99 and rows["sdpa"].cosine_to_fp32 > 0.9999
    flash = rows["fp16+flash_attention"]
    try:
        import flash_attn  # noqa: F401

        assert flash.status == "measured", flash.reason
    except ImportError:
        assert flash.status == "skipped" and flash.reason.startswith("flash-attn is not installed")
    for name, row in rows.items():
        stats = row.benchmark.get("8")
        print(f"{name}: {row.status} {row.device} p50 {stats.p50_ms:.3f} ms" if stats else f"{name}: {row.reason}")
