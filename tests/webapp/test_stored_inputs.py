"""Uploads in the default storage and the verified local copies workers fetch (``webapp.catalog.storage``).

Everything goes through the real storage API (``FileSystemStorage`` under the test's
data folder); the fetches use a cache folder of their own, as a worker on another
host would.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from optimizers.errors import UnsafeInputError
from optimizers.hashing import sha256_path
from tests.webapp.helpers import model_zip
from webapp.catalog.models import ModelEntry
from webapp.catalog.services import dataset_reference, local_model_folder, upload_dataset, upload_model
from webapp.catalog.storage import (
    StoredInput,
    StoredInputError,
    fetch_dataset,
    fetch_model,
    storage_reference,
)
from webapp.jobs.services import submit_job
from workers.inputs import materialize_inputs

pytestmark = pytest.mark.django_db

ROWS = b'{"query": "What is a list?", "passage": "A list is a mutable sequence."}\n'


def stored_dataset(owner, team, content: bytes = ROWS):
    return upload_dataset(owner, team, "pairs", ContentFile(content, name="pairs.jsonl"))


def stored_model(owner, team) -> ModelEntry:
    return upload_model(owner, team, "tiny", ContentFile(model_zip(), name="tiny.zip"))


def test_an_uploaded_model_is_a_zip_in_storage_named_by_its_sha256(owner, team, data_dir, tmp_path):
    entry = stored_model(owner, team)

    stored = StoredInput.parse(entry.reference)
    assert stored.name == entry.archive.name
    assert stored.name.startswith("models/") and stored.name.endswith("/model.zip")
    with default_storage.open(stored.name, "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == stored.sha256 == entry.archive_sha256
    # What another host extracts from storage is exactly the folder the upload checks accepted.
    folder = fetch_model(stored, tmp_path / "other-host")
    assert sha256_path(folder) == entry.sha256
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    # Nothing is left in the media folder but the archive; the checked folder is this host's cached copy.
    media = sorted(p.relative_to(data_dir / "media").as_posix() for p in (data_dir / "media").rglob("*") if p.is_file())
    assert media == [stored.name]
    assert local_model_folder(entry) == data_dir / "inputs" / stored.sha256 / "model"


def test_the_job_recipe_names_uploads_by_storage_reference_never_by_path(owner, team, data_dir):
    entry = stored_model(owner, team)
    dataset = stored_dataset(owner, team)

    job = submit_job(owner, team, entry, {"steps": [{"pass": "onnx_export"}]}, dataset=dataset)

    assert job.recipe["model"] == entry.reference
    assert job.recipe["dataset"] == f"storage:{dataset.file.name}@sha256:{dataset.sha256}"
    assert str(data_dir) not in json.dumps(job.recipe)


def test_materialize_inputs_replaces_references_by_verified_local_copies(owner, team, tmp_path):
    entry = stored_model(owner, team)
    dataset = stored_dataset(owner, team)
    reference = dataset_reference(dataset)
    job = SimpleNamespace(
        recipe={
            "model": entry.reference,
            "dataset": reference,
            "steps": [{"pass": "ort_quantize_static", "calibration_dataset": reference}, {"pass": "onnx_export"}],
            "tokenizer": "sentence-transformers/all-MiniLM-L6-v2",
        }
    )

    local = materialize_inputs(job, tmp_path / "work", cache_dir=tmp_path / "worker-cache")

    assert Path(local["model"]) == tmp_path / "worker-cache" / entry.archive_sha256 / "model"
    assert (Path(local["model"]) / "config.json").is_file()
    assert Path(local["dataset"]).read_bytes() == ROWS
    assert local["steps"][0]["calibration_dataset"] == local["dataset"]
    assert local["steps"][1] == {"pass": "onnx_export"}
    assert local["tokenizer"] == "sentence-transformers/all-MiniLM-L6-v2"  # hub ids pass through
    assert job.recipe["model"] == entry.reference  # the job's own recipe is not changed


def test_built_in_references_pass_through_unchanged(tmp_path):
    recipe = {"model": "zoo:minilm", "dataset": "zoo:pydoc-retrieval", "steps": [{"pass": "gptq"}]}

    assert materialize_inputs(SimpleNamespace(recipe=recipe), tmp_path, cache_dir=tmp_path / "cache") == recipe
    assert not (tmp_path / "cache").exists()


def test_a_changed_object_fails_with_the_sha256_mismatch(owner, team, tmp_path):
    dataset = stored_dataset(owner, team)
    stored = StoredInput.parse(dataset_reference(dataset))
    # Someone rewrites the object in storage after the upload was recorded.
    default_storage.delete(stored.name)
    assert default_storage.save(stored.name, ContentFile(ROWS.replace(b"mutable", b"frozen"))) == stored.name

    with pytest.raises(StoredInputError) as raised:
        fetch_dataset(stored, tmp_path / "cache")

    message = str(raised.value)
    assert f"does not match the sha256 recorded when it was uploaded (expected {stored.sha256}" in message
    assert stored.name in message
    assert not (tmp_path / "cache" / stored.sha256).exists(), "nothing unverified may enter the cache"


def test_a_missing_object_is_a_clear_error(owner, team, tmp_path):
    stored = StoredInput.parse(dataset_reference(stored_dataset(owner, team)))
    default_storage.delete(stored.name)

    with pytest.raises(StoredInputError, match=f"the stored dataset {stored.name} cannot be read"):
        fetch_dataset(stored, tmp_path / "cache")


def test_a_cached_copy_is_used_without_downloading_again(owner, team, tmp_path):
    dataset = stored_dataset(owner, team)
    entry = stored_model(owner, team)
    recipe = {"model": entry.reference, "dataset": dataset_reference(dataset)}
    cache = tmp_path / "worker-cache"
    first = materialize_inputs(SimpleNamespace(recipe=recipe), tmp_path / "job-1", cache_dir=cache)
    # Gone from storage: a second job on this host can only succeed from the cache.
    default_storage.delete(dataset.file.name)
    default_storage.delete(entry.archive.name)

    second = materialize_inputs(SimpleNamespace(recipe=recipe), tmp_path / "job-2", cache_dir=cache)

    assert second == first
    assert Path(second["dataset"]).read_bytes() == ROWS
    with pytest.raises(StoredInputError, match="cannot be read"):
        materialize_inputs(SimpleNamespace(recipe=recipe), tmp_path / "job-3", cache_dir=tmp_path / "empty-cache")


def test_a_stored_archive_with_path_traversal_is_refused_on_extraction(tmp_path):
    # An archive put into storage behind the upload checks' back (its sha256 is right).
    content = model_zip(**{"../../escaped.txt": b"x"})
    name = default_storage.save("models/planted/model.zip", ContentFile(content))
    stored = StoredInput(name=name, sha256=hashlib.sha256(content).hexdigest())
    cache = tmp_path / "deep" / "cache"

    with pytest.raises(UnsafeInputError, match="path traversal"):
        fetch_model(stored, cache)

    assert not (cache / stored.sha256).exists()
    assert not list(tmp_path.rglob("escaped.txt"))
    assert [p.name for p in cache.iterdir()] == [], "the partial download is removed"


def test_a_stored_archive_over_the_size_limit_is_not_downloaded(settings, tmp_path):
    settings.INFEROPT_UPLOAD_MAX_EXTRACTED_BYTES = 1000
    settings.INFEROPT_UPLOAD_MAX_FILES = 1
    content = model_zip(**{"padding.txt": os.urandom(1_200_000)})  # the limit allows 1 MiB of zip headers
    name = default_storage.save("models/big/model.zip", ContentFile(content))

    with pytest.raises(StoredInputError, match="over the .* limit"):
        fetch_model(StoredInput(name=name, sha256=hashlib.sha256(content).hexdigest()), tmp_path / "cache")


@pytest.mark.parametrize(
    ("reference", "problem"),
    [
        ("storage:datasets/x.jsonl", "@sha256"),
        ("storage:datasets/x.jsonl@sha256:abc", "@sha256"),
        (f"storage:../secret@sha256:{'0' * 64}", "must name an object under"),
        (f"storage:datasets/../jobs/1/a.zip@sha256:{'0' * 64}", "must name an object under"),
        (f"storage:jobs/1/a.zip@sha256:{'0' * 64}", "must name an object under"),
        (f"storage:/etc/passwd@sha256:{'0' * 64}", "must name an object under"),
        (f"storage:datasets@sha256:{'0' * 64}", "must name an object under"),
    ],
)
def test_a_bad_storage_reference_is_refused(reference, problem, tmp_path):
    with pytest.raises(StoredInputError, match=problem):
        materialize_inputs(SimpleNamespace(recipe={"model": reference}), tmp_path, cache_dir=tmp_path / "cache")


def test_a_dataset_without_a_recorded_sha256_gets_one_through_the_storage_api(team):
    from webapp.catalog.models import Dataset

    dataset = Dataset(team=team, name="old", rows=1, schema="pairs")
    dataset.file.save("old.jsonl", ContentFile(ROWS))

    reference = dataset_reference(dataset)

    assert reference == storage_reference(dataset.file.name, hashlib.sha256(ROWS).hexdigest())
    dataset.refresh_from_db()
    assert dataset.sha256 == hashlib.sha256(ROWS).hexdigest()


def test_a_local_upload_folder_is_moved_into_storage_by_the_migration(owner, team, data_dir, tmp_path):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("webapp.catalog.migrations.0004_modelentry_archive")
    folder = data_dir / "media" / "models" / "legacy"
    folder.mkdir(parents=True)
    with zipfile.ZipFile(io.BytesIO(model_zip())) as archive:
        archive.extractall(folder)
    legacy = ModelEntry.objects.create(
        team=team, name="legacy", reference=str(folder), task="feature-extraction", source="upload",
        sha256=sha256_path(folder),
    )  # fmt: skip
    gone = ModelEntry.objects.create(
        team=team, name="gone", reference=str(tmp_path / "missing"), task="feature-extraction", source="upload"
    )

    migration.store_local_uploads(apps, None)

    legacy.refresh_from_db()
    stored = StoredInput.parse(legacy.reference)
    assert stored.name == legacy.archive.name and stored.sha256 == legacy.archive_sha256
    assert sha256_path(fetch_model(stored, tmp_path / "cache")) == legacy.sha256
    gone.refresh_from_db()
    assert gone.reference == str(tmp_path / "missing") and not gone.archive


def test_a_web_host_without_the_cached_copy_fetches_it_for_estimates(owner, team, data_dir):
    import shutil

    entry = stored_model(owner, team)
    cached = local_model_folder(entry)
    shutil.rmtree(cached)  # another web host: only the storage has the model

    folder = local_model_folder(entry)

    assert folder == cached and sha256_path(folder) == entry.sha256
