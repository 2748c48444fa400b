"""Download gating: "deploy" needs an approval when the gate asks for one; "inspect" is labelled; all audited."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.webapp.helpers import api_client_for, client_for, json_body
from webapp.reviews.models import AuditEntry
from webapp.reviews.services import review_job

pytestmark = pytest.mark.django_db


def url_of(job, purpose: str | None = None) -> str:
    url = reverse("jobs:artifact_download", args=[job.pk, job.artifacts.last().pk])
    return f"{url}?purpose={purpose}" if purpose else url


def body_of(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def audit_of(job, action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(job_id=job.pk, action=action))


def test_deploy_download_of_a_job_awaiting_approval_is_refused_and_audited(finished_job, owner):
    response = client_for(owner).get(url_of(finished_job))
    assert response.status_code == 403
    page = response.content.decode()
    assert "not approved for deployment" in page and "awaits a reviewer" in page
    assert f'href="{url_of(finished_job, "inspect")}"' in page
    (refused,) = audit_of(finished_job, "download_refused")
    assert refused.actor == owner and refused.details["purpose"] == "deploy" and refused.details["state"] == "awaiting"
    assert audit_of(finished_job, "download") == []


def test_api_clients_get_the_refusal_as_json(finished_job, teammate):
    response = api_client_for(teammate).get(url_of(finished_job, "deploy"))
    assert response.status_code == 403 and response["Content-Type"] == "application/json"
    body = json_body(response)
    assert "not approved for deployment" in body["error"]
    assert body["state"] == "awaiting" and body["inspect_url"] == url_of(finished_job, "inspect")


def test_inspection_download_is_allowed_labelled_and_audited(finished_job, teammate):
    artifact = finished_job.artifacts.last()
    response = client_for(teammate).get(url_of(finished_job, "inspect"))
    assert response.status_code == 200 and response["X-InferOpt-Download-Purpose"] == "inspect"
    content = body_of(response)
    assert hashlib.sha256(content).hexdigest() == hashlib.sha256(artifact.file.open("rb").read()).hexdigest()
    (download,) = audit_of(finished_job, "download")
    assert download.actor == teammate
    assert download.details == {"purpose": "inspect", "artifact": artifact.pk, "name": artifact.name,
                                "sha256": artifact.sha256}  # fmt: skip


def test_after_approval_the_deploy_download_works_and_is_audited(finished_job, owner, reviewer):
    review_job(reviewer, finished_job, "approve", "fine")
    response = api_client_for(owner).get(url_of(finished_job))
    assert response.status_code == 200 and body_of(response).startswith(b"PK")
    assert response["X-InferOpt-Download-Purpose"] == "deploy"
    (download,) = audit_of(finished_job, "download")
    assert download.actor == owner and download.details["purpose"] == "deploy"


def test_an_override_unlocks_a_failed_gate(finished_job, owner, reviewer):
    finished_job.gate_outcome = "fail"
    finished_job.save(update_fields=["gate_outcome"])
    assert client_for(owner).get(url_of(finished_job)).status_code == 403
    review_job(reviewer, finished_job, "override", "accepted for the size")
    assert client_for(owner).get(url_of(finished_job)).status_code == 200


def test_a_rejected_job_stays_locked(finished_job, owner, reviewer):
    review_job(reviewer, finished_job, "reject", "no")
    response = client_for(owner).get(url_of(finished_job))
    assert response.status_code == 403 and "rejected" in response.content.decode()
    assert client_for(owner).get(url_of(finished_job, "inspect")).status_code == 200


def test_an_expired_approval_locks_again(finished_job, owner, reviewer, monkeypatch):
    review = review_job(reviewer, finished_job, "approve", "pilot", timezone.now() + dt.timedelta(minutes=5))
    assert client_for(owner).get(url_of(finished_job)).status_code == 200
    later = review.expires_at + dt.timedelta(seconds=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    response = client_for(owner).get(url_of(finished_job))
    assert response.status_code == 403 and "expired" in response.content.decode()


def test_a_job_that_passed_its_gate_downloads_for_deployment(finished_job, owner):
    finished_job.gate_outcome = "pass"
    finished_job.save(update_fields=["gate_outcome"])
    assert client_for(owner).get(url_of(finished_job)).status_code == 200
    assert audit_of(finished_job, "download")[0].details["purpose"] == "deploy"


def test_an_unknown_purpose_is_400(finished_job, owner):
    assert client_for(owner).get(url_of(finished_job, "sell")).status_code == 400
    assert api_client_for(owner).get(url_of(finished_job, "sell")).status_code == 400
    assert not AuditEntry.objects.filter(job_id=finished_job.pk).exists()


def test_outsiders_get_404_for_either_purpose_and_nothing_is_audited(finished_job, outsider):
    for purpose in (None, "deploy", "inspect"):
        assert client_for(outsider).get(url_of(finished_job, purpose)).status_code == 404
    assert not AuditEntry.objects.filter(job_id=finished_job.pk).exists()


def test_the_report_download_is_audited(finished_job, teammate):
    assert client_for(teammate).get(reverse("jobs:report_json", args=[finished_job.pk])).status_code == 200
    (download,) = audit_of(finished_job, "download")
    assert download.details == {"purpose": "report", "file": "report.json"}
