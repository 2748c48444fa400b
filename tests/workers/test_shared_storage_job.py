"""Web and worker share uploads only through S3-compatible object storage (moto's S3 server).

The web side (this test process) and a worker of its own are both configured with
``INFEROPT_S3_*`` (``webapp.deployment.s3_storage``, django-storages) and have
*different* data folders: the worker cannot see the web host's files, so the job
succeeds only if it fetched the uploaded model and dataset through the storage API
(``workers/inputs.py``) and published its artifact there too.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from optimizers.hashing import sha256_path
from tests.support.services import (
    CeleryWorker,
    RedisServer,
    database_url,
    free_port,
    start_celery_worker,
    start_redis,
)
from webapp.accounts.models import Membership, Team
from webapp.catalog.services import upload_dataset, upload_model
from webapp.catalog.storage import StoredInput
from webapp.deployment import s3_storage
from webapp.jobs.models import Job
from webapp.jobs.services import submit_job

#: The queue routing picks for the recipe; this worker has a Redis server of its own, so no other worker sees it.
QUEUE = "cpu"
BUCKET = "inferopt-test"
PAIRS = [
    ("what is a list", "a list is a mutable sequence of items"),
    ("what is a tuple", "a tuple is an immutable sequence"),
    ("what is a dict", "a dict maps keys to values"),
    ("what is a set", "a set holds unique items without order"),
    ("how do loops work", "a for loop runs once for each item"),
    ("what is a function", "a function is a named block of code"),
]


@pytest.fixture(scope="module")
def s3_environ() -> Iterator[dict[str, str]]:
    """moto's S3 server on a free port, with an empty bucket; the ``INFEROPT_S3_*`` variables that reach it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    environ = {
        "INFEROPT_S3_BUCKET": BUCKET,
        "INFEROPT_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "INFEROPT_S3_REGION": "us-east-1",
        "INFEROPT_S3_ACCESS_KEY_ID": "testing",
        "INFEROPT_S3_SECRET_ACCESS_KEY": "testing",
        "INFEROPT_S3_ADDRESSING_STYLE": "path",
        "INFEROPT_S3_USE_SSL": "false",
    }
    client = boto3.client(
        "s3",
        endpoint_url=environ["INFEROPT_S3_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=BUCKET)
    yield environ
    server.stop()


@pytest.fixture(scope="module")
def s3_redis(tmp_path_factory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("s3-redis"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3_worker(
    django_db_setup: None, s3_redis: RedisServer, s3_environ: dict[str, str], tmp_path_factory
) -> Iterator[CeleryWorker]:
    """A worker with its own broker and data folder, whose default storage is the S3 server."""
    from django.db import connection

    data_dir = tmp_path_factory.mktemp("s3-worker-data")
    worker = start_celery_worker(
        redis_url=s3_redis.url,
        database_url=database_url(connection.settings_dict),
        data_dir=data_dir,
        log_path=data_dir / "worker.log",
        queues=QUEUE,
        env=s3_environ,
    )
    yield worker
    worker.stop()


@pytest.fixture
def s3_default_storage(settings: Any, s3_environ: dict[str, str]) -> None:
    """This (web) process stores uploads and reads artifacts in the same bucket."""
    settings.STORAGES = {**settings.STORAGES, "default": s3_storage(s3_environ)}
    assert default_storage.__class__.__name__ == "S3Storage"  # Django resets the lazy storage on the change


def tiny_bert_with_tokenizer_zip(folder: Path) -> bytes:
    """A real (random) one-layer BERT with a WordPiece tokenizer of single letters, zipped."""
    import io

    from transformers import BertConfig, BertModel, BertTokenizerFast

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *(f"##{c}" for c in letters), ".", ","]
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=512)  # fmt: skip
    BertModel(config).save_pretrained(folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.rglob("*")):
            archive.write(file, file.relative_to(folder).as_posix())
    return buffer.getvalue()


def publish(redis_url: str, job: Job) -> None:
    from workers.tasks import run_job

    with run_job.app.connection_for_write(redis_url) as connection:
        run_job.apply_async((job.pk,), connection=connection, queue=QUEUE)


def wait_for_final(worker: CeleryWorker, job_id: int, timeout: float = 600.0) -> Job:
    import time

    deadline = time.monotonic() + timeout
    while True:
        job = Job.objects.get(pk=job_id)
        if job.is_final:
            return job
        if not worker.is_alive() or time.monotonic() > deadline:
            pytest.fail(f"job {job_id} is {job.status} ({job.stage}):\n{worker.log_tail()}")
        time.sleep(0.25)


def files_in(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_job_on_uploads_reaches_them_only_through_object_storage(
    s3_worker, s3_default_storage, s3_redis, data_dir, django_user_model, monkeypatch, tmp_path
):
    team = Team.objects.create(name="storage")
    owner = django_user_model.objects.create_user("olga")
    Membership.objects.create(user=owner, team=team)
    entry = upload_model(
        owner, team, "tiny bert", ContentFile(tiny_bert_with_tokenizer_zip(tmp_path / "bert"), "m.zip")
    )
    rows = "".join(json.dumps({"query": q, "passage": p}) + "\n" for q, p in PAIRS).encode()
    dataset = upload_dataset(owner, team, "pairs", ContentFile(rows, name="pairs.jsonl"))
    # The web process sends nothing to the broker here: the job goes to this test's own worker below.
    monkeypatch.setattr("webapp.jobs.services.enqueue_job", lambda job_id: True)
    recipe = {
        "steps": [{"pass": "onnx_export"}],
        "benchmark": {"batch_sizes": [1], "seq_len": 16},
        "evaluation": {"max_samples": 8},
        "profile": False,
    }
    job = submit_job(owner, team, entry, recipe, dataset=dataset)
    model_ref, dataset_ref = StoredInput.parse(job.recipe["model"]), StoredInput.parse(job.recipe["dataset"])
    # Uploads are objects in the bucket, not files of the web host.
    assert default_storage.exists(model_ref.name) and default_storage.exists(dataset_ref.name)
    assert files_in(data_dir / "media") == []

    publish(s3_redis.url, job)
    job = wait_for_final(s3_worker, job.pk)

    assert job.status == Job.Status.SUCCEEDED, f"{job.error}\n{job.traceback}\n{s3_worker.log_tail()}"
    assert job.recipe["model"] == model_ref.reference, "the row keeps the storage references"
    # The worker fetched both uploads into its own cache, verified (the model is the folder that was uploaded) ...
    cache = s3_worker.data_dir / "inputs"
    assert sha256_path(cache / model_ref.sha256 / "model") == entry.sha256
    assert (cache / dataset_ref.sha256 / "dataset.jsonl").read_bytes() == rows
    # ... and published the artifact to the bucket: nothing under its own media folder.
    assert files_in(s3_worker.data_dir / "media") == []
    (artifact,) = job.artifacts.all()
    assert default_storage.exists(artifact.file.name)
    with artifact.file.open("rb") as handle, zipfile.ZipFile(handle) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert "model.onnx" in archive.namelist()
    assert manifest["job"] == job.pk
    assert manifest["data"]["dataset_file_sha256"] == dataset.sha256
    report = job.report
    assert report["variants"][0]["sha256"] == entry.sha256, "the baseline is the uploaded model"
