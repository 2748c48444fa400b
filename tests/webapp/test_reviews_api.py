"""API: POST /api/v1/jobs/<id>/reviews, GET .../reviews, GET .../audit; approval fields on the job."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.webapp.helpers import api_client_for, json_body
from webapp.reviews.models import AuditEntry, Review
from webapp.reviews.services import record, review_job

pytestmark = pytest.mark.django_db


def post_review(user, job, body):
    return api_client_for(user).post(f"/api/v1/jobs/{job.pk}/reviews", body, content_type="application/json")


def test_a_reviewer_approves(finished_job, reviewer):
    response = post_review(
        reviewer, finished_job, {"decision": "approve", "reason": "fine", "expires_at": "2999-01-01"}
    )
    assert response.status_code == 201
    body = json_body(response)
    assert body["decision"] == "approve" and body["reviewer"] == "rita" and body["reason"] == "fine"
    assert body["approval_state"] == "approved" and body["deployable"] is True
    assert body["expires_at"].startswith("2999-01-02T00:00:00")
    assert AuditEntry.objects.filter(job_id=finished_job.pk, action="approve", actor=reviewer).count() == 1


def test_the_submitter_gets_403(finished_job, owner):
    response = post_review(owner, finished_job, {"decision": "approve", "reason": "mine"})
    assert response.status_code == 403 and "four-eyes" in json_body(response)["error"]


def test_a_non_reviewer_gets_403(finished_job, teammate):
    response = post_review(teammate, finished_job, {"decision": "approve", "reason": "x"})
    assert response.status_code == 403 and "reviewers and admins" in json_body(response)["error"]


def test_an_outsider_gets_404(finished_job, outsider):
    assert post_review(outsider, finished_job, {"decision": "approve", "reason": "x"}).status_code == 404
    assert api_client_for(outsider).get(f"/api/v1/jobs/{finished_job.pk}/audit").status_code == 404
    assert api_client_for(outsider).get(f"/api/v1/jobs/{finished_job.pk}/reviews").status_code == 404


@pytest.mark.parametrize(
    "body", [{"decision": "approve"}, {"decision": "approve", "reason": ""}, {"decision": "approve", "reason": " "}]
)
def test_no_reason_is_400(finished_job, reviewer, body):
    response = post_review(reviewer, finished_job, body)
    assert response.status_code == 400 and "reason" in json_body(response)["error"]
    assert not Review.objects.exists()


def test_the_submitter_without_reason_still_gets_403(finished_job, owner):
    assert post_review(owner, finished_job, {"decision": "approve"}).status_code == 403


def test_a_failed_gate_needs_override(finished_job, reviewer):
    finished_job.gate_outcome = "fail"
    finished_job.save(update_fields=["gate_outcome"])
    response = post_review(reviewer, finished_job, {"decision": "approve", "reason": "fine"})
    assert response.status_code == 400 and "override" in json_body(response)["error"]
    response = post_review(reviewer, finished_job, {"decision": "override", "reason": "accepted: size"})
    assert response.status_code == 201 and json_body(response)["approval_state"] == "overridden"


@pytest.mark.parametrize("body", [["approve"], "approve", {"decision": 3, "reason": "x"}])
def test_malformed_bodies_are_400(finished_job, reviewer, body):
    response = post_review(reviewer, finished_job, body)
    assert response.status_code == 400 and "error" in json_body(response)


def test_reviews_are_listed_newest_first(finished_job, reviewer, team_admin, owner):
    review_job(reviewer, finished_job, "approve", "fine")
    review_job(team_admin, finished_job, "reject", "revoked")
    body = json_body(api_client_for(owner).get(f"/api/v1/jobs/{finished_job.pk}/reviews"))
    assert [(row["decision"], row["reviewer"]) for row in body] == [("reject", "adam"), ("approve", "rita")]


def test_the_audit_lists_the_jobs_entries_oldest_first(finished_job, reviewer, teammate):
    record(AuditEntry.Action.GATE_OUTCOME, job=finished_job, details={"outcome": "needs_approval"})
    review_job(reviewer, finished_job, "approve", "fine")
    body = json_body(api_client_for(teammate).get(f"/api/v1/jobs/{finished_job.pk}/audit"))
    assert [(row["action"], row["actor"], row["reason"]) for row in body] == [
        ("gate_outcome", None, ""), ("approve", "rita", "fine"),
    ]  # fmt: skip
    assert set(body[0]) == {"id", "created_at", "action", "actor", "job", "reason", "details"}
    assert body[0]["job"] == finished_job.pk and body[0]["details"] == {"outcome": "needs_approval"}


def test_the_job_shows_its_approval_state_and_inspection_urls(finished_job, owner, reviewer):
    body = json_body(api_client_for(owner).get(f"/api/v1/jobs/{finished_job.pk}"))
    assert body["approval_state"] == "awaiting" and body["deployable"] is False
    assert body["artifacts"][-1]["inspect_url"] == body["artifacts"][-1]["url"] + "?purpose=inspect"
    review_job(reviewer, finished_job, "approve", "fine")
    body = json_body(api_client_for(owner).get(f"/api/v1/jobs/{finished_job.pk}"))
    assert body["approval_state"] == "approved" and body["deployable"] is True


@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_gets_401(finished_job, method):
    response = getattr(Client(), method)(f"/api/v1/jobs/{finished_job.pk}/reviews")
    assert response.status_code == 401
    assert Client().get(f"/api/v1/jobs/{finished_job.pk}/audit").status_code == 401


def test_the_schema_documents_the_review_endpoints(owner):
    schema = api_client_for(owner).get("/api/v1/schema/?format=json").json()
    assert "post" in schema["paths"]["/api/v1/jobs/{id}/reviews"]
    assert "get" in schema["paths"]["/api/v1/jobs/{id}/audit"]
