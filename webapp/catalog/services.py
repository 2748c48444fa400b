"""Catalogue operations: demo entries, uploads, and resolving recipe references."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

from django.conf import settings
from django.db import transaction

from optimizers.errors import RecipeError
from optimizers.hashing import sha256_file, sha256_path, size_bytes
from optimizers.uploads import extract_model_zip, validate_jsonl_dataset
from optimizers.zoo import BUILT_MODELS, ZOO_MODELS, ZOO_PREFIX, zoo_format, zoo_model_folder
from webapp.catalog.models import Dataset, ModelEntry

#: Built-in entries every user sees: (name, reference).
DEMO_MODELS = [
    ("MiniLM-L6 (demo)", "zoo:minilm"),
    ("Tiny LM (demo, Llama)", "zoo:tiny-lm"),
    ("Tiny LM draft (demo)", "zoo:tiny-lm-draft"),
    ("Digits CNN (demo, image classification)", "zoo:digits-cnn"),
]

_fingerprints: dict[str, tuple[str, int]] = {}


def _zoo_fingerprint(reference: str) -> tuple[str, int]:
    """(sha256, size) of a demo model's folder; ("", 0) while a trained demo model is not built yet.

    Never trains a model (web requests call this): ``setup_demo`` builds them.
    """
    if reference in _fingerprints:
        return _fingerprints[reference]
    try:
        folder, _ = zoo_model_folder(reference, build=False)
    except RecipeError:
        return "", 0
    _fingerprints[reference] = (sha256_path(folder), size_bytes(folder))
    return _fingerprints[reference]


def build_demo_models(progress=None) -> list[str]:
    """Train the locally built demo models (``zoo:tiny-lm``, ``zoo:tiny-lm-draft``, ``zoo:digits-cnn``) if missing.

    Cached on disk: a no-op once built. ``progress(reference, fraction, message)``
    follows each build. Returns the references that are ready.
    """
    ready = []
    for key in BUILT_MODELS:
        reference = ZOO_PREFIX + key
        zoo_model_folder(
            reference,
            build=True,
            progress=(lambda fraction, message, ref=reference: progress(ref, fraction, message)) if progress else None,
        )
        ready.append(reference)
    return ready


def ensure_demo_models() -> list[ModelEntry]:
    """Create the built-in demo entries if missing (idempotent); return them."""
    entries = []
    for name, reference in DEMO_MODELS:
        task = ZOO_MODELS[reference.removeprefix(ZOO_PREFIX)][0]
        entry, created = ModelEntry.objects.get_or_create(
            team=None,
            reference=reference,
            defaults={"name": name, "format": zoo_format(reference), "task": task, "source": ModelEntry.Source.ZOO},
        )
        if created or not entry.sha256:
            entry.sha256, entry.size_bytes = _zoo_fingerprint(reference)
            entry.save(update_fields=["sha256", "size_bytes"])
        entries.append(entry)
    return entries


def _local_copy(uploaded_file, stack: list[Path]) -> Path:
    """A path on disk for an uploaded file (uploads normally already stream to a temp file)."""
    if hasattr(uploaded_file, "temporary_file_path"):
        return Path(uploaded_file.temporary_file_path())
    handle = tempfile.NamedTemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR, delete=False, suffix=".upload")
    with handle:
        for chunk in uploaded_file.chunks():
            handle.write(chunk)
    stack.append(Path(handle.name))
    return Path(handle.name)


def upload_model(user, team, name: str, uploaded_file) -> ModelEntry:
    """Validate and extract a zipped HF model folder into ``<media>/models/<uuid>/``.

    Raises ``UnsafeInputError`` (nothing is left on disk then).
    """
    folder = Path(settings.MEDIA_ROOT) / "models" / uuid.uuid4().hex
    temporary: list[Path] = []
    try:
        source = _local_copy(uploaded_file, temporary)
        result = extract_model_zip(
            source,
            folder,
            max_total_bytes=settings.INFEROPT_UPLOAD_MAX_EXTRACTED_BYTES,
            max_files=settings.INFEROPT_UPLOAD_MAX_FILES,
        )
    finally:
        for path in temporary:
            path.unlink(missing_ok=True)
    try:
        with transaction.atomic():
            return ModelEntry.objects.create(
                team=team,
                name=name,
                reference=str(result.folder.resolve()),
                format=result.format,
                task=result.task,
                source=ModelEntry.Source.UPLOAD,
                sha256=result.sha256,
                size_bytes=result.size_bytes,
                created_by=user,
            )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def upload_dataset(user, team, name: str, uploaded_file) -> Dataset:
    """Validate a JSONL dataset and store it; raises ``UnsafeInputError``."""
    temporary: list[Path] = []
    try:
        source = _local_copy(uploaded_file, temporary)
        info = validate_jsonl_dataset(source)
        digest = sha256_file(source)
        dataset = Dataset(team=team, name=name, schema=info.kind, rows=info.rows, sha256=digest, created_by=user)
        dataset.file.save("dataset.jsonl", uploaded_file, save=False)
        try:
            dataset.save()
        except BaseException:
            dataset.file.delete(save=False)
            raise
        return dataset
    finally:
        for path in temporary:
            path.unlink(missing_ok=True)


def resolve_model(user, reference: str) -> ModelEntry:
    """The catalogue entry for a recipe's ``model``: ``zoo:<key>`` or ``model:<id>``.

    Raises ``RecipeError`` for unknown references, entries of other teams and file
    paths (an API client must never make a worker read arbitrary paths).
    """
    if not isinstance(reference, str) or not reference:
        raise RecipeError("'model' is required: 'zoo:minilm' or 'model:<id>' (see GET /api/v1/models)")
    if reference.startswith("model:"):
        key = reference.removeprefix("model:")
        entry = ModelEntry.objects.visible_to(user).filter(pk=int(key)).first() if key.isdigit() else None
        if entry is None:
            raise RecipeError(f"unknown model '{reference}' (see GET /api/v1/models)")
        return entry
    if reference.startswith(ZOO_PREFIX):
        ensure_demo_models()
        entry = ModelEntry.objects.visible_to(user).filter(reference=reference, source=ModelEntry.Source.ZOO).first()
        if entry is None:
            demos = ", ".join(ref for _, ref in DEMO_MODELS)
            raise RecipeError(f"unknown demo model '{reference}'; available: {demos}")
        return entry
    raise RecipeError(
        f"model '{reference}' is not accepted: use 'zoo:<name>' or 'model:<id>' of an uploaded model "
        "(file paths are refused)"
    )


def resolve_dataset(user, reference: str | None) -> tuple[Dataset | None, str | None]:
    """(Dataset row, recipe value) for a recipe's ``dataset``: ``dataset:<id>``, ``zoo:<name>`` or none."""
    if reference in (None, ""):
        return None, None
    if isinstance(reference, str) and reference.startswith("dataset:"):
        key = reference.removeprefix("dataset:")
        dataset = Dataset.objects.visible_to(user).filter(pk=int(key)).first() if key.isdigit() else None
        if dataset is None:
            raise RecipeError(f"unknown dataset '{reference}'")
        return dataset, dataset.file.path
    if isinstance(reference, str) and reference.startswith(ZOO_PREFIX):
        return None, reference
    raise RecipeError(f"dataset '{reference}' is not accepted: use 'dataset:<id>' or a 'zoo:' dataset")
