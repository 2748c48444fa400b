"""Artifact and report downloads: attachments after the team check, session or bearer token."""

from __future__ import annotations

import hashlib
import json

import pytest
from django.urls import reverse

from tests.webapp.helpers import api_client_for, client_for

pytestmark = pytest.mark.django_db


def body_of(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_artifact_download_is_a_zip_attachment(owner, finished_job):
    artifact = finished_job.artifacts.last()
    # finished_job awaits approval: for inspection only (gating: tests/webapp/test_reviews_downloads.py).
    url = reverse("jobs:artifact_download", args=[finished_job.pk, artifact.pk]) + "?purpose=inspect"
    response = client_for(owner).get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"].startswith("attachment;")
    assert f"job-{finished_job.pk}-ort_quantize_dynamic.zip" in response["Content-Disposition"]
    content = body_of(response)
    assert content.startswith(b"PK")
    assert hashlib.sha256(content).hexdigest() == hashlib.sha256(artifact.file.open("rb").read()).hexdigest()


def test_artifact_download_with_a_bearer_token(teammate, finished_job):
    artifact = finished_job.artifacts.first()
    url = reverse("jobs:artifact_download", args=[finished_job.pk, artifact.pk]) + "?purpose=inspect"
    response = api_client_for(teammate).get(url)
    assert response.status_code == 200
    assert body_of(response).startswith(b"PK")


def test_report_json_download(owner, finished_job):
    response = api_client_for(owner).get(reverse("jobs:report_json", args=[finished_job.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == f'attachment; filename="job-{finished_job.pk}-report.json"'
    assert json.loads(response.content) == finished_job.report


def test_report_json_is_404_before_there_is_a_report(owner, team, make_job):
    job = make_job(team)
    assert client_for(owner).get(reverse("jobs:report_json", args=[job.pk])).status_code == 404


def test_missing_artifact_file_is_404(owner, finished_job):
    artifact = finished_job.artifacts.first()
    artifact.file.delete(save=False)
    url = reverse("jobs:artifact_download", args=[finished_job.pk, artifact.pk]) + "?purpose=inspect"
    assert client_for(owner).get(url).status_code == 404
