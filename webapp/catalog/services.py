"""Catalogue operations: demo entries, uploads, and resolving recipe references."""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.db import transaction

from optimizers.errors import RecipeError
from optimizers.hashing import sha256_file, sha256_path, size_bytes
from optimizers.uploads import extract_model_zip, validate_jsonl_dataset
from optimizers.zoo import BUILT_MODELS, ZOO_MODELS, ZOO_PREFIX, zoo_format, zoo_model_folder
from webapp.catalog.models import Dataset, ModelEntry
from webapp.catalog.storage import (
    StoredInput,
    fetch_model,
    input_cache_dir,
    is_storage_reference,
    seed_model_cache,
    storage_reference,
    zip_model_folder,
)

logger = logging.getLogger(__name__)

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
    """Validate a zipped HF model folder and store it in the default storage as ``models/<uuid>/model.zip``.

    The archive kept is a deterministic zip of the validated, extracted folder (what
    the checks accepted, without skipped pickle files), recorded with its sha256; the
    entry's ``reference`` is its storage reference, so workers on other hosts fetch
    it through the storage API (``webapp.catalog.storage``). The extracted folder
    stays in this host's input cache. Raises ``UnsafeInputError`` (nothing is kept then).
    """
    cache_dir = input_cache_dir() or Path(settings.INFEROPT_DATA_DIR) / "inputs"
    cache_dir.mkdir(parents=True, exist_ok=True)
    temporary: list[Path] = []
    # Extract inside the cache folder, so the checked copy can be renamed into the cache afterwards.
    scratch = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".upload-"))
    try:
        source = _local_copy(uploaded_file, temporary)
        result = extract_model_zip(
            source,
            scratch / "model",
            max_total_bytes=settings.INFEROPT_UPLOAD_MAX_EXTRACTED_BYTES,
            max_files=settings.INFEROPT_UPLOAD_MAX_FILES,
        )
        for path in temporary:
            path.unlink(missing_ok=True)
        archive_sha256 = zip_model_folder(result.folder, scratch / "model.zip")
        entry = ModelEntry(
            team=team,
            name=name,
            format=result.format,
            task=result.task,
            source=ModelEntry.Source.UPLOAD,
            sha256=result.sha256,
            size_bytes=result.size_bytes,
            archive_sha256=archive_sha256,
            created_by=user,
        )
        with open(scratch / "model.zip", "rb") as handle:
            entry.archive.save("model.zip", File(handle, name="model.zip"), save=False)
        stored = StoredInput(name=entry.archive.name, sha256=archive_sha256)
        entry.reference = stored.reference
        try:
            with transaction.atomic():
                entry.save()
        except BaseException:
            entry.archive.delete(save=False)
            raise
        try:
            seed_model_cache(stored, result.folder, cache_dir)
        except OSError:  # only a cache: the first job or estimate fetches the archive instead
            logger.warning("could not keep uploaded model %s in the input cache", entry.pk, exc_info=True)
        return entry
    finally:
        for path in temporary:
            path.unlink(missing_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)


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
    """(Dataset row, recipe value) for a recipe's ``dataset``: ``dataset:<id>``, ``zoo:<name>`` or none.

    An uploaded dataset's recipe value is its storage reference (``dataset_reference``), never a path.
    """
    if reference in (None, ""):
        return None, None
    if isinstance(reference, str) and reference.startswith("dataset:"):
        key = reference.removeprefix("dataset:")
        dataset = Dataset.objects.visible_to(user).filter(pk=int(key)).first() if key.isdigit() else None
        if dataset is None:
            raise RecipeError(f"unknown dataset '{reference}'")
        return dataset, dataset_reference(dataset)
    if isinstance(reference, str) and reference.startswith(ZOO_PREFIX):
        return None, reference
    raise RecipeError(f"dataset '{reference}' is not accepted: use 'dataset:<id>' or a 'zoo:' dataset")


def dataset_reference(dataset: Dataset) -> str:
    """The recipe value for an uploaded dataset: ``storage:datasets/<uuid>.jsonl@sha256:<hex>``.

    A row without a recorded sha256 (none is written so since uploads hash their file)
    gets one computed through the storage API and saved.
    """
    if not dataset.sha256:
        digest = hashlib.sha256()
        with dataset.file.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        dataset.sha256 = digest.hexdigest()
        dataset.save(update_fields=["sha256"])
    return storage_reference(dataset.file.name, dataset.sha256)


def local_model_folder(entry: ModelEntry) -> Path:
    """A folder on this host holding ``entry``'s model files (for estimates in web requests).

    Demo models: their cached folder (never trained here: ``RecipeError`` if not built).
    Uploads: the verified copy in this host's input cache, fetched from storage if missing.
    Entries from before uploads were stored (a local folder path) are returned as they are.
    """
    if entry.reference.startswith(ZOO_PREFIX):
        return zoo_model_folder(entry.reference, build=False)[0]
    if is_storage_reference(entry.reference):
        cache_dir = input_cache_dir() or Path(settings.INFEROPT_DATA_DIR) / "inputs"
        return fetch_model(StoredInput.parse(entry.reference), cache_dir)
    return Path(entry.reference)
