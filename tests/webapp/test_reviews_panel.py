"""The job page's approval panel and its form (POST /jobs/<id>/review/), per persona."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.webapp.helpers import client_for
from webapp.reviews.models import AuditEntry, Review
from webapp.reviews.services import record, review_job

pytestmark = pytest.mark.django_db


def page_of(user, job) -> str:
    response = client_for(user).get(reverse("jobs:detail", args=[job.pk]))
    assert response.status_code == 200
    return response.content.decode()


def post_review(user, job, client=None, **data):
    return (client or client_for(user)).post(reverse("reviews:review", args=[job.pk]), data)


def test_reviewer_sees_the_panel_with_approve_and_reject(finished_job, reviewer):
    page = page_of(reviewer, finished_job)
    assert 'id="approval"' in page and 'id="approval-state">Awaiting review<' in page
    assert 'id="review-form"' in page
    assert 'value="approve"' in page and 'value="reject"' in page and 'value="override"' not in page
    assert '<textarea id="review-reason" name="reason" rows="3" required' in page


def test_a_failed_gate_offers_accept_despite_failure_not_approve(finished_job, reviewer):
    finished_job.gate_outcome = "fail"
    finished_job.save(update_fields=["gate_outcome"])
    page = page_of(reviewer, finished_job)
    assert 'value="override"' in page and "Accept despite failure" in page and 'value="approve"' not in page


def test_the_submitter_sees_the_panel_but_no_form(finished_job, owner):
    page = page_of(owner, finished_job)
    assert 'id="approval"' in page and 'id="review-form"' not in page
    assert "four-eyes" in page


def test_a_teammate_without_the_reviewer_role_sees_why_not(finished_job, teammate):
    page = page_of(teammate, finished_job)
    assert 'id="review-form"' not in page and "your role is member" in page


def test_no_panel_when_the_gate_passed(finished_job, reviewer):
    finished_job.gate_outcome = "pass"
    finished_job.save(update_fields=["gate_outcome"])
    page = page_of(reviewer, finished_job)
    assert 'id="approval"' not in page and "inspect-download" not in page


def test_artifact_links_are_for_inspection_until_approved(finished_job, reviewer, owner):
    inspect_url = reverse("jobs:artifact_download", args=[finished_job.pk, finished_job.artifacts.first().pk])
    page = page_of(owner, finished_job)
    assert f'href="{inspect_url}?purpose=inspect"' in page
    assert page.count("download for inspection — not approved for deployment") == 2
    review_job(reviewer, finished_job, "approve", "fine")
    page = page_of(owner, finished_job)
    assert f'href="{inspect_url}"' in page and "not approved for deployment" not in page
    assert 'id="approval-state">Approved<' in page and "rita" in page and "fine" in page


def test_reviewer_approves_through_the_form(finished_job, reviewer):
    client = client_for(reviewer)
    response = post_review(
        reviewer, finished_job, client, decision="approve", reason="ok for search", expires_on="2999-12-31"
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("jobs:detail", args=[finished_job.pk]) + "#approval"
    review = Review.objects.get(job=finished_job)
    assert (review.decision, review.reason, review.expires_at.date().isoformat()) == (
        "approve", "ok for search", "3000-01-01",
    )  # fmt: skip
    page = client.get(response["Location"]).content.decode()
    assert f"Job #{finished_job.pk} approved." in page


def test_the_submitter_posting_a_review_gets_403(finished_job, owner):
    response = post_review(owner, finished_job, decision="approve", reason="mine is fine")
    assert response.status_code == 403 and "four-eyes" in response.content.decode()
    assert not Review.objects.exists()


def test_a_member_posting_a_review_gets_403(finished_job, teammate):
    assert post_review(teammate, finished_job, decision="approve", reason="x").status_code == 403
    assert not Review.objects.exists()


def test_an_outsider_posting_a_review_gets_404(finished_job, outsider):
    assert post_review(outsider, finished_job, decision="approve", reason="x").status_code == 404
    assert not Review.objects.exists()


def test_anonymous_review_goes_to_login(client, finished_job):
    response = client.post(reverse("reviews:review", args=[finished_job.pk]), {"decision": "approve", "reason": "x"})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_a_review_without_reason_is_not_recorded_and_says_why(finished_job, reviewer):
    client = client_for(reviewer)
    response = post_review(reviewer, finished_job, client, decision="approve", reason="  ")
    assert response.status_code == 302 and not Review.objects.exists()
    page = client.get(response["Location"]).content.decode()
    assert "Review not recorded: a written reason is required." in page


def test_the_review_endpoint_is_post_only(finished_job, reviewer):
    assert client_for(reviewer).get(reverse("reviews:review", args=[finished_job.pk])).status_code == 405


def test_the_job_page_lists_the_jobs_audit_entries(finished_job, reviewer, owner):
    record(AuditEntry.Action.GATE_OUTCOME, job=finished_job, details={"outcome": "needs_approval"})
    review_job(reviewer, finished_job, "reject", "recall drop too large")
    page = page_of(owner, finished_job)
    assert 'id="audit"' in page
    assert 'class="audit-gate_outcome"' in page and "outcome: needs_approval" in page
    assert 'class="audit-reject"' in page and "recall drop too large" in page
