"""Review rules (webapp.reviews.services): roles, four-eyes, reasons, fail overrides, expiry, states."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from webapp.accounts.models import Membership
from webapp.reviews.models import AuditEntry, Review
from webapp.reviews.services import ReviewError, approval_state, deployable, review_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def failed_gate_job(finished_job):
    finished_job.gate_outcome = "fail"
    finished_job.save(update_fields=["gate_outcome"])
    return finished_job


def refused(user, job, decision="approve", reason="looks fine", expires_at=None) -> ReviewError:
    with pytest.raises(ReviewError) as caught:
        review_job(user, job, decision, reason, expires_at)
    assert not Review.objects.filter(job=job).exists()
    assert not AuditEntry.objects.filter(job_id=job.pk, action__in=["approve", "reject", "override"]).exists()
    return caught.value


def test_a_gated_job_awaits_review_and_is_not_deployable(finished_job):
    assert approval_state(finished_job) == "awaiting"
    assert not deployable(finished_job)


@pytest.mark.parametrize("outcome", ["pass", ""])
def test_a_passed_or_ungated_job_needs_no_approval(finished_job, reviewer, outcome):
    finished_job.gate_outcome = outcome
    finished_job.save(update_fields=["gate_outcome"])
    assert approval_state(finished_job) == "not_required" and deployable(finished_job)
    assert refused(reviewer, finished_job).kind == "invalid"


def test_a_job_that_did_not_succeed_cannot_be_reviewed(team, make_job, owner, reviewer):
    job = make_job(team, owner, status="running", gate_outcome="")
    assert approval_state(job) == "not_required"
    assert "running" in refused(reviewer, job).message


def test_a_reviewer_approves_with_a_reason_and_the_decision_is_audited(finished_job, reviewer):
    review = review_job(reviewer, finished_job, "approve", "  cosine loss of 0.007 is fine for search  ")
    assert (review.reviewer, review.reviewer_name, review.reason) == (
        reviewer,
        "rita",
        "cosine loss of 0.007 is fine for search",
    )
    assert review.gate_outcome == "needs_approval" and review.expires_at is None
    assert approval_state(finished_job) == "approved" and deployable(finished_job)
    entry = AuditEntry.objects.get(job_id=finished_job.pk, action="approve")
    assert (entry.actor, entry.reason, entry.details["review"]) == (reviewer, review.reason, review.pk)


def test_an_admin_may_review_too(finished_job, team_admin):
    review_job(team_admin, finished_job, "reject", "the recall drop matters for us")
    assert approval_state(finished_job) == "rejected" and not deployable(finished_job)
    assert AuditEntry.objects.filter(job_id=finished_job.pk, action="reject", actor=team_admin).count() == 1


def test_four_eyes_the_submitter_cannot_review_their_own_job_even_as_reviewer(finished_job, owner):
    Membership.objects.filter(user=owner).update(role=Membership.Role.REVIEWER)
    error = refused(owner, finished_job)
    assert error.kind == "forbidden" and error.status_code == 403 and "four-eyes" in error.message
    assert refused(owner, finished_job, "reject", "no").kind == "forbidden"


def test_a_plain_member_cannot_review(finished_job, teammate):
    error = refused(teammate, finished_job)
    assert error.kind == "forbidden" and "role is member" in error.message


def test_an_outsider_cannot_review(finished_job, outsider):
    assert refused(outsider, finished_job).kind == "forbidden"


def test_a_reviewer_of_another_team_cannot_review(finished_job, other_team, django_user_model):
    stranger = django_user_model.objects.create_user("vic")
    Membership.objects.create(user=stranger, team=other_team, role=Membership.Role.REVIEWER)
    assert refused(stranger, finished_job).kind == "forbidden"


@pytest.mark.parametrize("reason", ["", "   \n ", None])
def test_a_written_reason_is_required(finished_job, reviewer, reason):
    error = refused(reviewer, finished_job, reason=reason)
    assert error.kind == "invalid" and error.status_code == 400 and "reason" in error.message


def test_permission_is_checked_before_the_reason(finished_job, owner):
    assert refused(owner, finished_job, reason="").kind == "forbidden"


def test_an_unknown_decision_is_invalid(finished_job, reviewer):
    assert refused(reviewer, finished_job, decision="maybe").kind == "invalid"


def test_a_failed_gate_cannot_simply_be_approved(failed_gate_job, reviewer):
    error = refused(reviewer, failed_gate_job, "approve")
    assert error.kind == "invalid" and "override" in error.message


def test_a_failed_gate_can_be_accepted_despite_failure_with_a_reason(failed_gate_job, reviewer):
    refused(reviewer, failed_gate_job, "override", reason="")
    review_job(reviewer, failed_gate_job, "override", "size matters more here; recall re-checked by hand")
    assert approval_state(failed_gate_job) == "overridden" and deployable(failed_gate_job)
    entry = AuditEntry.objects.get(job_id=failed_gate_job.pk, action="override")
    assert entry.details["gate_outcome"] == "fail" and entry.reason.startswith("size matters")


def test_override_is_only_for_a_failed_gate(finished_job, reviewer):
    assert refused(reviewer, finished_job, "override").kind == "invalid"


def test_the_newest_review_decides(finished_job, reviewer, team_admin):
    review_job(reviewer, finished_job, "approve", "fine")
    review_job(team_admin, finished_job, "reject", "revoked: the dataset was wrong")
    assert approval_state(finished_job) == "rejected"
    review_job(reviewer, finished_job, "approve", "re-checked")
    assert approval_state(finished_job) == "approved"
    assert list(AuditEntry.objects.filter(job_id=finished_job.pk).values_list("action", flat=True)) == [
        "approve", "reject", "approve",
    ]  # fmt: skip


def test_an_approval_can_expire(finished_job, reviewer):
    review = review_job(reviewer, finished_job, "approve", "for the pilot only", timezone.now() + dt.timedelta(hours=1))
    assert approval_state(finished_job) == "approved"
    entry = AuditEntry.objects.get(job_id=finished_job.pk, action="approve")
    assert entry.details["expires_at"] == review.expires_at.isoformat()
    later = review.expires_at + dt.timedelta(seconds=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(timezone, "now", lambda: later)
        assert approval_state(finished_job) == "approved_expired"
        assert not deployable(finished_job)


def test_an_expiry_date_is_valid_through_that_day_utc(finished_job, reviewer):
    tomorrow = (timezone.now() + dt.timedelta(days=1)).date()
    review = review_job(reviewer, finished_job, "approve", "ok", tomorrow.isoformat())
    assert review.expires_at == dt.datetime.combine(tomorrow + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)


@pytest.mark.parametrize("expires_at", ["2001-01-01", "2001-01-01T00:00:00Z", "not a date", 12])
def test_an_expiry_in_the_past_or_unreadable_is_invalid(finished_job, reviewer, expires_at):
    assert refused(reviewer, finished_job, expires_at=expires_at).kind == "invalid"


def test_a_rejection_cannot_expire(finished_job, reviewer):
    assert refused(reviewer, finished_job, "reject", expires_at="2999-01-01").kind == "invalid"


def test_api_token_role_creates_or_updates_the_membership_role(reviewer):
    call_command("api_token", "rita", "--team", "acme", "--role", "member", stdout=io.StringIO())
    assert Membership.objects.get(user=reviewer).role == "member"
    call_command("api_token", "rita", "--team", "acme", "--role", "admin", stdout=io.StringIO())
    assert Membership.objects.get(user=reviewer).role == "admin"
