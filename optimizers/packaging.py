"""Package an artifact folder as a downloadable zip with a manifest.

The zip is written to a temporary name and renamed into place, so a reader
never sees a partial file. Entries are written in sorted order with a fixed
timestamp so the same folder and manifest always give the same bytes (and the
same sha256).
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from optimizers.hashing import sha256_file

MANIFEST_NAME = "manifest.json"
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)


def _check_extra_names(folder: Path, extra_files: dict[str, str | bytes]) -> None:
    for name in extra_files:
        parts = PurePosixPath(name).parts
        if not name or name.startswith("/") or "\\" in name or ".." in parts or name != PurePosixPath(name).as_posix():
            raise ValueError(f"extra file name must be a plain relative path, got {name!r}")
        if name == MANIFEST_NAME or (folder / name).exists():
            raise ValueError(f"extra file {name!r} would replace a file of the artifact")


def package_artifact(
    folder: Path,
    manifest: dict[str, Any],
    destination: Path,
    *,
    extra_files: dict[str, str | bytes] | None = None,
) -> tuple[str, int]:
    """Zip ``folder`` plus ``manifest.json`` into ``destination``; return (sha256, size).

    ``manifest`` should hold the recipe, library versions and metrics so the
    download explains itself. ``extra_files`` maps archive names (plain relative
    paths, e.g. ``MODEL_CARD.md``) to contents (text is UTF-8 encoded) added
    after the folder's files, in sorted order; a name that would replace a file
    of the folder or the manifest raises ``ValueError`` before anything is written.
    """
    folder = Path(folder)
    destination = Path(destination)
    extra_files = extra_files or {}
    _check_extra_names(folder, extra_files)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=destination.parent, prefix=".partial-", suffix=".zip")
    os.close(handle)
    try:
        # Level 1: weights barely compress, and the higher levels cost seconds per 100 MB.
        with zipfile.ZipFile(temp_name, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for file in sorted(p for p in folder.rglob("*") if p.is_file()):
                info = zipfile.ZipInfo(file.relative_to(folder).as_posix(), date_time=_FIXED_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                with open(file, "rb") as source, archive.open(info, "w") as target:
                    while chunk := source.read(1 << 20):
                        target.write(chunk)
            info = zipfile.ZipInfo(MANIFEST_NAME, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, json.dumps(manifest, indent=2, sort_keys=True, default=str))
            for name in sorted(extra_files):
                content = extra_files[name]
                info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, content.encode() if isinstance(content, str) else content)
        os.replace(temp_name, destination)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return sha256_file(destination), destination.stat().st_size
