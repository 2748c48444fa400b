"""Personas and helpers for web tests.

owner and teammate are members of team "acme"; outsider belongs to "globex";
reviewer is a reviewer and team_admin an admin of "acme".
Nothing is ever sent to a broker: ``webapp.jobs.services.celery_app`` is
replaced by a recorder for every test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile

from optimizers.capabilities import pass_support, probe
from optimizers.passes import all_passes
from tests.webapp.helpers import FakeCelery, sample_report, zip_bytes
from webapp.accounts.models import Membership, Team
from webapp.catalog.services import ensure_demo_models
from webapp.fleet.models import WorkerNode
from webapp.jobs.models import Artifact, Job


@pytest.fixture(autouse=True)
def _isolated(data_dir: Path, settings: Any) -> None:
    settings.INFEROPT_UPLOAD_MAX_BYTES = 50 * 1024**2
    settings.INFEROPT_UPLOAD_MAX_EXTRACTED_BYTES = 100 * 1024**2
    # Test users need no slow, strong password hashing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def fake_celery(monkeypatch) -> FakeCelery:
    fake = FakeCelery()
    monkeypatch.setattr("webapp.jobs.services.celery_app", lambda: fake)
    return fake


@pytest.fixture
def team(db) -> Team:
    return Team.objects.create(name="acme")


@pytest.fixture
def other_team(db) -> Team:
    return Team.objects.create(name="globex")


def _member(django_user_model, username: str, team: Team, role: str = Membership.Role.MEMBER):
    user = django_user_model.objects.create_user(username, password="pw-" + username)
    Membership.objects.create(user=user, team=team, role=role)
    return user


@pytest.fixture
def owner(django_user_model, team):
    return _member(django_user_model, "alice", team)


@pytest.fixture
def teammate(django_user_model, team):
    return _member(django_user_model, "bob", team)


@pytest.fixture
def reviewer(django_user_model, team):
    return _member(django_user_model, "rita", team, Membership.Role.REVIEWER)


@pytest.fixture
def team_admin(django_user_model, team):
    return _member(django_user_model, "adam", team, Membership.Role.ADMIN)


@pytest.fixture
def outsider(django_user_model, other_team):
    return _member(django_user_model, "charlie", other_team)


@pytest.fixture
def demo_model(db):
    return ensure_demo_models()[0]


@pytest.fixture
def make_job(demo_model):
    """A job of ``team`` (status and extra fields as given)."""

    def make(team: Team, submitter=None, **fields: Any) -> Job:
        values = {"name": "test job", "recipe": {"model": "zoo:minilm", "steps": []}, **fields}
        return Job.objects.create(team=team, submitter=submitter, model=demo_model, **values)

    return make


@pytest.fixture
def finished_job(make_job, team, owner) -> Job:
    """A succeeded job with a report and two artifacts (the final one last)."""
    job = make_job(
        team, owner, status=Job.Status.SUCCEEDED, progress=100, stage="done", report=sample_report(),
        gate_outcome="needs_approval",
    )  # fmt: skip
    for order, (name, final) in enumerate([("onnx_export", False), ("ort_quantize_dynamic", True)], start=1):
        artifact = Artifact(job=job, name=name, format="onnx", order=order, is_final=final, sha256=f"{order:064x}")
        artifact.file.save(f"{order}-{name}.zip", ContentFile(zip_bytes({"model.onnx": b"onnx" * order})), save=False)
        artifact.size_bytes = artifact.file.size
        artifact.save()
    return job


# Worker-registry rows written the way workers write them (a real ``probe()`` of this
# machine); the GPU worker is this machine's probe plus an H100 and TensorRT.
H100 = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "compute_capability": [9, 0], "memory_mb": 81_559}


@pytest.fixture(scope="module")
def cpu_probe() -> dict:
    return probe(hostname="celery@cpu-1", queues=["cpu"], gpus=[])


@pytest.fixture
def cpu_worker(cpu_probe) -> WorkerNode:
    return WorkerNode.objects.record("celery@cpu-1", ["cpu"], cpu_probe, started=True)


@pytest.fixture
def gpu_worker(cpu_probe) -> WorkerNode:
    capabilities = {**cpu_probe, "gpus": [H100], "packages": sorted({*cpu_probe["packages"], "tensorrt"})}
    capabilities["passes"] = pass_support(all_passes(), capabilities)
    return WorkerNode.objects.record("celery@h100-1", ["gpu", "gpu.sm90"], capabilities, started=True)
