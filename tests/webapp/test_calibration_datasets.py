"""A pass's ``calibration_dataset`` over the web: ``dataset:<id>`` of one's team, never a path."""

from __future__ import annotations

import json

import pytest
from django.core.files.base import ContentFile

from tests.webapp.helpers import api_client_for, json_body
from webapp.catalog.models import Dataset
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db


def submit(user, calibration):
    body = {"model": "zoo:minilm", "steps": [{"pass": "gptq", "calibration_dataset": calibration}]}
    return api_client_for(user).post("/api/v1/jobs", data=json.dumps(body), content_type="application/json")


def calibration_set(team) -> Dataset:
    dataset = Dataset(team=team, name="calibration", rows=1, schema="text")
    dataset.file.save("calibration.jsonl", ContentFile(b'{"text": "Some calibration text."}\n'))
    return dataset


def test_a_path_is_refused(owner, team, demo_model):
    response = submit(owner, "/etc/passwd")
    assert response.status_code == 400
    assert "calibration_dataset must be 'dataset:<id>'" in json_body(response)["error"]
    assert Job.objects.count() == 0


def test_a_team_dataset_becomes_its_storage_reference(owner, team, demo_model):
    dataset = calibration_set(team)
    response = submit(owner, f"dataset:{dataset.pk}")
    assert response.status_code == 201, response.content
    [step] = Job.objects.get().recipe["steps"]
    dataset.refresh_from_db()
    # Workers fetch it through the storage API (workers/inputs.py), never by a path on the web host.
    assert step["calibration_dataset"] == f"storage:{dataset.file.name}@sha256:{dataset.sha256}"


def test_another_teams_dataset_is_unknown(outsider, owner, team, demo_model):
    dataset = calibration_set(team)
    response = submit(outsider, f"dataset:{dataset.pk}")
    assert response.status_code == 400
    assert "unknown dataset" in json_body(response)["error"]


def test_the_built_in_calibration_text_needs_no_reference(owner, team, demo_model):
    assert submit(owner, None).status_code == 201
    assert submit(owner, "zoo:tiny-lm-calibration").status_code == 201
