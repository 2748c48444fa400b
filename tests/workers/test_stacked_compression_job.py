"""End to end: a stacked compression recipe through the API and a real Celery worker.

distill → prune_structured → onnx_export → ort_quantize_static on ``zoo:digits-cnn``: every
step's variant is evaluated, benchmarked in its own process and gated against the original
baseline; training curves and the sensitivity table reach the job page.
"""

from __future__ import annotations

import json

import pytest

from tests.webapp.helpers import api_client_for
from tests.workers.conftest import page_for
from webapp.accounts.models import Membership, Team
from webapp.jobs.models import Job

RECIPE = {
    "name": "digits: distill, prune, export, static INT8",
    "model": "zoo:digits-cnn",
    "steps": [
        {"pass": "distill", "steps": 60},
        {"pass": "prune_structured", "units": "channels", "target": 0.25},
        {"pass": "onnx_export"},
        {"pass": "ort_quantize_static", "calibration_samples": 64},
    ],
    "benchmark": {"batch_sizes": [1, 8], "threads": 1},
}


@pytest.fixture(scope="module")
def built_digits_cnn():
    """Build (or reuse) the demo CNN here, so the job's time goes to the recipe."""
    from optimizers.resolve import resolve_model

    return resolve_model("zoo:digits-cnn")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_stacked_recipe_runs_every_step_gated_against_the_original_baseline(
    built_digits_cnn, api_broker, celery_worker, worker_media, wait_for_final, django_user_model
):
    team = Team.objects.create(name="compression-team")
    owner = django_user_model.objects.create_user("carla", password="pw-carla")
    Membership.objects.create(user=owner, team=team, role=Membership.Role.MEMBER)

    response = api_client_for(owner).post("/api/v1/jobs", data=json.dumps(RECIPE), content_type="application/json")
    assert response.status_code == 201, response.content
    job = wait_for_final(response.json()["id"], timeout=900)
    assert job.status == Job.Status.SUCCEEDED, f"{job.error}\n{job.traceback}"

    report = job.report
    assert report["task"] == "image-classification"
    names = [variant["produced_by"] for variant in report["variants"]]
    assert names == [None, "distill", "prune_structured", "onnx_export", "ort_quantize_static"]
    assert [variant["format"] for variant in report["variants"]] == ["torch", "torch", "torch", "onnx", "onnx"]
    baseline, distilled, pruned, exported, quantized = report["variants"]
    for variant in report["variants"]:
        assert 0.5 < variant["metrics"]["accuracy"] <= 1.0
        assert set(variant["benchmark"]) == {"1", "8"} and variant["benchmark_info"]["isolated_process"]
    for variant in report["variants"][1:]:
        # Every step is judged against the ORIGINAL model, not against the step before it.
        (rule,) = [rule for rule in variant["gate"]["rules"] if rule["metric"] == "accuracy"]
        assert rule["baseline"] == pytest.approx(baseline["metrics"]["accuracy"])
    assert distilled["size_bytes"] < baseline["size_bytes"]
    assert pruned["details"]["parameters_after"] < pruned["details"]["parameters_before"]
    assert any(row["pruned"] for row in pruned["details"]["sensitivity"])
    assert len(distilled["details"]["training_curve"]) >= 2
    assert quantized["size_bytes"] < exported["size_bytes"]
    assert quantized["details"]["calibration"]["samples"] == 64

    page = page_for(owner, job)
    for element in ("chart-training", "chart-sensitivity-2", "chart-tradeoff", "pass-details"):
        assert element in page
