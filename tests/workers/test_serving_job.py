"""End to end: a ``mode: serving`` job through the API and a real Celery worker.

``zoo:digits-cnn`` exported to ONNX, a tiny dynamic batching sweep (2 settings × 1 rate × 5 requests):
the job succeeds with a serving report, its page shows the serving section and the chart, and the
Triton model repository zip downloads with a ``config.pbtxt`` inside. Structure only: no timing thresholds.
"""

from __future__ import annotations

import json
import zipfile
from io import BytesIO

import pytest
from django.test import Client

from optimizers.serving.analysis import ServingReport
from tests.webapp.helpers import api_client_for
from tests.workers.conftest import page_for
from webapp.accounts.models import Membership, Team
from webapp.jobs.models import Job

SPEC = {
    "mode": "serving",
    "name": "digits: serving analysis",
    "model": "zoo:digits-cnn",
    "steps": [{"pass": "onnx_export"}],
    "p95_budget_ms": 50,
    "batching": {
        "max_batch_sizes": [1, 2],
        "max_queue_delays_ms": [0],
        "rates_per_s": [20],
        "requests_per_cell": 5,
        "max_cell_seconds": 5,
        "threads": 1,
    },
    "triton": {"model_name": "digits"},
}


@pytest.fixture(scope="module")
def built_digits_cnn():
    """Build (or reuse) the demo CNN here, so the job's time goes to the analysis."""
    from optimizers.resolve import resolve_model

    return resolve_model("zoo:digits-cnn")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_serving_job_reports_a_sweep_and_a_downloadable_triton_repository(
    built_digits_cnn, api_broker, celery_worker, worker_media, wait_for_final, django_user_model
):
    team = Team.objects.create(name="serving-team")
    owner = django_user_model.objects.create_user("sam", password="pw-sam")
    Membership.objects.create(user=owner, team=team, role=Membership.Role.MEMBER)

    response = api_client_for(owner).post("/api/v1/jobs", data=json.dumps(SPEC), content_type="application/json")
    assert response.status_code == 201, response.content
    job = wait_for_final(response.json()["id"], timeout=600)
    assert job.status == Job.Status.SUCCEEDED, f"{job.error}\n{job.traceback}"
    assert job.gate_outcome == "" and job.progress == 100

    assert job.report["kind"] == "serving"
    report = ServingReport.model_validate(job.report)
    assert report.artifact_format == "onnx" and report.p95_budget_ms == 50
    assert len(report.sweep.cells) == 2  # 2 batch sizes × 1 delay × 1 rate
    assert "dynamic_batching" in report.triton_config and report.triton_zip is None  # no worker-local path

    page = page_for(owner, job)
    assert 'id="serving-results"' in page and 'id="chart-serving"' in page
    assert ('id="recommendation-table"' in page) != ('id="no-recommendation"' in page)
    assert 'id="triton-config"' in page and 'id="model-cards"' not in page

    (artifact,) = job.artifacts.all()
    assert artifact.format == "triton" and artifact.is_final
    client = Client()
    client.force_login(owner)
    download = client.get(f"/jobs/{job.pk}/artifacts/{artifact.pk}/download")
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"
    with zipfile.ZipFile(BytesIO(b"".join(download.streaming_content))) as archive:
        names = set(archive.namelist())
        assert {"digits/config.pbtxt", "digits/1/model.onnx"} <= names
        assert archive.read("digits/config.pbtxt").decode() == report.triton_config
