"""A ``mode: search`` job on a real Celery worker: candidates recorded, best and Pareto ones packaged."""

from __future__ import annotations

import json
import zipfile

import pytest

from optimizers.search import SearchReport
from webapp.jobs.models import Job
from workers.tasks import search_gate_outcome

#: A tiny search on MiniLM: export, export + INT8, and INT8 alone (impossible on an hf model: skipped).
TINY_SEARCH = {
    "mode": "search",
    "model": "zoo:minilm",
    "task": "feature-extraction",
    "axes": [["none", {"pass": "onnx_export"}], ["none", {"pass": "ort_quantize_dynamic", "per_channel": True}]],
    "budget_s": 240,
    "benchmark": {"batch_sizes": [1], "seq_len": 16},
    "evaluation": {"max_samples": 8},
}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_search_job_succeeds_with_every_candidate_recorded(
    make_job, enqueue, wait_for_final, worker_media, celery_worker
):
    job = make_job(TINY_SEARCH)
    enqueue(job)
    job = wait_for_final(job.pk)

    assert job.status == Job.Status.SUCCEEDED, f"{job.error}\n{job.traceback}"
    assert job.progress == 100
    assert job.report["kind"] == "search"
    report = SearchReport.model_validate({key: value for key, value in job.report.items() if key != "kind"})
    steps = [[step["pass"] for step in candidate.steps] for candidate in report.candidates]
    assert steps == [["onnx_export"], ["onnx_export", "ort_quantize_dynamic"], ["ort_quantize_dynamic"]]
    assert report.candidates[0].status == "done"  # the budget starts with the first candidate
    assert report.candidates[1].status in ("done", "not_run")
    assert report.candidates[2].status == "skipped"
    assert report.candidates[0].gate_outcome == "pass"  # FP32 export: no quality loss
    assert report.best_passing is not None
    assert job.gate_outcome == search_gate_outcome(report) == "pass"
    assert "candidate 1/2" in job.log

    artifacts = list(job.artifacts.all())
    packaged = {index for index, candidate in enumerate(report.candidates) if candidate.on_pareto_front} | {
        report.best_passing
    }
    assert len(artifacts) == len(packaged)
    final = [artifact for artifact in artifacts if artifact.is_final]
    assert len(final) == 1 and final[0].name.startswith(f"c{report.best_passing + 1}-")
    with zipfile.ZipFile(worker_media / final[0].file.name) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert "MODEL_CARD.md" in archive.namelist()
    assert manifest["recipe"]["steps"] == report.candidates[report.best_passing].steps
    assert manifest["gate"]["outcome"] == "pass"


def test_search_gate_outcome():
    base = {"model": "m", "task": "t", "budget_s": 1, "elapsed_s": 1, "objectives": {}, "candidates": []}
    baseline = {"name": "b", "format": "hf", "path": "/b", "sha256": "0", "size_bytes": 1}
    report = SearchReport.model_validate({**base, "baseline": baseline})
    assert search_gate_outcome(report) == "fail"
    assert search_gate_outcome(report.model_copy(update={"near_misses": [0]})) == "needs_approval"
    assert search_gate_outcome(report.model_copy(update={"best_passing": 0, "near_misses": [1]})) == "pass"
