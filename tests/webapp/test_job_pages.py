"""Job pages: the generated new-job form, list, detail with live status and results, cancel."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.webapp.helpers import client_for
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db


def tag(page: str, name: str) -> str:
    """The first <input>/<select> tag of the field called ``name``."""
    match = re.search(rf'<(?:input|select)[^>]*name="{re.escape(name)}"[^>]*>', page)
    assert match, f"no field {name}"
    return match.group(0)


def form_data(team, model, **extra):
    data = {"team": team.pk, "model": model.pk, "batch_sizes": "1,8", "seq_len": 128, "name": ""}
    # The defaults a browser would send for every pass (unchecked boxes are simply absent).
    data.update({"p__onnx_export__order": 10, "p__onnx_export__cfg__opset": 18,
                 "p__onnx_export__cfg__exporter": '"dynamo"', "p__onnx_export__cfg__atol": 0.001,
                 "p__ort_optimize__order": 20, "p__ort_optimize__cfg__level": '"all"',
                 "p__ort_quantize_dynamic__order": 30, "p__ort_quantize_dynamic__cfg__per_channel": "on",
                 "p__ort_quantize_dynamic__cfg__weight_type": '"qint8"',
                 "p__torch_quantize_dynamic__order": 40, "p__torch_quantize_dynamic__cfg__per_channel": "on",
                 "p__torch_quantize_dynamic__cfg__engine": '"x86"'})  # fmt: skip
    data.update(extra)
    return data


def test_new_job_form_is_generated_from_the_pass_registry(owner, demo_model):
    page = client_for(owner).get(reverse("jobs:new") + f"?model={demo_model.pk}").content.decode()
    for name in ("onnx_export", "ort_optimize", "ort_quantize_dynamic", "torch_quantize_dynamic"):
        assert f'name="p__{name}__enabled"' in page
    # integer with bounds → number input with min/max and the default
    opset = tag(page, "p__onnx_export__cfg__opset")
    assert all(part in opset for part in ('type="number"', 'value="18"', 'min="17"', 'max="21"'))
    # enum → select; boolean → checkbox (checked by default); array of enums → checkboxes
    assert tag(page, "p__ort_optimize__cfg__level").startswith("<select")
    per_channel = tag(page, "p__ort_quantize_dynamic__cfg__per_channel")
    assert 'type="checkbox"' in per_channel and "checked" in per_channel
    assert 'value="&quot;MatMul&quot;"' in tag(page, "p__ort_quantize_dynamic__cfg__op_types")
    assert f'<option value="{demo_model.pk}" selected>' in page


def test_submitting_the_form_builds_an_ordered_recipe(owner, team, demo_model, django_capture_on_commit_callbacks):
    data = form_data(team, demo_model, **{
        "p__ort_quantize_dynamic__enabled": "on", "p__onnx_export__enabled": "on",
        "p__onnx_export__cfg__opset": 17, "p__ort_quantize_dynamic__cfg__op_types": ['"MatMul"'],
        "gate": "cosine absolute_drop 0.01", "batch_sizes": "1, 4",
        "evaluation_samples": 32, "profile": "on",
    })  # fmt: skip
    with django_capture_on_commit_callbacks() as callbacks:
        response = client_for(owner).post(reverse("jobs:new"), data)
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("jobs:detail", args=[job.pk])
    assert len(callbacks) == 1
    steps = job.recipe["steps"]
    assert [step["pass"] for step in steps] == ["onnx_export", "ort_quantize_dynamic"]
    assert steps[0]["opset"] == 17 and steps[0]["exporter"] == "dynamo"
    assert steps[1]["op_types"] == ["MatMul"] and steps[1]["per_channel"] is True
    assert job.recipe["gate"] == [{"metric": "cosine", "kind": "absolute_drop", "threshold": 0.01}]
    assert job.recipe["benchmark"]["batch_sizes"] == [1, 4]
    assert job.recipe["evaluation"]["max_samples"] == 32 and job.recipe["profile"] is True
    assert job.name == "MiniLM-L6 (demo): onnx_export → ort_quantize_dynamic"


def test_order_numbers_decide_the_step_order(owner, team, demo_model):
    data = form_data(team, demo_model, **{
        "p__onnx_export__enabled": "on", "p__torch_quantize_dynamic__enabled": "on",
        "p__torch_quantize_dynamic__order": 1,
    })  # fmt: skip
    assert client_for(owner).post(reverse("jobs:new"), data).status_code == 302
    assert [s["pass"] for s in Job.objects.get().recipe["steps"]] == ["torch_quantize_dynamic", "onnx_export"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"p__ort_quantize_dynamic__enabled": "on"}, "takes onnx models, but receives hf"),
        ({"p__onnx_export__enabled": "on", "p__onnx_export__cfg__opset": 99}, "opset"),
        ({"gate": "cosine nonsense 0.1"}, "kind"),
        ({"gate": "only two"}, "expected &#x27;metric kind threshold&#x27;"),
        ({"batch_sizes": "one"}, "batch sizes must be integers"),
    ],
)
def test_invalid_choices_show_the_recipe_error(owner, team, demo_model, extra, message):
    response = client_for(owner).post(reverse("jobs:new"), form_data(team, demo_model, **extra))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Job.objects.exists()


def test_model_of_another_team_cannot_be_chosen(owner, team, other_team):
    from webapp.catalog.models import ModelEntry

    foreign = ModelEntry.objects.create(team=other_team, name="x", reference="/x", task="feature-extraction",
                                        source="upload")  # fmt: skip
    response = client_for(owner).post(reverse("jobs:new"), form_data(team, foreign))
    assert response.status_code == 400
    assert not Job.objects.exists()


def test_job_list_shows_the_teams_jobs_with_status_badges(owner, team, make_job, finished_job):
    make_job(team, name="still waiting")
    page = client_for(owner).get(reverse("jobs:list")).content.decode()
    assert page.index("still waiting") < page.index(finished_job.name)
    assert 'class="badge badge-queued"' in page and 'class="badge badge-succeeded"' in page


def test_active_job_page_polls_its_status(owner, team, make_job):
    job = make_job(team, status="running", stage="export", progress=42.5, log="line one\nline two\n")
    page = client_for(owner).get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert f'hx-get="{reverse("jobs:status", args=[job.pk])}"' in page
    assert 'hx-trigger="every 2s"' in page
    assert "width: 42%" in page or "width: 43%" in page
    assert "line two" in page and "export" in page
    assert 'id="cancel-job"' in page
    assert "vendor/htmx.min.js" in page


def test_status_partial_of_a_running_job_keeps_polling(owner, team, make_job):
    job = make_job(team, status="running")
    response = client_for(owner).get(reverse("jobs:status", args=[job.pk]), HTTP_HX_REQUEST="true")
    assert "hx-trigger" in response.content.decode()
    assert "HX-Refresh" not in response


def test_status_partial_of_a_finished_job_stops_polling_and_reloads(owner, team, make_job):
    job = make_job(team, status="failed", error="boom: it broke", traceback="Traceback ...\nValueError")
    response = client_for(owner).get(reverse("jobs:status", args=[job.pk]), HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert "hx-trigger" not in body
    assert response["HX-Refresh"] == "true"
    assert "boom: it broke" in body and "ValueError" in body


def test_results_render_gate_table_variants_and_charts(owner, finished_job):
    page = client_for(owner).get(reverse("jobs:detail", args=[finished_job.pk])).content.decode()
    assert 'id="gate-table"' in page
    assert 'id="gate-outcome">needs approval<' in page
    assert "recall@1" in page and "absolute drop" in page and "-0.01" in page
    assert 'id="variants-table"' in page and "ort_quantize_dynamic" in page
    for chart_id in ("chart-latency", "chart-throughput", "chart-size"):
        assert f'<div class="chart" id="{chart_id}" data-figure="{chart_id}-data">' in page
        assert f'<script id="{chart_id}-data" type="application/json">' in page
    assert "vendor/plotly.min.js" in page and "js/charts.js" in page
    assert "hx-trigger" not in page
    assert 'id="cancel-job"' not in page


def test_artifacts_are_listed_with_download_links_and_full_sha256(owner, finished_job):
    page = client_for(owner).get(reverse("jobs:detail", args=[finished_job.pk])).content.decode()
    for artifact in finished_job.artifacts.all():
        assert reverse("jobs:artifact_download", args=[finished_job.pk, artifact.pk]) in page
        assert f'<code class="sha256">{artifact.sha256}</code>' in page
    assert reverse("jobs:report_json", args=[finished_job.pk]) in page


def test_page_without_report_has_no_results(owner, team, make_job):
    job = make_job(team)
    page = client_for(owner).get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert 'id="results"' not in page and "plotly" not in page


def test_cancel_button_cancels_a_queued_job(owner, team, make_job, fake_celery):
    job = make_job(team, celery_task_id="t-9")
    response = client_for(owner).post(reverse("jobs:cancel", args=[job.pk]))
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == "cancelled" and job.cancel_requested
    assert fake_celery.revoked == ["t-9"]


def test_cancel_needs_post(owner, team, make_job):
    job = make_job(team)
    assert client_for(owner).get(reverse("jobs:cancel", args=[job.pk])).status_code == 405


def test_new_job_page_nudges_to_profile_first_and_suggests_a_recipe(client):
    from webapp.accounts.services import ensure_member

    user, _ = ensure_member("mfirst", "mfirst-team")
    client.force_login(user)
    page = client.get("/jobs/new/").content.decode()
    assert "Measure before optimizing" in page
    assert "not profiled yet" in page
    assert "INT8 first" in page and "onnx_export" in page
