"""Models (built-in demo entries and team uploads) and evaluation datasets."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q, QuerySet

from webapp.accounts.models import Team


class ModelEntryQuerySet(models.QuerySet):
    def visible_to(self, user) -> QuerySet[ModelEntry]:
        """Built-in entries (no team) plus those of the user's teams."""
        from webapp.accounts.services import teams_of

        return self.filter(Q(team__isnull=True) | Q(team__in=teams_of(user)))


def model_archive_upload_to(instance: ModelEntry, filename: str) -> str:
    # One folder per upload; the user's file name is never part of the stored path.
    return f"models/{uuid.uuid4().hex}/model.zip"


class ModelEntry(models.Model):
    class Format(models.TextChoices):
        HF = "hf", "Hugging Face"
        ONNX = "onnx", "ONNX"
        TORCH = "torch", "PyTorch module (InferOpt)"

    class Source(models.TextChoices):
        ZOO = "zoo", "Built-in demo"
        UPLOAD = "upload", "Upload"

    #: None for built-in demo entries, which every user sees.
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="models")
    name = models.CharField(max_length=200)
    #: ``zoo:<key>``, or for an upload its storage reference ``storage:models/<uuid>/model.zip@sha256:<hex>``
    #: (``webapp.catalog.storage``; entries uploaded before 0004 may still hold a local folder path).
    reference = models.CharField(max_length=1000)
    format = models.CharField(max_length=16, choices=Format.choices, default=Format.HF)
    task = models.CharField(max_length=64)
    source = models.CharField(max_length=16, choices=Source.choices)
    #: Content hash of the extracted model folder (``optimizers.hashing.sha256_path``).
    sha256 = models.CharField(max_length=64, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    #: Uploads: the validated folder as a deterministic zip in the default storage, and that zip's sha256.
    archive = models.FileField(upload_to=model_archive_upload_to, max_length=500, blank=True)
    archive_sha256 = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ModelEntryQuerySet.as_manager()

    class Meta:
        # Built-in demo entries (no team) first, on every database.
        ordering = [F("team_id").asc(nulls_first=True), "name", "id"]
        verbose_name = "model"

    def __str__(self) -> str:
        return self.name

    @property
    def is_builtin(self) -> bool:
        return self.team_id is None


class DatasetQuerySet(models.QuerySet):
    def visible_to(self, user) -> QuerySet[Dataset]:
        from webapp.accounts.services import teams_of

        return self.filter(team__in=teams_of(user))


def dataset_upload_to(instance: Dataset, filename: str) -> str:
    # The user's file name is never part of the stored path.
    return f"datasets/{uuid.uuid4().hex}.jsonl"


class Dataset(models.Model):
    """A JSONL text dataset: lines ``{"text": ...}`` or ``{"query": ..., "passage": ...}``."""

    class Kind(models.TextChoices):
        JSONL = "jsonl", "JSONL"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=200)
    file = models.FileField(upload_to=dataset_upload_to, max_length=500)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.JSONL)
    #: ``text`` or ``pairs`` (query/passage)
    schema = models.CharField(max_length=16, blank=True)
    rows = models.PositiveIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DatasetQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name
