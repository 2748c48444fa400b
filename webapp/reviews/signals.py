"""Deletions of jobs and artifacts go to the audit log, whatever deletes them.

``pre_delete`` fires for every row Django deletes (model ``delete()``, queryset
``delete()``, the admin, cascades from a team), inside the deleting transaction,
so the entry exists exactly when the deletion happens. Unlike ``post_save`` it
cannot be bypassed by ``.update()``: there is no bulk delete without it. The
actor is the request's user (``AuditActorMiddleware``) or ``acting_as``'s.
"""

from __future__ import annotations

from django.db.models.signals import pre_delete
from django.dispatch import receiver

from webapp.jobs.models import Artifact, Job
from webapp.reviews.models import AuditEntry
from webapp.reviews.services import current_actor, record


@receiver(pre_delete, sender=Job, dispatch_uid="reviews_audit_job_deleted")
def audit_job_deleted(sender, instance: Job, **kwargs) -> None:
    record(
        AuditEntry.Action.JOB_DELETED,
        job=instance,
        actor=current_actor(),
        details={"name": instance.name, "status": instance.status, "gate_outcome": instance.gate_outcome},
    )


@receiver(pre_delete, sender=Artifact, dispatch_uid="reviews_audit_artifact_deleted")
def audit_artifact_deleted(sender, instance: Artifact, **kwargs) -> None:
    job = Job.objects.filter(pk=instance.job_id).only("pk", "team_id").first()
    if job is None:
        return
    record(
        AuditEntry.Action.ARTIFACT_DELETED,
        job=job,
        actor=current_actor(),
        details={"artifact": instance.pk, "name": instance.name, "sha256": instance.sha256},
    )
