"""Content hashes for files and folders (artifact identity and cache keys)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of one file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files(folder: Path, exclude: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() not in exclude)


def sha256_path(path: Path, exclude: tuple[str, ...] = ()) -> str:
    """Hash a file, or a folder as the sorted list of (relative name, file hash).

    Folder hashes do not depend on file modification times or on the folder's
    own location, so the same model copied elsewhere keeps its identity.
    ``exclude`` names top-level-relative paths left out (e.g. a metadata file
    written after hashing).
    """
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in _files(path, exclude):
        digest.update(file.relative_to(path).as_posix().encode())
        digest.update(b"\0")
        digest.update(sha256_file(file).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def size_bytes(path: Path, exclude: tuple[str, ...] = ()) -> int:
    """Total size on disk of a file or of every file under a folder."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in _files(path, exclude))


def sha256_json(value: object) -> str:
    """Stable hash of a JSON-serialisable value (sorted keys)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
