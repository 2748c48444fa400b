"""Search mode: POST /api/v1/jobs with "mode": "search" (400 with a reason on bad input), the new-job page's
Search tab, and a search job's page (candidates table, Pareto mark, best, chart) from a stored report."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from tests.webapp.helpers import api_client_for, client_for, json_body, sample_report
from webapp.jobs.models import Job
from webapp.jobs.results import build_results
from webapp.jobs.search_results import build_search_results

pytestmark = pytest.mark.django_db

SEARCH = {
    "mode": "search",
    "name": "minilm search",
    "model": "zoo:minilm",
    "axes": [["none", {"pass": "onnx_export"}], ["none", {"pass": "ort_quantize_dynamic", "per_channel": True}]],
    "budget_s": 120,
    "benchmark": {"batch_sizes": [1], "seq_len": 16},
    "evaluation": {"max_samples": 8},
}


def post(client, body):
    return client.post("/api/v1/jobs", data=json.dumps(body), content_type="application/json")


def test_search_submission_stores_the_space_and_enqueues(owner, team, demo_model, fake_celery,
                                                         django_capture_on_commit_callbacks):  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api_client_for(owner), SEARCH)
    assert response.status_code == 201, response.content
    job = Job.objects.get(pk=json_body(response)["id"])
    assert (job.model, job.team, job.name, job.queue) == (demo_model, team, "minilm search", "cpu")
    assert job.recipe["mode"] == "search"
    assert job.recipe["model"] == "zoo:minilm" and job.recipe["task"] == demo_model.task
    assert job.recipe["axes"] == SEARCH["axes"] and job.recipe["budget_s"] == 120
    assert job.recipe["evaluation"]["max_samples"] == 8
    assert [message["args"] for message in fake_celery.sent] == [[job.pk]]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"axes": None}, "axes"),
        ({"axes": []}, "axes"),
        ({"axes": [[]]}, "axes"),
        ({"budget_s": 0}, "budget_s"),
        ({"budget_s": "soon"}, "budget_s"),
        ({"unknown_key": 1}, "unknown_key"),
        ({"axes": [["none", {"pass": "no_such_pass"}]]}, "no_such_pass"),
        ({"axes": [["none", {"pass": "ort_quantize_dynamic"}]]}, "no combination"),  # onnx-only pass on an hf model
        ({"model": "/etc/passwd"}, "file paths are refused"),
        ({"model": "zoo:nope"}, "unknown demo model"),
        ({"mode": "grid"}, "unknown mode"),
    ],
)
def test_bad_search_spaces_are_400_with_a_reason(owner, demo_model, fake_celery, change, message):
    response = post(api_client_for(owner), {**SEARCH, **change})
    assert response.status_code == 400, response.content
    assert message in json.dumps(json_body(response))
    assert not Job.objects.exists()
    assert fake_celery.sent == []


def test_search_tab_submits_a_search_job(owner, team, demo_model, fake_celery):
    client = client_for(owner)
    assert 'href="/jobs/new/search/"' in client.get(reverse("jobs:new")).content.decode()
    page = client.get(reverse("jobs:new_search")).content.decode()
    assert "ort_quantize_dynamic, per_channel: true" in page  # the default MiniLM axes
    data = {"search-team": team.pk, "search-model": demo_model.pk, "search-name": "", "search-budget_s": 300,
            "search-batch_sizes": "1", "search-seq_len": 32,
            "search-axes": "- [none, {pass: onnx_export}]\n- [none, {pass: ort_quantize_dynamic}]\n"}  # fmt: skip
    response = client.post(reverse("jobs:new_search"), data)
    assert response.status_code == 302, response.content.decode()[-2000:]
    job = Job.objects.get()
    assert job.recipe["mode"] == "search" and job.recipe["budget_s"] == 300
    assert job.recipe["benchmark"]["seq_len"] == 32
    assert job.name.endswith("search (2 candidates)")


def test_search_tab_shows_errors(owner, team, demo_model):
    data = {"search-team": team.pk, "search-model": demo_model.pk, "search-budget_s": 300,
            "search-batch_sizes": "1", "search-seq_len": 32,
            "search-axes": "- [none, {pass: ort_quantize_dynamic}]"}  # fmt: skip
    response = client_for(owner).post(reverse("jobs:new_search"), data)
    assert response.status_code == 400
    assert "no combination" in response.content.decode()
    response = client_for(owner).post(reverse("jobs:new_search"), {**data, "search-axes": "[: nope"})
    assert response.status_code == 400 and "not valid YAML" in response.content.decode()
    assert not Job.objects.exists()


def sample_search_report() -> dict:
    """A stored search report: baseline; export (pass, ★, best); INT8 (needs approval, ★); not run; skipped."""
    baseline, export, int8 = sample_report()["variants"]
    gate = sample_report()["gate"]
    return {
        "kind": "search",
        "model": "zoo:minilm",
        "task": "feature-extraction",
        "budget_s": 120.0,
        "elapsed_s": 118.5,
        "objectives": {"latency_ms": "min", "size_bytes": "min", "cosine": "max"},
        "baseline": baseline,
        "candidates": [
            {"steps": [{"pass": "onnx_export"}], "status": "done",
             "variant": {**export, "gate": {**gate, "outcome": "pass"}}, "gate_outcome": "pass",
             "on_pareto_front": True},
            {"steps": [{"pass": "onnx_export"}, {"pass": "ort_quantize_dynamic", "per_channel": True}],
             "status": "done", "variant": {**int8, "gate": gate}, "gate_outcome": "needs_approval",
             "on_pareto_front": True},
            {"steps": [{"pass": "torch_quantize_dynamic"}, {"pass": "onnx_export"}], "status": "not_run",
             "reason": "time budget spent"},
            {"steps": [{"pass": "ort_quantize_dynamic"}], "status": "skipped",
             "reason": "ort_quantize_dynamic takes onnx models, but receives hf"},
        ],
        "best_passing": 0,
        "near_misses": [1],
    }  # fmt: skip


def test_search_job_page_shows_the_candidates_table_and_chart(owner, team, make_job):
    job = make_job(team, owner, status=Job.Status.SUCCEEDED, report=sample_search_report(), gate_outcome="pass",
                   recipe={"mode": "search", "model": "zoo:minilm", "axes": [], "budget_s": 120})  # fmt: skip
    assert build_results(job.report) is None  # not mistaken for a recipe report (gate table, cost panel)
    response = client_for(owner).get(reverse("jobs:detail", args=[job.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="candidates-table"' in page and 'id="gate-table"' not in page
    table = page.split('id="candidates-table"')[1].split("</table>")[0]
    rows = table.split("<tbody>")[1].split("</tr>")[:-1]
    assert len(rows) == 4
    assert "onnx_export" in rows[0] and "★" in rows[0] and ">best<" in rows[0] and "badge-pass" in rows[0]
    assert "per_channel=True" in rows[1] and "★" in rows[1] and "near-miss" in rows[1] and "needs approval" in rows[1]
    assert "<td>34</td>" in rows[0] and "MB" in rows[0] and "0.993" in rows[1]
    assert "time budget spent" in rows[2] and "not run" in rows[2] and "★" not in rows[2]
    assert "takes onnx models" in rows[3] and "skipped" in rows[3]
    assert 'id="chart-search-tradeoff"' in page and "plotly.min.js" in page
    figure = build_search_results(job.report).figure
    front = next(trace for trace in figure["data"] if trace["name"] == "Pareto front")
    assert len(front["x"]) == 2  # export (faster? no: better cosine) and INT8 (faster) are both on the front


def test_a_broken_search_report_does_not_break_the_page(owner, team, make_job):
    job = make_job(team, owner, status=Job.Status.SUCCEEDED, report={"kind": "search", "candidates": "?"},
                   recipe={"mode": "search", "model": "zoo:minilm", "axes": [], "budget_s": 1})  # fmt: skip
    assert client_for(owner).get(reverse("jobs:detail", args=[job.pk])).status_code == 200
