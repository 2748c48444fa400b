"""Reviews of gated jobs and the append-only audit log.

Both tables only grow. ``save()`` refuses to update a stored row, ``delete()``
refuses, and so do the queryset's ``update()``/``delete()``/``bulk_update()``.
For audit entries the database enforces it too (migration 0002: a trigger
refuses UPDATE, and DELETE on PostgreSQL), and their foreign keys have no
database constraint and ``DO_NOTHING`` on delete: deleting a job, a team or a
user leaves their audit rows exactly as written (ids and names kept).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from webapp.accounts.models import Team


class AppendOnlyError(Exception):
    """Someone tried to change or delete a row of an append-only table."""


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only: they cannot be updated")

    def bulk_update(self, objs, fields, batch_size=None):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only: they cannot be updated")

    def delete(self):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only: they cannot be deleted")

    delete.queryset_only = True


class AppendOnlyModel(models.Model):
    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding or kwargs.get("force_update") or kwargs.get("update_fields"):
            raise AppendOnlyError(f"{type(self).__name__} rows are append-only: they cannot be updated")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError(f"{type(self).__name__} rows are append-only: they cannot be deleted")


class Review(AppendOnlyModel):
    """A reviewer's decision on a job whose gate said ``needs_approval`` or ``fail``.

    The newest review of a job is its decision (a later rejection revokes an
    approval; a new approval replaces an expired one). Deleting the job deletes
    its reviews; the audit log keeps them.
    """

    class Decision(models.TextChoices):
        APPROVE = "approve", "Approve"
        REJECT = "reject", "Reject"
        OVERRIDE = "override", "Accept despite failure"

    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="reviews")
    #: The reviewer's username when the review was made (kept if the user is deleted).
    reviewer_name = models.CharField(max_length=150)
    decision = models.CharField(max_length=16, choices=Decision.choices)
    reason = models.TextField()
    #: The job's gate outcome when it was reviewed.
    gate_outcome = models.CharField(max_length=16)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_decision_display()} of job #{self.job_id} by {self.reviewer_name}"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()


class AuditEntry(AppendOnlyModel):
    """Who did what to which job of which team, when, and why."""

    class Action(models.TextChoices):
        GATE_OUTCOME = "gate_outcome", "Gate outcome"
        REVIEW_REQUESTED = "review_requested", "Reviewers notified"
        APPROVE = "approve", "Approved"
        REJECT = "reject", "Rejected"
        OVERRIDE = "override", "Accepted despite failure"
        DOWNLOAD = "download", "Download"
        DOWNLOAD_REFUSED = "download_refused", "Download refused"
        JOB_DELETED = "job_deleted", "Job deleted"
        ARTIFACT_DELETED = "artifact_deleted", "Artifact deleted"
        MEMBER_ADDED = "member_added", "Member added"
        ROLE_CHANGED = "role_changed", "Role changed"
        MEMBER_REMOVED = "member_removed", "Member removed"
        WEBHOOK_CHANGED = "webhook_changed", "Webhook changed"

    team = models.ForeignKey(Team, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    #: The actor's username when the entry was written; empty for the system (the worker).
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=32, choices=Action.choices, db_index=True)
    reason = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True, editable=False)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["team", "created_at"], name="reviews_audit_team_time")]

    def __str__(self) -> str:
        job = f" job #{self.job_id}" if self.job_id else ""
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_name or 'system'} {self.action}{job}"
