"""``inferopt.run_job`` on a real Celery worker, a real Redis server and the test database."""

from __future__ import annotations

import hashlib
import json
import time
import zipfile

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.core.cache import cache

from webapp.deployment import redis_cache
from webapp.jobs import charts, figure_cache
from webapp.jobs.models import Artifact, Job
from workers.tasks import JobRecorder, fail_orphaned_jobs, run_job

#: Smallest real recipe: MiniLM exported to ONNX, short benchmark and evaluation.
ONNX_EXPORT = {
    "model": "zoo:minilm",
    "steps": [{"pass": "onnx_export"}],
    "benchmark": {"batch_sizes": [1], "seq_len": 32},
    "evaluation": {"max_samples": 16},
}
#: Two steps, so there is a step boundary at which a cancel request is honoured.
EXPORT_THEN_QUANTIZE = {**ONNX_EXPORT, "steps": [{"pass": "onnx_export"}, {"pass": "ort_quantize_dynamic"}]}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_job_goes_from_queued_to_succeeded_with_artifacts_and_report(
    make_job, enqueue, wait_for_final, worker_media, celery_worker, redis_server, settings
):
    job = make_job(ONNX_EXPORT)
    assert job.status == Job.Status.QUEUED

    enqueue(job)
    job = wait_for_final(job.pk)

    assert job.status == Job.Status.SUCCEEDED, f"{job.error}\n{job.traceback}"
    assert job.progress == 100
    assert job.attempts == 1
    assert job.worker.startswith("test-")
    assert job.started_at is not None and job.finished_at >= job.started_at
    assert job.optimization_seconds > 0
    assert job.error == "" and job.traceback == ""
    assert job.log.strip(), "the job's log should show what ran"

    report = job.report
    variant_names = [variant["name"] for variant in report["variants"]]
    assert len(variant_names) == 2, variant_names
    assert report["variants"][1]["format"] == "onnx"
    assert job.gate_outcome == (report["gate"]["outcome"] if report.get("gate") else "")

    (artifact,) = job.artifacts.all()
    assert artifact.name == variant_names[1]
    assert artifact.format == "onnx"
    assert artifact.order == 1 and artifact.is_final
    assert artifact.file.name == f"jobs/{job.pk}/1-{artifact.name}.zip"
    with artifact.file.open("rb") as handle:
        content = handle.read()
    assert hashlib.sha256(content).hexdigest() == artifact.sha256
    assert len(content) == artifact.size_bytes
    with zipfile.ZipFile(artifact.file.path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert "model.onnx" in archive.namelist()
    assert manifest["job"] == job.pk
    assert manifest["variant"] == artifact.name
    assert manifest["sha256_content"] == report["variants"][1]["sha256"]
    assert manifest["recipe"] == ONNX_EXPORT
    assert "onnxruntime" in manifest["library_versions"]

    assert not (celery_worker.data_dir / "work" / str(job.pk)).exists(), "the work dir must be removed"

    # The worker built the job page's figures into the shared cache (as the stored report hashes).
    settings.CACHES = redis_cache(redis_server.cache_url)
    assert cache.get(figure_cache.cache_key(job.report)) == charts.report_figures(job.report)


@pytest.mark.django_db(transaction=True)
def test_job_with_a_missing_model_folder_fails_with_its_error_visible(make_job, enqueue, wait_for_final):
    job = make_job({**ONNX_EXPORT, "model": "/nonexistent/inferopt-model"})

    enqueue(job)
    job = wait_for_final(job.pk, timeout=120)

    assert job.status == Job.Status.FAILED
    assert "/nonexistent/inferopt-model" in job.error
    assert "\n" not in job.error
    assert job.traceback.strip()
    assert job.finished_at is not None
    assert not job.artifacts.exists()


@pytest.mark.django_db(transaction=True)
def test_job_with_an_unknown_pass_fails_with_the_recipe_error(make_job, enqueue, wait_for_final):
    job = make_job({**ONNX_EXPORT, "steps": [{"pass": "no_such_pass"}]})

    enqueue(job)
    job = wait_for_final(job.pk, timeout=120)

    assert job.status == Job.Status.FAILED
    assert "no_such_pass" in job.error
    # A RecipeError is shown as it is, without an exception class name in front.
    assert not job.error.startswith("RecipeError")


@pytest.mark.django_db(transaction=True)
def test_job_over_its_soft_time_limit_fails_with_the_limit_in_its_error(make_job, enqueue, wait_for_final):
    job = make_job(ONNX_EXPORT)

    enqueue(job, soft_time_limit=2, time_limit=60)
    job = wait_for_final(job.pk, timeout=120)

    assert job.status == Job.Status.FAILED
    assert job.error == "exceeded the time limit of 2 s"
    assert "SoftTimeLimitExceeded" in job.traceback
    assert not job.artifacts.exists()


@pytest.mark.django_db(transaction=True)
def test_a_redelivered_message_does_not_run_the_job_again(make_job, enqueue, wait_for_final, wait_for_worker_log):
    job = make_job({**ONNX_EXPORT, "steps": [{"pass": "no_such_pass"}]})

    enqueue(job)
    enqueue(job)  # the same job delivered twice, as after a lost acknowledgement
    job = wait_for_final(job.pk, timeout=120)
    wait_for_worker_log(f"job {job.pk} is not queued any more")

    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert job.attempts == 1


@pytest.mark.django_db(transaction=True)
def test_run_job_returns_without_running_when_the_job_is_already_claimed(make_job):
    job = make_job(ONNX_EXPORT, status=Job.Status.RUNNING, worker="someone-else", attempts=1)

    outcome = run_job.apply(args=(job.pk,)).get()

    assert outcome == "skipped"
    job.refresh_from_db()
    assert (job.status, job.worker, job.attempts) == (Job.Status.RUNNING, "someone-else", 1)


@pytest.mark.django_db(transaction=True)
def test_run_job_for_a_deleted_job_does_nothing(make_job):
    job = make_job(ONNX_EXPORT)
    job_id = job.pk
    job.delete()

    assert run_job.apply(args=(job_id,)).get() == "missing"
    assert not Job.objects.filter(pk=job_id).exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_cancel_request_stops_the_job_at_the_next_step_boundary(make_job, enqueue, wait_for_final, celery_worker):
    job = make_job(EXPORT_THEN_QUANTIZE)

    enqueue(job)
    deadline = time.monotonic() + 120
    while "onnx_export" not in Job.objects.get(pk=job.pk).stage:  # step 1 has started
        assert time.monotonic() < deadline, celery_worker.log_tail()
        time.sleep(0.05)
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)
    job = wait_for_final(job.pk)

    assert job.status == Job.Status.CANCELLED, f"{job.status}: {job.error}"
    assert "onnx_export" in job.log
    assert "ort_quantize_dynamic" not in job.log, "step 2 must not start"
    assert job.finished_at is not None
    assert not Artifact.objects.filter(job=job).exists()
    assert not (celery_worker.data_dir / "work" / str(job.pk)).exists()


def test_the_cancel_check_past_the_soft_time_limit_raises_so_a_swallowed_signal_is_not_lost():
    recorder = JobRecorder(job_id=1, deadline=time.monotonic() - 1)

    with pytest.raises(SoftTimeLimitExceeded):
        recorder.should_cancel()


@pytest.mark.django_db
def test_a_restarted_worker_fails_the_jobs_its_previous_life_left_running(make_job):
    orphan = make_job(ONNX_EXPORT, status=Job.Status.RUNNING, worker="celery@host-a")
    elsewhere = make_job(ONNX_EXPORT, status=Job.Status.RUNNING, worker="celery@host-b")
    assert fail_orphaned_jobs("celery@host-a") == 1
    orphan.refresh_from_db()
    elsewhere.refresh_from_db()
    assert orphan.status == Job.Status.FAILED and "stopped" in orphan.error and orphan.finished_at
    assert elsewhere.status == Job.Status.RUNNING
