"""TensorRT engine artifacts: the job page says which GPU each was built for, and a deployment
download for another GPU is refused with a message (engines are not portable)."""

from __future__ import annotations

import json

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from optimizers.passes.tensorrt_build import ShapeRange, engine_metadata
from tests.webapp.helpers import api_client_for, client_for, zip_bytes
from webapp.fleet.engines import parse_capability
from webapp.jobs.models import Artifact, Job

pytestmark = pytest.mark.django_db

ENGINE = engine_metadata(
    gpu_name="NVIDIA H100 80GB HBM3",
    compute_capability=(9, 0),
    tensorrt_version="10.3.0",
    cuda_version="12.4",
    precision="fp16",
    profile={"input_ids": ShapeRange(min=[1, 1], opt=[8, 128], max=[32, 512])},
)
BUILT_FOR = "NVIDIA H100 80GB HBM3 (compute capability 9.0), TensorRT 10.3.0, CUDA 12.4"


@pytest.fixture
def engine_job(make_job, team, owner):
    """A passing job whose final artifact is a TensorRT engine (engine.json inside the zip, no report details)."""
    job = make_job(team, owner, status=Job.Status.SUCCEEDED, progress=100, stage="done", gate_outcome="pass")
    artifact = Artifact(job=job, name="tensorrt-fp16", format="tensorrt", order=2, is_final=True, sha256="a" * 64)
    content = zip_bytes({"model.engine": b"plan", "engine.json": json.dumps(ENGINE).encode()})
    artifact.file.save("2-tensorrt-fp16.zip", ContentFile(content), save=False)
    artifact.size_bytes = artifact.file.size
    artifact.save()
    return job, artifact


def url(job, artifact, query=""):
    return reverse("jobs:artifact_download", args=[job.pk, artifact.pk]) + query


def test_job_page_says_which_gpu_the_engine_was_built_for(owner, engine_job):
    job, _ = engine_job
    page = client_for(owner).get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert f"built for {BUILT_FOR}" in page


def test_deploy_download_without_a_target_gpu_asks_for_one(owner, engine_job):
    job, artifact = engine_job
    response = client_for(owner).get(url(job, artifact))
    assert response.status_code == 400
    page = response.content.decode()
    assert f"This TensorRT engine was built for {BUILT_FOR}. Engines are not portable" in page
    assert 'name="gpu"' in page and 'name="cc"' in page


def test_deploy_download_for_another_architecture_is_refused(owner, engine_job):
    job, artifact = engine_job
    response = api_client_for(owner).get(url(job, artifact, "?gpu=NVIDIA+A100-SXM4-80GB&cc=8.0"))
    assert response.status_code == 409
    body = json.loads(response.content)
    assert body["built_for"] == BUILT_FOR
    assert body["error"].startswith("TensorRT engines are not portable across GPU architectures")


def test_deploy_download_for_the_same_gpu_is_served(owner, engine_job):
    job, artifact = engine_job
    response = client_for(owner).get(url(job, artifact, "?gpu=NVIDIA+H100+80GB+HBM3&cc=9.0&tensorrt=10.3.0"))
    assert response.status_code == 200
    assert response["X-InferOpt-Download-Purpose"] == "deploy"


def test_inspection_downloads_need_no_target(owner, engine_job):
    job, artifact = engine_job
    assert client_for(owner).get(url(job, artifact, "?purpose=inspect")).status_code == 200


def test_other_formats_are_unaffected(owner, team, make_job):
    job = make_job(team, owner, status=Job.Status.SUCCEEDED, progress=100, stage="done", gate_outcome="pass")
    artifact = Artifact(job=job, name="onnx_export", format="onnx", order=1, is_final=True, sha256="b" * 64)
    artifact.file.save("1-onnx.zip", ContentFile(zip_bytes({"model.onnx": b"onnx"})), save=False)
    artifact.save()
    assert client_for(owner).get(url(job, artifact)).status_code == 200


@pytest.mark.parametrize(
    "text, expected", [("9.0", (9, 0)), ("sm90", (9, 0)), ("sm_86", (8, 6)), ("86", (8, 6)), ("x", None)]
)
def test_parse_capability(text, expected):
    assert parse_capability(text) == expected
