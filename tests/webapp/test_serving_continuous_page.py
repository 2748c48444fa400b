"""A causal-LM serving job's page: the static-vs-continuous batching section, labelled an estimate, with its inputs,
the measured points it rests on, the chart, and the vLLM outcome — rendered from a stored report."""

from __future__ import annotations

import pytest
from django.urls import reverse

from optimizers.serving.analysis import ServingReport
from optimizers.serving.continuous import (
    ContinuousBatchingOptions,
    PrefillPoint,
    StepGrid,
    StepMeasurement,
    StepPoint,
    VllmResult,
    estimate_from_measurement,
)
from tests.webapp.helpers import client_for
from webapp.jobs.models import Job
from webapp.jobs.serving_results import build_serving_results

pytestmark = pytest.mark.django_db

BATCHES, CONTEXTS, PROMPTS = [1, 2, 4], [16, 100, 160], [16, 64, 128]


def measurement() -> StepMeasurement:
    steps = [
        StepPoint(
            batch_size=b,
            context_len=c,
            step_ms=round(1.5 + 0.25 * b + 0.002 * c, 4),
            samples_ms=[1.0, 1.5 + 0.25 * b + 0.002 * c, 9.0],
        )  # fmt: skip
        for c in CONTEXTS
        for b in BATCHES
    ]
    prefills = [PrefillPoint(prompt_tokens=p, prefill_ms=0.05 * p, samples_ms=[0.05 * p] * 3) for p in PROMPTS]
    return StepMeasurement(model="tiny-lm", runtime="pytorch-eager", device="test cpu", threads=2, repeats=3,
                           warmup=1, steps=steps, prefills=prefills, seconds=1.25)  # fmt: skip


def llm_report(*, vllm: VllmResult | None = None, note: str | None = None, continuous: bool = True) -> dict:
    options = ContinuousBatchingOptions(
        max_batch=4,
        requests=40,
        rate_factors=[1.0, 4.0],
        prompt_len={"dist": "uniform", "low": 16, "high": 128},
        output_len={"dist": "fixed", "value": 33},
        vllm_benchmark=vllm is not None,
    )
    grid = StepGrid(batch_sizes=BATCHES, context_lens=CONTEXTS, prompt_lens=PROMPTS, repeats=3, warmup=1)
    estimate = estimate_from_measurement(measurement(), options, grid)
    estimate.vllm = vllm
    if note:
        estimate.notes.append(note)
    report = ServingReport(model="zoo:tiny-lm", task="causal-lm", artifact="tiny-lm", artifact_format="hf",
                           p95_budget_ms=50.0, continuous=estimate if continuous else None)  # fmt: skip
    return report.model_dump(mode="json")


def page_for(owner, team, make_job, report: dict) -> str:
    job = make_job(team, owner, status=Job.Status.SUCCEEDED, progress=100, stage="done", report=report,
                   recipe={"mode": "serving", "model": "zoo:tiny-lm"})  # fmt: skip
    response = client_for(owner).get(reverse("jobs:detail", args=[job.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_the_section_is_labelled_an_estimate_and_shows_its_inputs(owner, team, make_job):
    page = page_for(owner, team, make_job, llm_report())
    assert page.count('id="continuous-batching"') == 1
    section = page.split('id="continuous-batching"')[1]
    assert "Estimate (discrete-event simulation from measured step latencies)" in section.split("</p>")[0]
    inputs = section.split('id="continuous-inputs"')[1].split("</table>")[0]
    assert "40 per offered rate" in inputs and "seed 0" in inputs
    assert "uniform 16–128 tokens" in inputs and "fixed 33 tokens" in inputs
    assert "<th>Max batch</th><td>4 (both policies)</td>" in inputs and "20 ms" in inputs
    assert "× the batch-1 capacity" in inputs and "bilinear interpolation" in inputs


def test_the_results_table_chart_and_measured_points(owner, team, make_job):
    report = llm_report()
    page = page_for(owner, team, make_job, report)
    rows = page.split('id="continuous-table"')[1].split("<tbody>")[1].split("</tbody>")[0].split("</tr>")[:-1]
    assert len(rows) == 2 * 2 + 2  # static and continuous at two rates, then both offline
    assert ["continuous-static" in rows[0], "continuous-continuous" in rows[1]] == [True, True]
    assert "all at t = 0" in rows[-1] and "all at t = 0" not in rows[0]
    first = report["continuous"]["results"][0]
    assert f"{first['throughput_tokens_per_s']:.4g}" in rows[0] and f"{first['latency_p95_ms']:.4g}" in rows[0]
    assert 'id="chart-continuous"' in page and '<script id="chart-continuous-data" type="application/json">' in page
    assert "plotly.min.js" in page and "js/charts.js" in page
    points = page.split('id="step-points-table"')[1].split("</table>")[0]
    head, body = points.split("<tbody>")
    assert all(f"<th>{context}</th>" in head for context in CONTEXTS)
    assert body.count("<tr>") == len(BATCHES)
    for point in report["continuous"]["measurement"]["steps"]:
        assert f"{point['step_ms']:.4g}" in body
    assert "samples: 1.0, " in body  # every sample is on the page
    prefill = page.split('id="prefill-points-table"')[1].split("</table>")[0]
    assert all(f"<th>{tokens}</th>" in prefill for tokens in PROMPTS) and "6.4" in prefill  # 0.05 × 128 ms
    assert "median of 3 timed repeats" in page and "test cpu" in page


def test_a_skipped_vllm_benchmark_says_why(owner, team, make_job):
    page = page_for(owner, team, make_job, llm_report(vllm=VllmResult(status="skipped", reason="vLLM not installed")))
    skipped = page.split('id="vllm-skipped"')[1].split("</p>")[0]
    assert "vLLM benchmark skipped: vLLM not installed" in skipped and "remain an estimate" in skipped
    assert 'id="vllm-table"' not in page


def test_a_measured_vllm_run_is_shown_as_a_measurement(owner, team, make_job):
    vllm = VllmResult(status="measured", version="0.33.0", device="NVIDIA H100", requests=40, output_tokens=1320,
                      seconds=0.5, throughput_tokens_per_s=2640.0, throughput_requests_per_s=80.0,
                      ttft_p50_ms=12.5, ttft_p95_ms=20.0)  # fmt: skip
    report = llm_report(vllm=vllm)
    page = page_for(owner, team, make_job, report)
    table = page.split('id="vllm-table"')[1].split("</table>")[0]
    assert "2640 tokens/s" in table and "80 requests/s" in table and "12.5 / 20 ms" in table
    assert "Measured with vLLM" in page and "NVIDIA H100" in page
    figure = build_serving_results(report).continuous.figure
    assert figure["data"][-1]["name"].startswith("vLLM measured") and figure["data"][-1]["x"] == [2640.0]


def test_no_continuous_section_without_an_estimate_and_notes_are_escaped(owner, team, make_job):
    page = page_for(owner, team, make_job, llm_report(continuous=False))
    assert 'id="continuous-batching"' not in page and "plotly.min.js" not in page
    page = page_for(owner, team, make_job, llm_report(note="<script>alert(1)</script> clamped"))
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; clamped" in page
