"""Results page for causal LMs: generation speed table, side-by-side generations, LLM charts."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.webapp.helpers import sample_report
from webapp.jobs.charts import generation_figure, quality_size_figure, report_figures
from webapp.jobs.results import build_results

PROMPTS = ("The for statement is used to", "A dictionary maps")


def llm_report() -> dict[str, Any]:
    """A causal-LM report.json: FP32 baseline, F16 GGUF, Q4_K_M GGUF."""
    report = copy.deepcopy(sample_report())
    report.update(model="zoo:tiny-lm", task="causal-lm")
    rows = [
        ("baseline", "hf", 46_000_000, 20.0, 0.0, 1.0, 150.0, "to iterate over the elements"),
        ("gguf_f16", "gguf", 23_000_000, 20.001, 0.0001, 0.999, 400.0, "to iterate over the elements"),
        ("gguf_q4_k_m", "gguf", 7_400_000, 20.6, 0.02, 0.95, 560.0, "to iterate over items <b>"),
    ]
    for variant, (name, fmt, size, ppl, kld, top1, decode, text) in zip(report["variants"], rows, strict=True):
        variant.update(name=name, format=fmt, size_bytes=size)
        variant["metrics"] = {
            "perplexity": ppl,
            "perplexity_ci_low": ppl * 0.95,
            "perplexity_ci_high": ppl * 1.05,
            "kl_divergence": kld,
            "top1_agreement": top1,
        }
        variant["generation"] = {
            "prompt_tokens": 512,
            "new_tokens": 128,
            "rounds": 5,
            "prefill_tokens_per_s": decode * 10,
            "decode_tokens_per_s": decode,
            "ttft_ms": 51200 / decode,
            "itl_p50_ms": 1000 / decode,
            "itl_p95_ms": 1200 / decode,
        }
        variant["benchmark_info"] = {"runtime": "llama.cpp", "device": "cpu", "peak_rss_mb": 120.0}
        variant["generations"] = {PROMPTS[0]: text, PROMPTS[1]: f"{name} keys to values"}
    return report


def test_generation_chart_shows_decode_speed_and_size_per_variant():
    figure = generation_figure(llm_report())
    bars, sizes = figure["data"]
    assert list(bars["x"]) == ["baseline", "gguf_f16", "gguf_q4_k_m"]
    assert list(bars["y"]) == [150.0, 400.0, 560.0]
    assert sizes["yaxis"] == "y2" and sizes["y"][2] == pytest.approx(7_400_000 / 1024**2)
    assert "128 new tokens" in figure["layout"]["title"]["text"]


def test_quality_vs_size_scatter_uses_perplexity_with_its_confidence_interval():
    (points,) = quality_size_figure(llm_report())["data"]
    assert list(points["text"]) == ["baseline", "gguf_f16", "gguf_q4_k_m"]
    assert list(points["y"]) == [20.0, 20.001, 20.6]
    assert points["error_y"]["array"][0] == pytest.approx(1.0)


def test_llm_charts_appear_only_for_reports_with_generation_stats():
    assert {"chart-generation", "chart-quality-size"} <= set(report_figures(llm_report()))
    assert "chart-generation" not in report_figures(sample_report())


def test_results_pair_each_prompt_with_every_variants_generation():
    results = build_results(llm_report())
    assert results.has_generation
    assert [row.prompt for row in results.generations] == list(PROMPTS)
    assert results.generations[0].outputs[2] == ("gguf_q4_k_m", "to iterate over items <b>")
    assert results.variants[2].generation.decode_tokens_per_s == 560.0
    assert not build_results(sample_report()).has_generation


@pytest.mark.django_db
def test_job_page_shows_generation_speed_and_side_by_side_generations(make_job, team, owner, client):
    job = make_job(team, submitter=owner, status="succeeded", report=llm_report(), progress=100)
    client.force_login(owner)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert 'id="generation-table"' in page and 'id="generations-table"' in page
    assert "to iterate over items &lt;b&gt;" in page  # generated text is escaped
    assert "560.0" in page
    assert 'id="chart-generation"' in page and 'id="chart-quality-size"' in page
