"""Uploaded models and datasets in Django's default storage, and local copies fetched from it.

Uploads live in ``STORAGES["default"]`` (a folder by default, S3-compatible object
storage with ``INFEROPT_S3_BUCKET``), so web and workers on different hosts share
them through the storage API and never through a shared local path. A job's recipe
names each upload by a *storage reference*::

    storage:datasets/<uuid>.jsonl@sha256:<hex of the file's bytes>
    storage:models/<uuid>/model.zip@sha256:<hex of the archive's bytes>

``fetch_dataset`` and ``fetch_model`` turn a reference into a local path: they stream
the object through ``storage.open()`` (size-checked against the limits), verify its
sha256 against the reference (``StoredInputError`` on a mismatch), extract model
archives with the upload checks of ``optimizers.uploads.extract_model_zip`` again,
and keep the result in a local cache keyed by sha256, so a second job on the same
host reads the cached copy without downloading again. Cache entries appear by an
atomic rename only after they were verified; they are never written in place.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.files.storage import Storage, default_storage

from optimizers.errors import InferOptError
from optimizers.uploads import extract_model_zip

STORAGE_PREFIX = "storage:"
_SHA_MARK = "@sha256:"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: Storage folders a reference may point into (what the upload services write).
MODEL_FOLDER = "models"
DATASET_FOLDER = "datasets"
_CHUNK = 1 << 20
#: Same fixed timestamp for every archive entry, so one folder always gives the same archive bytes.
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


class StoredInputError(InferOptError):
    """A stored upload cannot be used: bad reference, missing object, too large, or its sha256 differs."""


@dataclass(frozen=True)
class StoredInput:
    """An object in the default storage and the sha256 its bytes must have."""

    name: str
    sha256: str

    @property
    def reference(self) -> str:
        return f"{STORAGE_PREFIX}{self.name}{_SHA_MARK}{self.sha256}"

    @property
    def kind(self) -> str:
        """``model`` or ``dataset``, from the storage folder."""
        return "model" if self.name.startswith(MODEL_FOLDER + "/") else "dataset"

    @classmethod
    def parse(cls, reference: str) -> StoredInput:
        """Parse ``storage:<name>@sha256:<hex>``; ``StoredInputError`` for anything else.

        The name must be a plain relative path under ``models/`` or ``datasets/``: a
        reference can never make a worker read another object of the storage.
        """
        if not is_storage_reference(reference):
            raise StoredInputError(f"{reference!r} is not a storage reference ({STORAGE_PREFIX}<name>@sha256:<hex>)")
        name, mark, digest = reference.removeprefix(STORAGE_PREFIX).rpartition(_SHA_MARK)
        if not mark or not _SHA256.match(digest):
            raise StoredInputError(f"storage reference {reference!r} has no valid '@sha256:<64 hex digits>'")
        path = PurePosixPath(name)
        if (
            not name
            or name.startswith("/")
            or "\\" in name
            or "\0" in name
            or any(part in ("", ".", "..") for part in name.split("/"))
            or len(path.parts) < 2
            or path.parts[0] not in (MODEL_FOLDER, DATASET_FOLDER)
        ):
            raise StoredInputError(
                f"storage reference {reference!r} must name an object under {MODEL_FOLDER}/ or {DATASET_FOLDER}/"
            )
        return cls(name=name, sha256=digest)


def is_storage_reference(value: object) -> bool:
    return isinstance(value, str) and value.startswith(STORAGE_PREFIX)


def storage_reference(name: str, sha256: str) -> str:
    """The recipe value for the stored object ``name`` whose bytes hash to ``sha256`` (validated)."""
    return StoredInput.parse(f"{STORAGE_PREFIX}{name}{_SHA_MARK}{sha256}").reference


def input_cache_dir() -> Path | None:
    """This host's cache of fetched uploads (``INFEROPT_INPUT_CACHE_DIR``); None when turned off."""
    value = str(getattr(settings, "INFEROPT_INPUT_CACHE_DIR", "") or "")
    if value == "off":
        return None
    return Path(value) if value else Path(settings.INFEROPT_DATA_DIR) / "inputs"


def zip_model_folder(folder: Path, destination: Path) -> str:
    """Write ``folder`` as a deterministic, uncompressed zip; return the archive's sha256.

    Sorted entries, fixed timestamps and modes: the same folder always gives the same
    bytes. Stored, not deflated: weights barely compress, and an uncompressed archive
    never trips the zip-bomb ratio check when it is extracted again.
    """
    folder, destination = Path(folder), Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(destination, "w", compression=zipfile.ZIP_STORED) as archive:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(file.relative_to(folder).as_posix(), date_time=_FIXED_TIME)
            info.external_attr = 0o644 << 16
            with open(file, "rb") as source, archive.open(info, "w", force_zip64=True) as target:
                shutil.copyfileobj(source, target, _CHUNK)
    return _sha256_of(destination)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def model_archive_limit() -> int:
    """Largest stored model archive accepted: the extraction limit plus room for zip headers."""
    return settings.INFEROPT_UPLOAD_MAX_EXTRACTED_BYTES + 1024 * settings.INFEROPT_UPLOAD_MAX_FILES + (1 << 20)


def fetch_dataset(stored: StoredInput, cache_dir: Path, *, storage: Storage | None = None) -> Path:
    """A verified local copy of a stored dataset file (cached by sha256)."""
    target = Path(cache_dir) / stored.sha256 / "dataset.jsonl"
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory(dir=_ensure(cache_dir), prefix=".partial-") as scratch:
        download = _download(stored, Path(scratch) / "download", settings.INFEROPT_UPLOAD_MAX_BYTES, storage)
        _publish(download, target)
    return target


def fetch_model(stored: StoredInput, cache_dir: Path, *, storage: Storage | None = None) -> Path:
    """A verified, extracted local copy of a stored model archive (cached by the archive's sha256).

    The archive is extracted with every check ``extract_model_zip`` applies to an
    upload (path traversal, links, sizes, pickles, safetensors headers ...): the bytes
    in storage are not trusted more than the upload was.
    """
    target = Path(cache_dir) / stored.sha256 / "model"
    if target.is_dir():
        return target
    with tempfile.TemporaryDirectory(dir=_ensure(cache_dir), prefix=".partial-") as scratch:
        archive = _download(stored, Path(scratch) / "model.zip", model_archive_limit(), storage)
        try:
            extracted = extract_model_zip(
                archive,
                Path(scratch) / "model",
                max_total_bytes=settings.INFEROPT_UPLOAD_MAX_EXTRACTED_BYTES,
                max_files=settings.INFEROPT_UPLOAD_MAX_FILES,
            )
        except InferOptError as error:
            raise type(error)(f"stored model {stored.name}: {error}") from None
        _publish(extracted.folder, target)
    return target


def seed_model_cache(stored: StoredInput, folder: Path, cache_dir: Path) -> Path:
    """Move an already validated, extracted ``folder`` into the cache as ``stored``'s copy.

    The uploading host has just extracted and checked the model; keeping that copy
    spares it a download. A copy already cached wins (``folder`` is then removed).
    """
    target = Path(cache_dir) / stored.sha256 / "model"
    _ensure(cache_dir)
    _publish(Path(folder), target)
    return target


def _ensure(cache_dir: Path) -> Path:
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    return Path(cache_dir)


def _download(stored: StoredInput, destination: Path, max_bytes: int, storage: Storage | None) -> Path:
    """Stream ``stored`` to ``destination`` through the storage API, counting bytes and hashing them."""
    storage = storage or default_storage
    try:
        declared = storage.size(stored.name)
    except Exception as error:  # OSError on disk; backends raise their own (botocore's ClientError)
        raise StoredInputError(f"the stored {stored.kind} {stored.name} cannot be read: {error}") from None
    if declared > max_bytes:
        raise StoredInputError(
            f"the stored {stored.kind} {stored.name} has {declared} bytes, over the {max_bytes} limit"
        )
    digest = hashlib.sha256()
    received = 0
    with storage.open(stored.name, "rb") as source, open(destination, "xb") as sink:
        while chunk := source.read(_CHUNK):
            received += len(chunk)
            if received > declared:
                raise StoredInputError(
                    f"the stored {stored.kind} {stored.name} holds more than the {declared} bytes the storage declares"
                )
            digest.update(chunk)
            sink.write(chunk)
    if received != declared:
        raise StoredInputError(
            f"the stored {stored.kind} {stored.name} ended after {received} of {declared} bytes (truncated download)"
        )
    if digest.hexdigest() != stored.sha256:
        raise StoredInputError(
            f"the stored {stored.kind} {stored.name} does not match the sha256 recorded when it was uploaded "
            f"(expected {stored.sha256}, got {digest.hexdigest()}): it was changed or damaged in storage; "
            "upload it again"
        )
    return destination


def _publish(source: Path, target: Path) -> None:
    """Rename a verified file or folder into place; if another process was first, keep its copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if source.is_dir():
            os.rename(source, target)  # fails if ``target`` exists: never replaces a cached folder
        else:
            os.replace(source, target)  # atomic; an existing copy has the same verified bytes
    except FileExistsError:
        pass
    except OSError:
        if not target.exists():
            raise
    if source.is_dir() and source.exists():
        shutil.rmtree(source, ignore_errors=True)
