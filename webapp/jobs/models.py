"""The job row is the record of a run; workers/tasks.py keeps it current.

Field names here are a contract with ``workers/tasks.py``: it claims a job with
``Job.objects.filter(pk=id, status="queued").update(status="running", worker_pid=..., ...)``
(or re-claims a ``running`` one whose worker process died),
appends to ``log``, sets ``stage``/``progress``, stores ``report`` and
``gate_outcome`` and creates ``Artifact`` rows whose ``file`` goes through
Django's storage (``jobs/<job id>/<name>.zip``).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import QuerySet

from webapp.accounts.models import Team
from webapp.catalog.models import Dataset, ModelEntry


class JobQuerySet(models.QuerySet):
    def visible_to(self, user) -> QuerySet[Job]:
        from webapp.accounts.services import teams_of

        return self.filter(team__in=teams_of(user))


class Job(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class GateOutcome(models.TextChoices):
        PASS = "pass", "Pass"
        FAIL = "fail", "Fail"
        NEEDS_APPROVAL = "needs_approval", "Needs approval"

    FINAL_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="jobs")
    submitter = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="jobs")
    name = models.CharField(max_length=200)
    model = models.ForeignKey(ModelEntry, on_delete=models.PROTECT, related_name="jobs")
    dataset = models.ForeignKey(Dataset, null=True, blank=True, on_delete=models.PROTECT, related_name="jobs")
    #: ``Recipe.to_raw()`` with ``model`` = the entry's reference, ``dataset`` = the file's absolute path.
    recipe = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    stage = models.CharField(max_length=200, blank=True)
    progress = models.FloatField(default=0.0)  # 0..100
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    #: Process id (on ``worker``'s host) of the pool child running the current attempt: a redelivered
    #: message re-claims a ``running`` job only when this process is gone (``workers/tasks.py``).
    worker_pid = models.PositiveIntegerField(null=True, blank=True)
    #: Claims so far (first run, and re-runs after the worker process died); bounded by
    #: ``INFEROPT_JOB_MAX_ATTEMPTS``.
    attempts = models.PositiveIntegerField(default=0)
    celery_task_id = models.CharField(max_length=64, blank=True)
    queue = models.CharField(max_length=64, default="cpu")
    cancel_requested = models.BooleanField(default=False)
    report = models.JSONField(null=True, blank=True)
    gate_outcome = models.CharField(max_length=16, choices=GateOutcome.choices, blank=True)
    optimization_seconds = models.FloatField(null=True, blank=True)
    #: The failed, lost or cancelled job this one re-submitted (the Retry button).
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries")

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.name}"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES

    @property
    def is_active(self) -> bool:
        return not self.is_final

    @property
    def can_retry(self) -> bool:
        """Failed (lost included) and cancelled jobs can be submitted again."""
        return self.status in (self.Status.FAILED, self.Status.CANCELLED)


def artifact_upload_to(instance: Artifact, filename: str) -> str:
    return f"jobs/{instance.job_id}/{filename}"


class Artifact(models.Model):
    """A packaged variant (zip with manifest.json) produced by a job."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="artifacts")
    name = models.CharField(max_length=200)
    format = models.CharField(max_length=16)
    file = models.FileField(upload_to=artifact_upload_to, max_length=500)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField(default=0)
    order = models.IntegerField(default=0)
    is_final = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # The final (candidate) artifact sorts last.
        ordering = ["is_final", "order", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.format})"
