"""Serving mode: POST /api/v1/jobs with "mode": "serving" (400 with a reason on bad input), the new-job page's
Serving tab, and a serving job's page (recommendation, chart, KV-cache table, Triton config, artifact) from a
stored report."""

from __future__ import annotations

import json
import zipfile
from io import BytesIO

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from optimizers.serving.analysis import ServingReport
from tests.webapp.helpers import api_client_for, client_for, json_body, zip_bytes
from webapp.catalog.services import ensure_demo_models
from webapp.jobs.models import Artifact, Job
from webapp.jobs.results import build_results
from webapp.jobs.search_results import build_search_results
from webapp.jobs.serving_results import build_serving_results

pytestmark = pytest.mark.django_db

SERVING = {
    "mode": "serving",
    "name": "digits serving",
    "model": "zoo:digits-cnn",
    "steps": [{"pass": "onnx_export"}],
    "p95_budget_ms": 20,
    "batching": {"max_batch_sizes": [1, 4], "max_queue_delays_ms": [0, 2], "requests_per_cell": 20},
    "triton": {"model_name": "digits"},
}

TRITON_CONFIG = """name: "digits"
backend: "onnxruntime"
max_batch_size: 4
dynamic_batching {
  preferred_batch_size: [ 4 ]
  max_queue_delay_microseconds: 2000
}
"""


@pytest.fixture
def digits_model(db):
    return next(entry for entry in ensure_demo_models() if entry.reference == "zoo:digits-cnn")


def post(client, body):
    return client.post("/api/v1/jobs", data=json.dumps(body), content_type="application/json")


# --- submission -----------------------------------------------------------------------------------


def test_serving_submission_stores_the_spec_and_enqueues(owner, team, digits_model, fake_celery,
                                                          django_capture_on_commit_callbacks):  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api_client_for(owner), SERVING)
    assert response.status_code == 201, response.content
    job = Job.objects.get(pk=json_body(response)["id"])
    assert (job.model, job.team, job.name, job.queue) == (digits_model, team, "digits serving", "cpu")
    assert job.recipe["mode"] == "serving"
    assert job.recipe["model"] == "zoo:digits-cnn" and job.recipe["task"] == digits_model.task
    assert job.recipe["steps"] == [{"pass": "onnx_export"}]
    assert job.recipe["p95_budget_ms"] == 20
    assert job.recipe["batching"]["max_batch_sizes"] == [1, 4]
    assert job.recipe["batching"]["requests_per_cell"] == 20
    assert job.recipe["triton"]["model_name"] == "digits"
    assert [message["args"] for message in fake_celery.sent] == [[job.pk]]


def test_serving_submission_gets_a_default_name(owner, team, digits_model, fake_celery):
    response = post(api_client_for(owner), {key: value for key, value in SERVING.items() if key != "name"})
    assert response.status_code == 201, response.content
    assert Job.objects.get().name.endswith(": serving analysis")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"unknown_key": 1}, "unknown_key"),
        ({"p95_budget_ms": 0}, "p95_budget_ms"),
        ({"p95_budget_ms": -5}, "p95_budget_ms"),
        ({"p95_budget_ms": "fast"}, "p95_budget_ms"),
        ({"batching": {"max_batch_sizes": []}}, "max_batch_sizes"),
        ({"batching": {"max_queue_delays_ms": [-1]}}, "max_queue_delays_ms"),
        ({"batching": {"requests_per_cell": 1}}, "requests_per_cell"),
        ({"batching": {"grid": "big"}}, "grid"),
        ({"triton": {"instance_kind": "KIND_TPU"}}, "instance_kind"),
        ({"steps": [{"pass": "no_such_pass"}]}, "no_such_pass"),
        ({"steps": [{"pass": "ort_quantize_dynamic"}]}, "ort_quantize_dynamic"),  # onnx-only pass on a torch model
        ({"dataset": "zoo:digits"}, "takes no dataset"),
        ({"model": "/etc/passwd"}, "file paths are refused"),
        ({"mode": "grid"}, "serving"),
    ],
)
def test_bad_serving_specs_are_400_with_a_reason(owner, digits_model, fake_celery, change, message):
    response = post(api_client_for(owner), {**SERVING, **change})
    assert response.status_code == 400, response.content
    assert message in json.dumps(json_body(response))
    assert not Job.objects.exists()
    assert fake_celery.sent == []


def test_the_openapi_schema_has_a_serving_example(owner):
    response = api_client_for(owner).get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    post_jobs = json_body(response)["paths"]["/api/v1/jobs"]["post"]
    examples = post_jobs["requestBody"]["content"]["application/json"]["examples"]
    serving = next(example["value"] for example in examples.values() if example["value"].get("mode") == "serving")
    assert serving["model"] == "zoo:digits-cnn" and serving["p95_budget_ms"] > 0
    assert '"mode": "serving"' in post_jobs["description"]


def test_serving_jobs_are_routed_by_the_live_workers_capabilities(owner, team, digits_model, fake_celery):
    from optimizers.capabilities import probe
    from webapp.fleet.models import WorkerNode

    WorkerNode.objects.record("celery@cpu-1", ["cpu"], probe(hostname="celery@cpu-1", queues=["cpu"], gpus=[]),
                              started=True)  # fmt: skip
    response = post(api_client_for(owner), SERVING)
    assert response.status_code == 201, response.content
    assert Job.objects.get().queue == "cpu"
    engine = {**SERVING, "model": "zoo:minilm", "steps": [{"pass": "onnx_export"}, {"pass": "tensorrt_build"}]}
    response = post(api_client_for(owner), engine)
    assert response.status_code == 400
    assert "tensorrt_build cannot run on any live worker" in json_body(response)["error"]
    assert Job.objects.count() == 1


# --- the Serving tab ------------------------------------------------------------------------------


def test_serving_tab_submits_a_serving_job(owner, team, digits_model, fake_celery):
    client = client_for(owner)
    assert 'href="/jobs/new/serving/"' in client.get(reverse("jobs:new")).content.decode()
    assert 'href="/jobs/new/serving/"' in client.get(reverse("jobs:new_search")).content.decode()
    assert client.get(reverse("jobs:new_serving")).status_code == 200
    data = {"serving-team": team.pk, "serving-model": digits_model.pk, "serving-name": "",
            "serving-onnx_export": "on", "serving-p95_budget_ms": 25, "serving-max_batch_sizes": "1, 8",
            "serving-max_queue_delays_ms": "0,5"}  # fmt: skip
    response = client.post(reverse("jobs:new_serving"), data)
    assert response.status_code == 302, response.content.decode()[-2000:]
    job = Job.objects.get()
    assert job.recipe["mode"] == "serving" and job.recipe["p95_budget_ms"] == 25
    assert job.recipe["steps"] == [{"pass": "onnx_export"}]
    assert job.recipe["batching"]["max_batch_sizes"] == [1, 8]
    assert job.recipe["batching"]["max_queue_delays_ms"] == [0.0, 5.0]


def test_serving_tab_shows_errors(owner, team, digits_model):
    data = {"serving-team": team.pk, "serving-model": digits_model.pk, "serving-p95_budget_ms": 25,
            "serving-max_batch_sizes": "1,2000", "serving-max_queue_delays_ms": "0"}  # fmt: skip
    response = client_for(owner).post(reverse("jobs:new_serving"), data)
    assert response.status_code == 400 and "max_batch_sizes" in response.content.decode()
    response = client_for(owner).post(reverse("jobs:new_serving"), {**data, "serving-max_queue_delays_ms": "soon"})
    assert response.status_code == 400 and "queue delays must be numbers" in response.content.decode()
    assert not Job.objects.exists()


# --- the job page ---------------------------------------------------------------------------------


def cell(batch: int, delay: float, rate: float, throughput: float, p95: float, saturated: bool = False) -> dict:
    return {
        "max_batch_size": batch, "max_queue_delay_ms": delay, "offered_rate_per_s": rate, "requests": 20,
        "completed": 20, "duration_s": 1.0, "throughput_per_s": throughput, "p50_ms": p95 / 2, "p95_ms": p95,
        "p99_ms": p95 * 1.1, "mean_ms": p95 / 2, "batches": 10, "mean_batch_size": 2.0, "saturated": saturated,
    }  # fmt: skip


def sample_serving_report(*, recommended: bool = True) -> dict:
    """A stored classifier serving report: a 2 × 1 × 2 sweep, the recommendation, the Triton config."""
    cells = [
        cell(1, 2.0, 100.0, 98.0, 4.5),
        cell(1, 2.0, 400.0, 210.0, 95.0, saturated=True),
        cell(4, 2.0, 100.0, 99.0, 6.25),
        cell(4, 2.0, 400.0, 391.5, 17.5),
    ]
    recommendation = {
        "max_batch_size": 4, "max_queue_delay_ms": 2.0, "preferred_batch_sizes": [4], "throughput_per_s": 391.5,
        "p95_ms": 17.5, "offered_rate_per_s": 400.0, "p95_budget_ms": 20.0,
        "reason": "highest measured throughput (391.5 req/s at an offered 400.0 req/s) with p95 17.50 ms within "
        "the 20 ms budget, out of 3 of 4 cells that met it",
    }  # fmt: skip
    return {
        "kind": "serving",
        "model": "zoo:digits-cnn",
        "task": "image-classification",
        "artifact": "onnx_export",
        "artifact_format": "onnx",
        "p95_budget_ms": 20.0 if recommended else 1.0,
        "sweep": {
            "model": "digits-cnn",
            "runtime": "onnxruntime",
            "device": "cpu",
            "batch1_latency_ms": 2.5,
            "rates_per_s": [100.0, 400.0],
            "settings": {
                "max_batch_sizes": [1, 4],
                "max_queue_delays_ms": [2.0],
                "rates_per_s": [100.0, 400.0],
                "requests_per_cell": 20,
            },
            "cells": cells,
            "seconds": 3.2,
        },  # fmt: skip
        "recommendation": recommendation if recommended else None,
        "triton_config": TRITON_CONFIG,
        "notes": [] if recommended else ["No setting kept p95 within 1 ms without saturating."],
    }


def sample_llm_serving_report() -> dict:
    """A stored causal-LM serving report: MHA/GQA/MQA at two context lengths, the bandwidth, two rooflines."""
    rows = []
    for context in (512, 2048):
        for kind, heads, per_token, ratio, actual in [
            ("MHA", 8, 16384.0, 1.0, False), ("GQA", 2, 4096.0, 0.25, True), ("MQA", 1, 2048.0, 0.125, False)
        ]:  # fmt: skip
            rows.append({"kind": kind, "num_kv_heads": heads, "context_len": context, "batch_size": 1,
                         "dtype": "float16", "bytes_per_token": per_token, "cache_bytes": per_token * context,
                         "ratio_to_mha": ratio, "actual": actual})  # fmt: skip

    def roofline(context: int) -> dict:
        kv = 4096.0 * context
        per_step = 50_000_000 + kv
        return {"bandwidth_bytes_per_s": 10e9, "weight_bytes": 50_000_000, "kv_bytes_per_sequence": kv,
                "batch_size": 1, "context_len": context, "bytes_per_step": per_step,
                "tokens_per_s_per_sequence": 10e9 / per_step, "tokens_per_s": 10e9 / per_step}  # fmt: skip

    return {
        "kind": "serving",
        "model": "zoo:tiny-lm",
        "task": "causal-lm",
        "artifact": "tiny-lm",
        "artifact_format": "hf",
        "p95_budget_ms": 50.0,
        "kv_cache": rows,
        "bandwidth": {
            "device": "cpu",
            "buffer_bytes": 268435456,
            "repeats": 5,
            "bytes_per_s": 10e9,
            "median_bytes_per_s": 9.5e9,
            "method": "numpy copyto",
        },  # fmt: skip
        "rooflines": [roofline(512), roofline(2048)],
        "notes": ["Roofline: an upper bound from one-thread copy bandwidth."],
    }


def serving_job(make_job, team, owner, report: dict) -> Job:
    recipe = {"mode": "serving", "model": report["model"], "p95_budget_ms": report.get("p95_budget_ms", 50)}
    return make_job(team, owner, status=Job.Status.SUCCEEDED, progress=100, stage="done", report=report, recipe=recipe)


def add_triton_artifact(job: Job) -> Artifact:
    artifact = Artifact(job=job, name="triton repository (digits)", format="triton", order=1, is_final=True,
                        sha256="0" * 64)  # fmt: skip
    content = zip_bytes({"digits/config.pbtxt": TRITON_CONFIG.encode(), "digits/1/model.onnx": b"onnx"})
    artifact.file.save("triton-digits.zip", ContentFile(content), save=False)
    artifact.size_bytes = artifact.file.size
    artifact.save()
    return artifact


def page_of(client, job: Job) -> str:
    response = client.get(reverse("jobs:detail", args=[job.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_the_sample_reports_are_valid_serving_reports():
    ServingReport.model_validate(sample_serving_report())
    ServingReport.model_validate(sample_serving_report(recommended=False))
    ServingReport.model_validate(sample_llm_serving_report())


def test_serving_job_page_shows_the_recommendation_chart_and_triton_config(owner, team, make_job):
    job = serving_job(make_job, team, owner, sample_serving_report())
    add_triton_artifact(job)
    assert build_results(job.report) is None and build_search_results(job.report) is None
    page = page_of(client_for(owner), job)
    assert 'id="serving-results"' in page and "Serving analysis" in page
    assert 'id="gate-table"' not in page and 'id="candidates-table"' not in page
    recommendation = page.split('id="recommendation-table"')[1].split("</table>")[0]
    assert "<th>Max batch size</th><td>4</td>" in recommendation
    assert "<th>Max queue delay</th><td>2 ms</td>" in recommendation
    assert "391.5 requests/s" in recommendation and "17.5 ms" in recommendation
    assert "<th>p95 budget</th><td>20 ms</td>" in recommendation
    assert 'id="no-recommendation"' not in page
    assert 'id="chart-serving"' in page and 'data-figure="chart-serving-data"' in page
    assert '<script id="chart-serving-data" type="application/json">' in page
    assert "plotly.min.js" in page and "js/charts.js" in page
    assert len(page.split('id="sweep-table"')[1].split("</table>")[0].split("<tr")) - 2 == 4  # 4 cells
    triton = page.split('id="triton-config"')[1].split("</pre>")[0]
    assert "max_batch_size: 4" in triton and "&quot;digits&quot;" in triton
    assert 'id="kv-cache-table"' not in page and 'id="roofline-table"' not in page
    # The Triton zip is listed and downloadable; no model-card links (a Triton repository has no card).
    assert "triton repository (digits).zip" in page and ">triton<" in page.replace("<td>triton", ">triton<")
    assert 'id="model-cards"' not in page and 'id="triton-artifact-note"' in page


def test_serving_results_pivot_and_figure():
    results = build_serving_results(sample_serving_report())
    assert results.recommendation.max_batch_size == 4
    assert (results.cells, results.cells_within_budget) == (4, 3)
    assert results.chart_id == "chart-serving"
    assert len(results.figure["data"]) == 2 + 1  # a curve per setting, plus the recommended point
    assert build_serving_results({"kind": "search"}) is None
    assert build_serving_results(None) is None


def test_serving_job_page_says_so_when_no_setting_meets_the_budget(owner, team, make_job):
    job = serving_job(make_job, team, owner, sample_serving_report(recommended=False))
    page = page_of(client_for(owner), job)
    assert 'id="recommendation-table"' not in page
    sentence = page.split('id="no-recommendation"')[1].split("</p>")[0]
    assert "No setting met the p95 budget of 1 ms" in sentence and "0 of 4 cells" in sentence
    assert 'id="chart-serving"' in page  # the sweep is still worth seeing
    assert "No setting kept p95 within 1 ms" in page  # the report's note


def test_causal_lm_serving_page_shows_the_kv_cache_table_and_rooflines(owner, team, make_job):
    job = serving_job(make_job, team, owner, sample_llm_serving_report())
    page = page_of(client_for(owner), job)
    assert 'id="serving-results"' in page
    assert 'id="chart-serving"' not in page and 'id="recommendation-table"' not in page
    assert "plotly.min.js" not in page
    table = page.split('id="kv-cache-table"')[1].split("</table>")[0]
    head, body = table.split("<tbody>")
    assert "Memory at 512 tokens" in head and "Memory at 2048 tokens" in head
    rows = body.split("</tr>")[:-1]
    assert [("MHA" in rows[0]), ("GQA" in rows[1]), ("MQA" in rows[2])] == [True, True, True]
    assert "this model" in rows[1] and "this model" not in rows[0]
    assert "16384" in rows[0] and "8.0\xa0MB" in rows[0] and "32.0\xa0MB" in rows[0]  # 16 KiB × 512 / 2048 tokens
    assert "2.0\xa0MB" in rows[1] and "0.25×" in rows[1]
    inputs = page.split('id="kv-inputs"')[1].split("</p>")[0]
    assert "not measured" in inputs and "float16" in inputs and "batch size 1" in inputs and "512, 2048" in inputs
    assert "calculated" in page and "estimate" in page
    roofline = page.split('id="roofline-inputs"')[1].split("</table>")[0]
    assert "9.3\xa0GB/s measured here" in roofline and "numpy copyto" in roofline  # 10e9 B/s, binary units
    assert roofline.count("<td>≤ ") == 4


def test_serving_page_escapes_report_text(owner, team, make_job):
    report = sample_serving_report()
    report["notes"] = ["<script>alert('note')</script>"]
    report["artifact"] = "<img src=x onerror=alert(1)>"
    report["triton_config"] = 'name: "</pre><script>alert(2)</script>"'
    job = serving_job(make_job, team, owner, report)
    page = page_of(client_for(owner), job)
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#x27;note&#x27;)&lt;/script&gt;" in page
    assert "&lt;/pre&gt;&lt;script&gt;alert(2)" in page


def test_a_broken_serving_report_does_not_break_the_page(owner, team, make_job):
    job = serving_job(make_job, team, owner, {"kind": "serving", "model": "zoo:digits-cnn", "sweep": "?"})
    page = page_of(client_for(owner), job)
    assert 'id="serving-results"' not in page and "does not match the expected format" in page


def test_the_triton_artifact_downloads_and_has_no_model_card(owner, team, make_job):
    job = serving_job(make_job, team, owner, sample_serving_report())
    artifact = add_triton_artifact(job)
    client = client_for(owner)
    response = client.get(reverse("jobs:artifact_download", args=[job.pk, artifact.pk]))  # deploy: no gate, allowed
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/zip"
    assert "triton_repository_digits.zip" in response["Content-Disposition"]
    body = b"".join(response.streaming_content)
    assert zipfile.ZipFile(BytesIO(body)).read("digits/config.pbtxt").decode() == TRITON_CONFIG
    detail = json_body(api_client_for(owner).get(f"/api/v1/jobs/{job.pk}"))
    assert detail["report"]["kind"] == "serving" and detail["deployable"] is True
    assert [(item["format"], item["is_final"]) for item in detail["artifacts"]] == [("triton", True)]
    # A card link typed by hand answers 404, not an error page.
    assert client.get(reverse("costs:card_html", args=[job.pk, artifact.pk])).status_code == 404
