"""Fetch a job's uploaded inputs through the storage API before its recipe runs.

The web app writes uploads to ``STORAGES["default"]`` and names them in a job's
recipe by storage reference (``storage:<name>@sha256:<hex>``, see
``webapp.catalog.storage``). A worker may run on another host than the web app,
so it never opens an upload by a local path: ``materialize_inputs`` downloads each
referenced object through ``default_storage.open()``, checks its size and sha256,
extracts model archives with the upload checks again, keeps the verified copy in
this worker's input cache (``INFEROPT_INPUT_CACHE_DIR``, keyed by sha256: a second
job with the same upload does not download it again), and returns the recipe with
local paths in place of the references, which is what ``optimizers`` reads.

Everything else passes through unchanged: ``zoo:`` models and datasets, the MiniLM
package, hub ids, and the absolute paths of jobs submitted before uploads were
stored (those still need a worker that sees the web host's media folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from webapp.catalog.storage import StoredInput, fetch_dataset, fetch_model, input_cache_dir, is_storage_reference


def materialize_inputs(job: Any, work_dir: Path, *, cache_dir: Path | None = None) -> dict[str, Any]:
    """``job.recipe`` with every storage reference replaced by a verified local path.

    Model archives become extracted folders, datasets files (calibration datasets in
    steps and search axes included: every string value of the recipe is looked at).
    Downloads are staged inside the cache folder (``cache_dir``, default
    ``INFEROPT_INPUT_CACHE_DIR``), so a verified copy moves into the cache by an
    atomic rename; with the cache turned off (``INFEROPT_INPUT_CACHE_DIR=off``) they
    go to ``work_dir/inputs`` and leave with the job's work folder. The row is not
    changed. Raises ``StoredInputError`` (missing object, over the size limit, sha256
    mismatch) or ``UnsafeInputError`` (the archive fails the upload checks), both
    ``InferOptError``: the job fails with that message.
    """
    cache = Path(cache_dir) if cache_dir is not None else input_cache_dir() or Path(work_dir) / "inputs"
    fetched: dict[str, str] = {}

    def local(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: local(item) for key, item in value.items()}
        if isinstance(value, list):
            return [local(item) for item in value]
        if not is_storage_reference(value):
            return value
        if value not in fetched:
            stored = StoredInput.parse(value)
            fetch = fetch_model if stored.kind == "model" else fetch_dataset
            fetched[value] = str(fetch(stored, cache))
        return fetched[value]

    return local(job.recipe)
