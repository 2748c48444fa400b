"""Search jobs are priced, compared and carded like recipe runs (their report is a SearchReport)."""

from __future__ import annotations

import json

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from tests.optimizers.reports import fixed_report
from tests.webapp.helpers import client_for, zip_bytes
from webapp.costs.reports import priced_report
from webapp.jobs.models import Artifact, Job

pytestmark = pytest.mark.django_db

EXPORT = [{"pass": "onnx_export"}]
EXPORT_INT8 = [{"pass": "onnx_export"}, {"pass": "ort_quantize_dynamic", "per_channel": True}]


def search_report() -> dict:
    """Baseline; c1 export (Pareto), c2 export+INT8 (Pareto, best), c3 skipped."""
    baseline, export, int8 = fixed_report()["variants"]
    return {
        "kind": "search", "model": "zoo:minilm", "task": "feature-extraction", "budget_s": 600, "elapsed_s": 300,
        "objectives": {"latency_ms": "min", "size_bytes": "min", "cosine": "max"},
        "baseline": baseline,
        "candidates": [
            {"steps": EXPORT, "status": "done", "variant": export, "gate_outcome": "pass", "on_pareto_front": True},
            {"steps": EXPORT_INT8, "status": "done", "variant": int8, "gate_outcome": "needs_approval",
             "on_pareto_front": True},
            {"steps": [{"pass": "ort_optimize"}], "status": "skipped", "reason": "needs onnx"},
        ],
        "best_passing": 1, "near_misses": [],
    }  # fmt: skip


@pytest.fixture
def search_job(make_job, team, owner) -> Job:
    recipe = {"mode": "search", "model": "zoo:minilm", "axes": [["none"]], "budget_s": 600}
    job = make_job(team, owner, name="search", recipe=recipe, status=Job.Status.SUCCEEDED, report=search_report(),
                   gate_outcome="needs_approval", optimization_seconds=300.0)  # fmt: skip
    for order, name in ((1, "c1-onnx_export"), (2, "c2-onnx_export+ort_quantize_dynamic")):
        manifest = {"library_versions": {"onnxruntime": "1.23.2"}}
        artifact = Artifact(job=job, name=name, format="onnx", order=order, is_final=order == 2, sha256="a" * 64)
        artifact.file.save(f"{order}.zip", ContentFile(zip_bytes({"manifest.json": json.dumps(manifest).encode()})))
    return job


def test_priced_report_lists_measured_candidates_with_their_artifact_orders():
    priced = priced_report(search_report())
    assert [v.name for v in priced.report.variants] == [
        "baseline", "c1-onnx_export", "c2-onnx_export+ort_quantize_dynamic",
    ]  # fmt: skip
    assert priced.artifact_orders == [None, 1, 2]
    assert priced_report(None) is None and priced_report({"kind": "search", "junk": 1}) is None


def test_search_job_page_has_the_cost_panel(search_job, owner):
    text = client_for(owner).get(reverse("jobs:detail", args=[search_job.pk])).content.decode()
    assert 'id="cost"' in text
    assert "c2-onnx_export+ort_quantize_dynamic" in text
    assert "$0.18/h ÷ (100 requests/s × 3600) × 1,000,000 = $0.50" in text.replace("&#x27;", "'")


def test_search_job_is_compared_with_links_to_its_cards(search_job, owner):
    markup = client_for(owner).get("/jobs/compare/", {"jobs": str(search_job.pk)}).content.decode()
    assert "c1-onnx_export" in markup and "c2-onnx_export+ort_quantize_dynamic" in markup
    for artifact in search_job.artifacts.all():
        assert reverse("costs:card_html", args=[search_job.pk, artifact.pk]) in markup


def test_search_candidate_card_describes_that_candidate(search_job, owner):
    artifact = search_job.artifacts.get(order=2)
    text = client_for(owner).get(reverse("costs:card_md", args=[search_job.pk, artifact.pk])).content.decode()
    assert "# Model card: c2-onnx\\_export+ort\\_quantize\\_dynamic of zoo:minilm" in text
    assert '| 2 | `ort_quantize_dynamic` | `{"per_channel": true}` |' in text
    assert "| `onnxruntime` | `1.23.2` |" in text
    assert '"mode"' not in text and '"axes"' not in text  # the candidate's recipe, not the search's
    assert client_for(owner).get(reverse("costs:card_html", args=[search_job.pk, artifact.pk])).status_code == 200
