"""REST API for jobs: submit a recipe, read it back, cancel; bad recipes are 400 with a reason."""

from __future__ import annotations

import json

import pytest

from tests.webapp.helpers import api_client_for, json_body
from webapp.catalog.models import Dataset, ModelEntry
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db

RECIPE = {
    "name": "minilm int8",
    "model": "zoo:minilm",
    "steps": [{"pass": "onnx_export", "opset": 17}, {"pass": "ort_quantize_dynamic", "per_channel": True}],
    "gate": [{"metric": "cosine", "kind": "absolute_drop", "threshold": 0.01}],
    "benchmark": {"batch_sizes": [1, 8], "seq_len": 64},
}


def post(client, body, **extra):
    return client.post("/api/v1/jobs", data=json.dumps(body), content_type="application/json", **extra)


def test_submit_creates_a_queued_job_and_enqueues_after_commit(
    owner, team, demo_model, fake_celery, django_capture_on_commit_callbacks
):
    client = api_client_for(owner)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post(client, RECIPE)
    assert response.status_code == 201, response.content
    body = json_body(response)
    assert body["status"] == "queued"
    job = Job.objects.get(pk=body["id"])
    assert (job.team, job.submitter, job.model, job.name) == (team, owner, demo_model, "minilm int8")
    assert job.recipe["model"] == "zoo:minilm"
    assert [step["pass"] for step in job.recipe["steps"]] == ["onnx_export", "ort_quantize_dynamic"]
    assert job.recipe["steps"][0]["opset"] == 17
    assert job.recipe["benchmark"]["seq_len"] == 64
    assert job.queue == "cpu"
    assert len(callbacks) == 1
    assert fake_celery.sent == [
        {
            "name": "inferopt.run_job",
            "args": [job.pk],
            "queue": "cpu",
            "task_id": job.celery_task_id,
            "retry": True,
            "retry_policy": fake_celery.sent[0]["retry_policy"],
        }
    ]


def test_nothing_is_sent_before_commit(owner, demo_model, fake_celery, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert post(api_client_for(owner), RECIPE).status_code == 201
    assert len(callbacks) == 1
    assert fake_celery.sent == []


def test_unreachable_queue_fails_the_job_instead_of_the_request(
    owner, demo_model, fake_celery, django_capture_on_commit_callbacks
):
    fake_celery.fail = ConnectionError("Error 111 connecting to 127.0.0.1:6379")
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api_client_for(owner), RECIPE)
    assert response.status_code == 201
    job = Job.objects.get(pk=json_body(response)["id"])
    assert job.status == "failed"
    assert job.error.startswith("could not reach the queue")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"steps": [{"pass": "no_such_pass"}]}, "unknown pass 'no_such_pass'"),
        ({"steps": [{"pass": "onnx_export", "opset": 99}]}, "opset"),
        ({"steps": [{"pass": "onnx_export", "bogus": 1}]}, "bogus"),
        ({"steps": [{"pass": "ort_quantize_dynamic"}]}, "takes onnx models, but receives hf"),
        ({"steps": [{"pass": "onnx_export"}, {"pass": "torch_quantize_dynamic"}]}, "receives onnx"),
        ({"benchmark": {"batch_sizes": [0]}}, "batch_sizes"),
        ({"gate": [{"metric": "cosine", "kind": "vibes", "threshold": 1}]}, "kind"),
        ({"model": "zoo:nope"}, "unknown demo model"),
        ({"model": "/etc/passwd"}, "file paths are refused"),
        ({"model": "model:999999"}, "unknown model"),
        ({"model": None}, "'model' is required"),
        ({"dataset": "/etc/passwd"}, "dataset"),
        ({"tokenizer": "/etc"}, "tokenizer"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_bad_recipes_are_400_with_the_reason(owner, demo_model, change, message):
    response = post(api_client_for(owner), {**RECIPE, **change})
    assert response.status_code == 400, response.content
    assert message in json_body(response)["error"]
    assert not Job.objects.exists()


def test_body_must_be_an_object(owner):
    response = post(api_client_for(owner), [1, 2])
    assert response.status_code == 400
    assert "error" in json_body(response)


def test_malformed_json_is_400(owner):
    response = api_client_for(owner).post("/api/v1/jobs", data="{nope", content_type="application/json")
    assert response.status_code == 400
    assert "JSON" in json_body(response)["error"]


def test_another_teams_model_is_refused(owner, other_team):
    foreign = ModelEntry.objects.create(team=other_team, name="x", reference="/x", task="feature-extraction",
                                        source="upload")  # fmt: skip
    response = post(api_client_for(owner), {**RECIPE, "model": f"model:{foreign.pk}"})
    assert response.status_code == 400
    assert "unknown model" in json_body(response)["error"]


def test_uploaded_model_reference_becomes_its_folder(owner, team):
    entry = ModelEntry.objects.create(team=team, name="mine", reference="/data/models/abc", task="feature-extraction",
                                      source="upload")  # fmt: skip
    response = post(api_client_for(owner), {"model": f"model:{entry.pk}", "steps": []})
    assert response.status_code == 201, response.content
    job = Job.objects.get(pk=json_body(response)["id"])
    assert job.recipe["model"] == "/data/models/abc"
    assert job.recipe["task"] == "feature-extraction"


def test_dataset_reference_becomes_its_storage_reference(owner, team, demo_model):
    from django.core.files.base import ContentFile

    dataset = Dataset(team=team, name="d", rows=1, schema="text")
    dataset.file.save("d.jsonl", ContentFile(b'{"text": "x"}\n'))
    response = post(api_client_for(owner), {**RECIPE, "dataset": f"dataset:{dataset.pk}"})
    assert response.status_code == 201, response.content
    job = Job.objects.get(pk=json_body(response)["id"])
    assert job.dataset == dataset
    dataset.refresh_from_db()
    assert job.recipe["dataset"] == f"storage:{dataset.file.name}@sha256:{dataset.sha256}"


def test_team_can_be_chosen_and_must_be_the_users(owner, other_team, team, demo_model):
    client = api_client_for(owner)
    assert post(client, {**RECIPE, "team": "acme"}).status_code == 201
    response = post(client, RECIPE, QUERY_STRING="team=globex")
    assert response.status_code == 400
    assert "not a member of team 'globex'" in json_body(response)["error"]


def test_user_without_team_gets_400(django_user_model, demo_model):
    loner = django_user_model.objects.create_user("loner")
    response = post(api_client_for(loner), RECIPE)
    assert response.status_code == 400
    assert "not a member of any team" in json_body(response)["error"]


def test_job_detail_has_status_report_and_artifacts_final_last(finished_job, teammate):
    body = json_body(api_client_for(teammate).get(f"/api/v1/jobs/{finished_job.pk}"))
    expected = {"id", "name", "status", "stage", "progress", "error", "created_at", "started_at", "finished_at",
                "gate_outcome", "report", "artifacts"}  # fmt: skip
    assert expected <= set(body)
    assert body["status"] == "succeeded"
    assert body["gate_outcome"] == "needs_approval"
    assert body["report"]["variants"][0]["name"] == "baseline"
    assert [a["name"] for a in body["artifacts"]] == ["onnx_export", "ort_quantize_dynamic"]
    final = body["artifacts"][-1]
    assert set(final) >= {"name", "sha256", "size_bytes", "url"}
    assert final["url"] == f"/jobs/{finished_job.pk}/artifacts/{finished_job.artifacts.last().pk}/download"


def test_job_list_is_newest_first(owner, team, make_job):
    first, second = make_job(team, name="first"), make_job(team, name="second")
    body = json_body(api_client_for(owner).get("/api/v1/jobs"))
    assert [row["id"] for row in body] == [second.pk, first.pk]


def test_cancel_a_queued_job_cancels_and_revokes(owner, team, make_job, fake_celery):
    job = make_job(team, celery_task_id="task-1")
    response = api_client_for(owner).post(f"/api/v1/jobs/{job.pk}/cancel")
    assert response.status_code == 200
    assert json_body(response)["status"] == "cancelled"
    job.refresh_from_db()
    assert job.cancel_requested and job.finished_at is not None
    assert fake_celery.revoked == ["task-1"]


def test_cancel_a_running_job_sets_the_flag_only(owner, team, make_job, fake_celery):
    job = make_job(team, status="running")
    body = json_body(api_client_for(owner).post(f"/api/v1/jobs/{job.pk}/cancel"))
    assert body["status"] == "running"
    job.refresh_from_db()
    assert job.cancel_requested
    assert fake_celery.revoked == []


def test_cancel_a_finished_job_changes_nothing(owner, finished_job):
    body = json_body(api_client_for(owner).post(f"/api/v1/jobs/{finished_job.pk}/cancel"))
    assert body["status"] == "succeeded"
    finished_job.refresh_from_db()
    assert not finished_job.cancel_requested


def test_session_auth_works_for_the_browser(owner, demo_model):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert client.get("/api/v1/jobs").status_code == 200
    # Unsafe methods with a session need the CSRF token, like any form.
    assert post(client, RECIPE).status_code == 403
