"""Approval rules, the audit log and reviewer notifications: the one place that decides them.

- ``record(action, team=..., job=..., actor=..., reason=..., details=...)`` appends an audit entry.
- ``review_job(user, job, decision, reason, expires_at=None)`` applies the rules and records the
  decision; it raises ``ReviewError`` (``kind`` ``forbidden`` → HTTP 403, ``invalid`` → HTTP 400).
- ``approval_state(job)`` / ``deployable(job)`` say whether a job's artifacts may be deployed.
- ``record_gate_outcome(job_id)`` is called by the worker when a job succeeded; it records the
  outcome and, after the transaction commits, notifies the team's reviewers when the job
  awaits review (``notify_reviewers``: e-mail through Django's mail backend plus the team's
  optional webhook; failures are logged, never raised).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.urls import reverse
from django.utils import timezone

from webapp.accounts.models import Membership
from webapp.jobs.models import Job
from webapp.reviews.models import AuditEntry, Review

logger = logging.getLogger(__name__)

Action = AuditEntry.Action
Decision = Review.Decision

#: Gate outcomes that need a reviewer's decision before artifacts may be deployed.
GATED_OUTCOMES = (Job.GateOutcome.NEEDS_APPROVAL, Job.GateOutcome.FAIL)
REVIEWER_ROLES = (Membership.Role.REVIEWER, Membership.Role.ADMIN)
REASON_MAX_CHARS = 5_000


class State:
    """What ``approval_state`` returns."""

    NOT_REQUIRED = "not_required"  # gate passed, or no gate
    AWAITING = "awaiting"  # gated, no review yet
    APPROVED = "approved"
    APPROVED_EXPIRED = "approved_expired"  # the newest approval (or override) has expired
    REJECTED = "rejected"
    OVERRIDDEN = "overridden"  # a failed gate accepted despite failure

    LABELS = {
        NOT_REQUIRED: "No approval needed",
        AWAITING: "Awaiting review",
        APPROVED: "Approved",
        APPROVED_EXPIRED: "Approval expired",
        REJECTED: "Rejected",
        OVERRIDDEN: "Accepted despite failure",
    }


DEPLOYABLE_STATES = (State.NOT_REQUIRED, State.APPROVED, State.OVERRIDDEN)
#: States the review queue lists: nobody decided yet, or the approval ran out.
QUEUE_STATES = (State.AWAITING, State.APPROVED_EXPIRED)


class ReviewError(Exception):
    """A review that the rules refuse. ``kind``: ``forbidden`` (HTTP 403) or ``invalid`` (HTTP 400)."""

    FORBIDDEN = "forbidden"
    INVALID = "invalid"

    def __init__(self, message: str, kind: str = INVALID) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind

    @property
    def status_code(self) -> int:
        return 403 if self.kind == self.FORBIDDEN else 400


# --- audit log -------------------------------------------------------------------------------

#: The user behind the current request (set by ``AuditActorMiddleware``), for audit entries
#: written where no user is passed in (deletions through the admin or cascades).
_current_actor: contextvars.ContextVar[Any] = contextvars.ContextVar("inferopt_audit_actor", default=None)


@contextmanager
def acting_as(user) -> Iterator[None]:
    """Attribute audit entries written without an explicit actor to ``user`` inside the block."""
    token = _current_actor.set(user)
    try:
        yield
    finally:
        _current_actor.reset(token)


def current_actor():
    user = _current_actor.get()
    return user if getattr(user, "is_authenticated", False) else None


def record(
    action: str,
    *,
    team=None,
    job: Job | None = None,
    actor=None,
    reason: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one audit entry. ``team`` defaults to the job's team; ``actor`` None is the system."""
    if team is None and job is None:
        raise ValueError("an audit entry needs a team or a job")
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    return AuditEntry.objects.create(
        team_id=team.pk if team is not None else job.team_id,
        job_id=job.pk if job is not None else None,
        actor=actor,
        actor_name=actor.get_username() if actor is not None else "",
        action=action,
        reason=reason,
        details=details or {},
    )


def job_audit(job: Job) -> QuerySet[AuditEntry]:
    """The job's audit entries, oldest first."""
    return AuditEntry.objects.filter(job_id=job.pk).order_by("created_at", "id")


def team_audit(teams, *, action: str = "", username: str = "", job_id: int | None = None) -> QuerySet[AuditEntry]:
    """Audit entries of ``teams`` (a queryset or list), newest first, filtered as given."""
    entries = AuditEntry.objects.filter(team__in=teams).order_by("-created_at", "-id")
    if action:
        entries = entries.filter(action=action)
    if username:
        entries = entries.filter(actor_name=username)
    if job_id is not None:
        entries = entries.filter(job_id=job_id)
    return entries


# --- approval state ----------------------------------------------------------------------------


def latest_review(job: Job) -> Review | None:
    return job.reviews.order_by("-created_at", "-id").first()


def needs_review(job: Job) -> bool:
    """Does this job's gate outcome call for a reviewer's decision?"""
    return job.status == Job.Status.SUCCEEDED and job.gate_outcome in GATED_OUTCOMES


def approval_state(job: Job, review: Review | None = None) -> str:
    """``not_required``, ``awaiting``, ``approved``, ``approved_expired``, ``rejected`` or ``overridden``.

    Jobs that did not succeed have nothing to deploy and need no approval
    (``not_required``); otherwise the newest review (``review`` if given) decides.
    """
    if not needs_review(job):
        return State.NOT_REQUIRED
    if review is None:
        review = latest_review(job)
    if review is None:
        return State.AWAITING
    if review.decision == Decision.REJECT:
        return State.REJECTED
    if review.is_expired:
        return State.APPROVED_EXPIRED
    return State.OVERRIDDEN if review.decision == Decision.OVERRIDE else State.APPROVED


def deployable(job: Job) -> bool:
    """May the job's artifacts be downloaded for deployment?"""
    return approval_state(job) in DEPLOYABLE_STATES


def awaiting_review(jobs: QuerySet[Job]) -> QuerySet[Job]:
    """Gated jobs among ``jobs`` with no review yet or an expired approval, oldest first."""
    newest = Review.objects.filter(job=OuterRef("pk")).order_by("-created_at", "-id")
    return (
        jobs.filter(status=Job.Status.SUCCEEDED, gate_outcome__in=GATED_OUTCOMES)
        .annotate(
            review_decision=Subquery(newest.values("decision")[:1]),
            review_expires_at=Subquery(newest.values("expires_at")[:1]),
        )
        .filter(
            Q(review_decision__isnull=True)
            | Q(review_decision__in=[Decision.APPROVE, Decision.OVERRIDE], review_expires_at__lte=timezone.now())
        )
        .order_by("finished_at", "created_at", "id")
    )


# --- who may review ---------------------------------------------------------------------------


def role_in(user, team) -> str | None:
    if not getattr(user, "is_authenticated", False):
        return None
    return Membership.objects.filter(user=user, team=team).values_list("role", flat=True).first()


def review_refusal(user, job: Job) -> str | None:
    """Why ``user`` may not review ``job`` (a sentence), or None when they may."""
    role = role_in(user, job.team)
    if role is None:
        return f"only members of team {job.team.name} can review its jobs"
    if job.submitter_id is not None and job.submitter_id == user.pk:
        return "you submitted this job: another reviewer must review it (four-eyes rule)"
    if role not in REVIEWER_ROLES:
        return f"only reviewers and admins of team {job.team.name} can review jobs; your role is {role}"
    return None


def allowed_decisions(job: Job) -> list[str]:
    """Decisions the job's gate outcome admits: approve/reject, or override/reject for a failed gate."""
    if not needs_review(job):
        return []
    if job.gate_outcome == Job.GateOutcome.FAIL:
        return [Decision.OVERRIDE, Decision.REJECT]
    return [Decision.APPROVE, Decision.REJECT]


def parse_expiry(value: Any) -> dt.datetime | None:
    """``None``/empty, an ISO date (valid through that day, UTC) or an ISO datetime (naive = UTC).

    Raises ``ReviewError`` (invalid) for anything else.
    """
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime.combine(value + dt.timedelta(days=1), dt.time.min)
    elif isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                day = dt.date.fromisoformat(text)
                moment = dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min)
            else:
                moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ReviewError(f"expires_at: {value!r} is not an ISO date or datetime") from None
    else:
        raise ReviewError("expires_at must be an ISO date or datetime string")
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=dt.UTC)
    return moment


def review_job(user, job: Job, decision: str, reason: str, expires_at: Any = None) -> Review:
    """Record ``user``'s ``decision`` on ``job`` with a written ``reason``; return the review.

    Rules, in order: the user must be a reviewer or admin of the job's team and
    not its submitter (``forbidden``); the job must be a succeeded job whose gate
    said ``needs_approval`` or ``fail``; ``decision`` must be ``approve`` (not for
    a failed gate), ``override`` (only for a failed gate: "accept despite
    failure") or ``reject``; ``reason`` must not be blank; ``expires_at`` (approve
    and override only) must lie in the future (``invalid``). The review and its
    audit entry are written in one transaction.
    """
    refusal = review_refusal(user, job)
    if refusal:
        raise ReviewError(refusal, ReviewError.FORBIDDEN)
    if not needs_review(job):
        if job.status != Job.Status.SUCCEEDED:
            raise ReviewError(f"job #{job.pk} is {job.status}: only a finished job's gate outcome can be reviewed")
        raise ReviewError(f"job #{job.pk} needs no review: its gate outcome is {job.gate_outcome or 'none'}")
    if decision not in Decision.values:
        raise ReviewError(f"decision must be one of {', '.join(Decision.values)}")
    if decision not in allowed_decisions(job):
        if decision == Decision.APPROVE:
            raise ReviewError(
                "the quality gate failed: a plain approval is not possible; accept it explicitly "
                "with decision 'override' (accept despite failure) and a reason, or reject it"
            )
        raise ReviewError("'override' (accept despite failure) is only for a failed gate: use 'approve'")
    reason = (reason or "").strip() if isinstance(reason, str) else ""
    if not reason:
        raise ReviewError("a written reason is required")
    if len(reason) > REASON_MAX_CHARS:
        raise ReviewError(f"the reason is longer than {REASON_MAX_CHARS} characters")
    expiry = parse_expiry(expires_at)
    if expiry is not None:
        if decision == Decision.REJECT:
            raise ReviewError("only an approval can expire: leave expires_at empty when rejecting")
        if expiry <= timezone.now():
            raise ReviewError("expires_at must be in the future")
    with transaction.atomic():
        review = Review.objects.create(
            job=job,
            reviewer=user,
            reviewer_name=user.get_username(),
            decision=decision,
            reason=reason,
            gate_outcome=job.gate_outcome,
            expires_at=expiry,
        )
        details: dict[str, Any] = {"gate_outcome": job.gate_outcome, "review": review.pk}
        if expiry is not None:
            details["expires_at"] = expiry.isoformat()
        record(decision, job=job, actor=user, reason=reason, details=details)
    return review


# --- the worker's hook and notifications ---------------------------------------------------------


def record_gate_outcome(job_id: int) -> AuditEntry | None:
    """Record a succeeded job's gate outcome; notify reviewers after commit when it awaits review.

    Called by the worker inside the transaction that marks the job succeeded, so
    the entry exists exactly when the outcome does.
    """
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return None
    entry = record(Action.GATE_OUTCOME, job=job, details={"outcome": job.gate_outcome or "none"})
    if needs_review(job):
        transaction.on_commit(lambda: notify_reviewers(job_id))
    return entry


def job_url(job: Job) -> str:
    return settings.INFEROPT_BASE_URL.rstrip("/") + reverse("jobs:detail", args=[job.pk])


def reviewers_of(job: Job) -> QuerySet:
    """Active reviewers and admins of the job's team who may review it (the submitter may not)."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.filter(
        is_active=True, memberships__team_id=job.team_id, memberships__role__in=REVIEWER_ROLES
    )
    if job.submitter_id is not None:
        users = users.exclude(pk=job.submitter_id)
    return users.order_by("username")


@dataclass
class Notification:
    emailed: list[str]
    webhook_status: int | None = None
    webhook_error: str = ""


def notify_reviewers(job_id: int) -> Notification | None:
    """Tell the team's reviewers that job ``job_id`` awaits review; never raises.

    E-mail goes to every reviewer/admin with an address (except the submitter)
    through Django's mail backend; if the team has a ``webhook_url``, it gets a
    POST of ``{"event": "job.awaiting_review", "job": {...}}`` within
    ``INFEROPT_WEBHOOK_TIMEOUT_S`` seconds. Failures are logged. The attempt is
    written to the audit log (``review_requested``).
    """
    try:
        job = Job.objects.select_related("team", "submitter").filter(pk=job_id).first()
        if job is None or not needs_review(job):
            return None
        result = Notification(emailed=[])
        url = job_url(job)
        outcome = job.get_gate_outcome_display().lower()
        recipients = [user.email for user in reviewers_of(job) if user.email]
        if recipients:
            subject = f"[InferOpt] job #{job.pk} awaits review ({outcome})"
            body = (
                f'Job #{job.pk} "{job.name}" of team {job.team.name}, submitted by '
                f"{job.submitter.get_username() if job.submitter else 'a deleted user'}, finished with gate "
                f"outcome: {outcome}.\n\nIts artifacts cannot be downloaded for deployment until a reviewer "
                f"approves it. Review it here:\n{url}\n"
            )
            try:
                send_mail(subject, body, None, recipients, fail_silently=False)
                result.emailed = recipients
            except Exception:
                logger.exception("could not e-mail the reviewers of job %s", job_id)
        if job.team.webhook_url:
            result.webhook_status, result.webhook_error = _post_webhook(job, url)
        details: dict[str, Any] = {"emailed": len(result.emailed)}
        if job.team.webhook_url:
            details["webhook_status"] = result.webhook_status
            if result.webhook_error:
                details["webhook_error"] = result.webhook_error
        record(Action.REVIEW_REQUESTED, job=job, details=details)
        return result
    except Exception:
        logger.exception("could not notify the reviewers of job %s", job_id)
        return None


def _post_webhook(job: Job, url: str) -> tuple[int | None, str]:
    payload = {
        "event": "job.awaiting_review",
        "job": {
            "id": job.pk,
            "name": job.name,
            "team": job.team.name,
            "gate_outcome": job.gate_outcome,
            "submitter": job.submitter.get_username() if job.submitter else None,
            "url": url,
        },
    }
    target = job.team.webhook_url
    if not target.lower().startswith(("http://", "https://")):
        logger.warning("team %s: webhook URL %r is not http(s); not called", job.team.name, target)
        return None, "not an http(s) URL"
    request = urllib.request.Request(
        target,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "InferOpt-webhook/1"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.INFEROPT_WEBHOOK_TIMEOUT_S) as response:
            return response.status, ""
    except Exception as error:
        logger.warning("webhook of team %s for job %s failed: %s", job.team.name, job.pk, error)
        status = getattr(error, "code", None)
        return (status if isinstance(status, int) else None), f"{type(error).__name__}: {error}"[:300]
