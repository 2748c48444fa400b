"""The worker registry in the web app: live workers, capability routing, the form and the Workers page.

Worker rows are written the way workers write them (``WorkerNode.objects.record`` with a real
``probe()`` of this machine); a GPU worker is this machine's probe plus an H100 and TensorRT.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.webapp.helpers import api_client_for, client_for, json_body, submit_recipe
from webapp.fleet.models import WorkerNode
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db

TRT_RECIPE = {"model": "zoo:minilm", "steps": [{"pass": "onnx_export"}, {"pass": "tensorrt_build"}]}
CPU_RECIPE = {"model": "zoo:minilm", "steps": [{"pass": "onnx_export"}, {"pass": "ort_quantize_dynamic"}]}


def test_live_means_a_recent_heartbeat_and_no_stop(cpu_worker, settings):
    settings.INFEROPT_WORKER_LIVE_TIMEOUT_S = 60
    assert list(WorkerNode.objects.live()) == [cpu_worker] and cpu_worker.state == "live"
    WorkerNode.objects.filter(pk=cpu_worker.pk).update(last_seen=timezone.now() - timedelta(seconds=61))
    assert not WorkerNode.objects.live().exists()
    assert WorkerNode.objects.get().state == "stale"
    WorkerNode.objects.filter(pk=cpu_worker.pk).update(last_seen=timezone.now(), stopped_at=timezone.now())
    assert not WorkerNode.objects.live().exists() and WorkerNode.objects.get().state == "stopped"


def test_a_heartbeat_revives_a_stopped_worker(cpu_worker, cpu_probe):
    WorkerNode.objects.filter(pk=cpu_worker.pk).update(stopped_at=timezone.now())
    WorkerNode.objects.record("celery@cpu-1", ["cpu"], cpu_probe, started=False)
    assert WorkerNode.objects.live().count() == 1


def test_api_refuses_a_gpu_only_pass_no_live_worker_can_run(owner, demo_model, cpu_worker):
    response = submit_recipe(owner, TRT_RECIPE)
    assert response.status_code == 400
    assert json_body(response)["error"] == (
        "tensorrt_build cannot run on any live worker (celery@cpu-1: needs a CUDA GPU; this worker has none)"
    )
    assert not Job.objects.exists()


def test_api_routes_cpu_work_to_cpu_on_a_cpu_fleet(owner, demo_model, cpu_worker):
    response = submit_recipe(owner, CPU_RECIPE)
    assert response.status_code == 201, response.content
    assert Job.objects.get().queue == "cpu"


def test_engine_build_goes_to_the_gpu_architecture_queue(owner, demo_model, cpu_worker, gpu_worker):
    response = submit_recipe(owner, TRT_RECIPE)
    assert response.status_code == 201, response.content
    assert Job.objects.get().queue == "gpu.sm90"


def test_a_stale_gpu_worker_does_not_count(owner, demo_model, cpu_worker, gpu_worker):
    WorkerNode.objects.filter(pk=gpu_worker.pk).update(last_seen=timezone.now() - timedelta(hours=1))
    assert submit_recipe(owner, TRT_RECIPE).status_code == 400


def test_without_live_workers_cpu_jobs_use_the_static_queue_and_gpu_passes_are_refused(owner, demo_model, settings):
    settings.INFEROPT_GPU_QUEUE_ENABLED = False
    response = submit_recipe(owner, CPU_RECIPE)
    assert response.status_code == 201 and Job.objects.get().queue == "cpu"
    response = submit_recipe(owner, TRT_RECIPE)
    assert response.status_code == 400
    assert json_body(response)["error"].startswith(
        "tensorrt_build needs a CUDA GPU, and no live worker has reported one"
    )


def test_without_live_workers_a_declared_gpu_queue_takes_gpu_passes(owner, demo_model, settings):
    settings.INFEROPT_GPU_QUEUE_ENABLED = True
    response = submit_recipe(owner, TRT_RECIPE)
    assert response.status_code == 201, response.content
    assert Job.objects.get().queue == "gpu"


def test_preflight_names_the_refused_pass_too(owner, demo_model, cpu_worker):
    response = api_client_for(owner).post(
        "/api/v1/preflight", data=json.dumps(TRT_RECIPE), content_type="application/json"
    )
    assert response.status_code == 400
    assert "tensorrt_build cannot run on any live worker" in json_body(response)["error"]


def test_new_job_form_disables_techniques_no_live_worker_can_run(owner, demo_model, cpu_worker):
    page = client_for(owner).get("/jobs/new/").content.decode()
    fieldset = page[page.index('id="pass-tensorrt_build"') :]
    fieldset = fieldset[: fieldset.index("</fieldset>")]
    assert (
        'name="p__tensorrt_build__enabled"' in fieldset
        and "disabled" in fieldset.split("p__tensorrt_build__enabled")[1][:80]
    )
    assert "Not available: tensorrt_build cannot run on any live worker (celery@cpu-1: needs a CUDA GPU" in fieldset
    onnx = page[page.index('id="pass-onnx_export"') :]
    onnx = onnx[: onnx.index("</fieldset>")]
    assert "Not available" not in onnx and " disabled" not in onnx.split("p__onnx_export__enabled")[1][:80]


def test_posting_a_disabled_technique_through_the_form_does_not_submit_it(owner, team, demo_model, cpu_worker):
    data = {
        "team": team.pk,
        "model": demo_model.pk,
        "batch_sizes": "1",
        "seq_len": 16,
        "p__onnx_export__enabled": "on",
        "p__onnx_export__order": 10,
        "p__tensorrt_build__enabled": "on",
        "p__tensorrt_build__order": 20,
    }
    client_for(owner).post("/jobs/new/", data)
    job = Job.objects.get()
    assert [step["pass"] for step in job.recipe["steps"]] == ["onnx_export"]


def test_form_enables_tensorrt_once_a_gpu_worker_is_live(owner, demo_model, cpu_worker, gpu_worker):
    page = client_for(owner).get("/jobs/new/").content.decode()
    assert 'id="unavailable-tensorrt_build"' not in page


def test_workers_page_lists_workers_and_what_they_can_run(owner, cpu_worker, gpu_worker):
    response = client_for(owner).get("/workers/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "celery@cpu-1" in page and "celery@h100-1" in page
    assert "NVIDIA H100 80GB HBM3" in page and "sm 9.0" in page and "<code>gpu.sm90</code>" in page
    assert "Jobs are routed by capability: 2 live workers" in page
    row = page[page.index('id="technique-tensorrt_build"') :]
    assert "celery@h100-1" in row[: row.index("</tr>")]


def test_workers_page_needs_a_login(client):
    response = client.get("/workers/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_nav_links_the_workers_page(owner):
    assert 'href="/workers/"' in client_for(owner).get("/jobs/").content.decode()
