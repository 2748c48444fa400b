"""GPU work in the web app beyond pass routing: benchmark runtime variants (form, routing, results table),
the Search tab's disabled techniques, and ``/api/v1/passes`` saying whether a live worker can run each pass.

Worker rows are written the way workers write them (``WorkerNode.objects.record`` with a real
``probe()`` of this machine); the GPU worker is this machine's probe plus an H100.
"""

from __future__ import annotations

import pytest

from tests.webapp.helpers import api_client_for, client_for, json_body, submit_recipe
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db

REFUSAL = "tensorrt_build cannot run on any live worker (celery@cpu-1: needs a CUDA GPU; this worker has none)"


def variants_recipe(*variants: str) -> dict:
    return {"model": "zoo:minilm", "steps": [{"pass": "onnx_export"}], "benchmark": {"variants": list(variants)}}


# --- routing -------------------------------------------------------------------------------------


def test_half_precision_variants_prefer_a_live_gpu_worker(owner, demo_model, cpu_worker, gpu_worker):
    response = submit_recipe(owner, variants_recipe("fp16", "sdpa"))
    assert response.status_code == 201, response.content
    job = Job.objects.get()
    assert job.queue == "gpu" and job.recipe["benchmark"]["variants"] == ["fp16", "sdpa"]


def test_cpu_variants_stay_on_the_cpu_queue(owner, demo_model, cpu_worker, gpu_worker):
    assert submit_recipe(owner, variants_recipe("eager_attention", "sdpa", "torch_compile")).status_code == 201
    assert Job.objects.get().queue == "cpu"


def test_a_cpu_only_fleet_still_takes_half_precision_variants(owner, demo_model, cpu_worker):
    # Preferred, not required: the CPU worker runs the job and reports FP16 as skipped, with the reason.
    assert submit_recipe(owner, variants_recipe("bf16")).status_code == 201
    assert Job.objects.get().queue == "cpu"


def test_without_live_workers_a_declared_gpu_queue_takes_half_precision_variants(owner, demo_model, settings):
    settings.INFEROPT_GPU_QUEUE_ENABLED = True
    assert submit_recipe(owner, variants_recipe("fp16")).status_code == 201
    assert Job.objects.get().queue == "gpu"
    settings.INFEROPT_GPU_QUEUE_ENABLED = False
    assert submit_recipe(owner, variants_recipe("fp16")).status_code == 201
    assert Job.objects.order_by("-pk").first().queue == "cpu"


def test_an_unknown_variant_is_a_clear_400(owner, demo_model, cpu_worker):
    response = submit_recipe(owner, variants_recipe("int8"))
    assert response.status_code == 400
    assert "unknown benchmark variant token 'int8'" in json_body(response)["error"]
    assert not Job.objects.exists()


# --- new-job form ------------------------------------------------------------------------------


def test_new_job_form_offers_runtime_variants_and_puts_them_in_the_recipe(owner, team, demo_model, cpu_worker):
    page = client_for(owner).get("/jobs/new/").content.decode()
    assert 'name="benchmark_variants" value="fp16"' in page and 'value="torch_compile"' in page
    data = {
        "team": team.pk,
        "model": demo_model.pk,
        "batch_sizes": "1",
        "seq_len": 16,
        "benchmark_variants": ["sdpa", "fp16+torch_compile"],
    }
    client_for(owner).post("/jobs/new/", data)
    assert Job.objects.get().recipe["benchmark"]["variants"] == ["sdpa", "fp16+torch_compile"]


# --- results page ------------------------------------------------------------------------------


def _stats(batch: int, p50: float) -> dict:
    return {
        "batch_size": batch, "seq_len": 128, "iterations": 10, "seconds": 1.0, "p50_ms": p50, "p90_ms": p50,
        "p95_ms": p50 * 1.1, "p99_ms": p50, "mean_ms": p50, "stdev_ms": 0.0, "throughput_per_s": batch * 1000 / p50,
        "stable": True, "window_spread": 0.0, "preprocess_p50_ms": 0.1, "postprocess_p50_ms": 0.1,
    }  # fmt: skip


def _info(device: str, runtime: str = "pytorch-eager") -> dict:
    return {"runtime": runtime, "device": device, "threads": {}, "isolated_process": True}


GPU_NAME = "cuda: NVIDIA H100 80GB HBM3 (compute capability 9.0)"
REPORT = {
    "model": "zoo:minilm",
    "task": "feature-extraction",
    "variants": [
        {
            "name": "baseline",
            "format": "hf",
            "path": "/x",
            "sha256": "a" * 64,
            "size_bytes": 1,
            "benchmark": {"8": _stats(8, 40.0)},
            "benchmark_info": _info("cpu: Test CPU (2 logical cores)"),
        },
    ],  # fmt: skip
    "runtime_variants": [
        {
            "name": "fp32",
            "status": "measured",
            "reference": "baseline",
            "device": GPU_NAME,
            "benchmark": {"8": _stats(8, 4.0)},
            "benchmark_info": _info(GPU_NAME),
            "cosine_to_fp32": 1.0,
        },
        {
            "name": "fp16",
            "description": "FP16, default attention",
            "status": "measured",
            "reference": "fp32",
            "device": GPU_NAME,
            "benchmark": {"8": _stats(8, 1.0)},
            "benchmark_info": _info(GPU_NAME),
            "cosine_to_fp32": 0.99991,
        },
        {
            "name": "fp16+torch_compile",
            "status": "measured",
            "reference": "fp32",
            "device": GPU_NAME,
            "benchmark": {"8": _stats(8, 0.5)},
            "benchmark_info": _info(GPU_NAME, "pytorch-compile"),
            "first_call_s": 31.5,
        },
        {
            "name": "fp16+flash_attention",
            "status": "skipped",
            "reason": "flash-attn is not installed on this worker (pip install flash-attn)",
        },
    ],  # fmt: skip
}


def test_results_page_lists_runtime_variants_with_device_and_same_device_speedups(owner, team, make_job):
    from webapp.jobs.results import build_results

    rows = {row.name: row for row in build_results(REPORT).runtime_variants}
    assert rows["fp32"].speedups == [(8, 10.0)]  # vs the baseline's CPU row, as its reference says
    assert rows["fp16"].speedups == [(8, 4.0)] and rows["fp16+torch_compile"].speedups == [(8, 8.0)]
    assert rows["fp16+flash_attention"].speedups == [] and rows["fp16+torch_compile"].runtime == "pytorch-compile"

    job = make_job(team, owner, status=Job.Status.SUCCEEDED, report=REPORT)
    page = client_for(owner).get(f"/jobs/{job.pk}/").content.decode()
    table = page[page.index('id="runtime-variants-table"') :]
    table = table[: table.index("</table>")]
    assert table.count("<tr") == 5 and GPU_NAME in table
    fp16 = table[table.index("<strong>fp16</strong>") : table.index("<strong>fp16+torch_compile</strong>")]
    assert "batch 8: 4.00×" in fp16 and "<td>fp32</td>" in fp16 and "cosine to FP32 0.99991" in fp16
    assert "first call 31.5 s" in table
    assert "flash-attn is not installed on this worker (pip install flash-attn)" in table


def test_reports_without_runtime_variants_show_no_such_table(owner, team, make_job):
    report = {key: value for key, value in REPORT.items() if key != "runtime_variants"}
    job = make_job(team, owner, status=Job.Status.SUCCEEDED, report=report)
    assert 'id="runtime-variants-table"' not in client_for(owner).get(f"/jobs/{job.pk}/").content.decode()


# --- Search tab --------------------------------------------------------------------------------


def test_search_tab_disables_techniques_no_live_worker_can_run(owner, demo_model, cpu_worker):
    page = client_for(owner).get("/jobs/new/search/").content.decode()
    item = page[page.index('id="search-technique-tensorrt_build"') :]
    item = item[: item.index("</li>")]
    assert 'class="technique disabled"' in page[page.index('id="search-technique-tensorrt_build"') - 40 :][:80]
    assert 'aria-disabled="true"' in item and f"Not available: {REFUSAL}" in item
    onnx = page[page.index('id="search-technique-onnx_export"') :]
    assert "Not available" not in onnx[: onnx.index("</li>")]


def test_search_naming_an_unavailable_technique_is_refused_in_the_form(owner, team, demo_model, cpu_worker):
    data = {
        "search-team": team.pk,
        "search-model": demo_model.pk,
        "search-axes": "- [none, {pass: onnx_export}]\n- [none, [{pass: onnx_export}, {pass: tensorrt_build}]]\n",
        "search-budget_s": 60,
        "search-batch_sizes": "1",
        "search-seq_len": 16,
    }
    response = client_for(owner).post("/jobs/new/search/", data)
    assert response.status_code == 400
    assert f"tensorrt_build is not available: {REFUSAL}" in response.content.decode()
    assert not Job.objects.exists()


def test_search_tab_enables_every_technique_a_live_worker_can_run(owner, demo_model, cpu_worker, gpu_worker):
    page = client_for(owner).get("/jobs/new/search/").content.decode()
    assert 'id="search-unavailable-tensorrt_build"' not in page


# --- /api/v1/passes ----------------------------------------------------------------------------


def test_passes_api_says_which_passes_a_live_worker_can_run_and_why_not(owner, cpu_worker):
    body = {info["name"]: info for info in json_body(api_client_for(owner).get("/api/v1/passes"))}
    assert body["tensorrt_build"]["available"] is False
    assert body["tensorrt_build"]["unavailable_reason"] == REFUSAL
    assert body["onnx_export"]["available"] is True and body["onnx_export"]["unavailable_reason"] == ""


def test_passes_api_follows_the_fleet(owner, cpu_worker, gpu_worker):
    body = {info["name"]: info for info in json_body(api_client_for(owner).get("/api/v1/passes"))}
    assert body["tensorrt_build"]["available"] is True and body["tensorrt_build"]["unavailable_reason"] == ""


def test_passes_api_without_live_workers_uses_the_static_rule(owner, settings):
    settings.INFEROPT_GPU_QUEUE_ENABLED = False
    body = {info["name"]: info for info in json_body(api_client_for(owner).get("/api/v1/passes"))}
    assert body["tensorrt_build"]["available"] is False
    assert body["tensorrt_build"]["unavailable_reason"].startswith(
        "tensorrt_build needs a CUDA GPU, and no live worker has reported one"
    )
    assert body["onnx_export"]["available"] is True
