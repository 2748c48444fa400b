"""End to end: POST /api/v1/jobs → real Celery worker → gguf_convert → gguf_quantize(Q4_K_M) → succeeded."""

from __future__ import annotations

import json
import zipfile

import pytest

from optimizers.llama_cpp_tools import find_converter
from tests.webapp.helpers import api_client_for
from tests.workers.conftest import page_for
from webapp.accounts.models import Membership, Team
from webapp.jobs.models import Job

RECIPE = {
    "name": "tiny-lm to GGUF Q4_K_M",
    "model": "zoo:tiny-lm",
    "steps": [{"pass": "gguf_convert", "outtype": "f16"}, {"pass": "gguf_quantize", "type": "Q4_K_M"}],
    "evaluation": {"max_samples": 6},
    # One thread: on a busy shared machine, llama.cpp's spinning barriers make 2 threads crawl.
    "benchmark": {"threads": 1},
}


@pytest.fixture(scope="module")
def built_tiny_lm():
    """Build (or reuse) the tiny LM here, so the job does not spend its time training it."""
    from optimizers.resolve import resolve_model

    return resolve_model("zoo:tiny-lm")


@pytest.mark.slow
@pytest.mark.skipif(find_converter() is None, reason="run scripts/llama_cpp_tools.sh first")
@pytest.mark.django_db(transaction=True)
def test_api_job_converts_and_quantizes_the_tiny_lm_to_q4_k_m(
    built_tiny_lm, api_broker, celery_worker, worker_media, wait_for_final, django_user_model
):
    team = Team.objects.create(name="llm-team")
    owner = django_user_model.objects.create_user("olga", password="pw-olga")
    Membership.objects.create(user=owner, team=team, role=Membership.Role.MEMBER)

    response = api_client_for(owner).post("/api/v1/jobs", data=json.dumps(RECIPE), content_type="application/json")
    assert response.status_code == 201, response.content
    job = wait_for_final(response.json()["id"], timeout=900)

    assert job.status == Job.Status.SUCCEEDED, f"{job.error}\n{job.traceback}"
    report = job.report
    assert report["task"] == "causal-lm"
    assert [v["format"] for v in report["variants"]] == ["hf", "gguf", "gguf"]
    baseline, f16, q4 = report["variants"]
    assert (f16["produced_by"], q4["produced_by"]) == ("gguf_convert", "gguf_quantize")
    for variant in report["variants"]:
        assert variant["metrics"]["perplexity"] > 1.0
        assert variant["generation"]["decode_tokens_per_s"] > 0
        assert variant["generation"]["new_tokens"] == 128
        assert len(variant["generations"]) >= 3
    assert q4["benchmark_info"]["runtime"] == "llama.cpp"
    assert baseline["benchmark_info"]["runtime"] == "pytorch-eager"
    assert q4["metrics"]["kl_divergence"] > f16["metrics"]["kl_divergence"]
    assert q4["size_bytes"] < f16["size_bytes"] / 2
    (rule,) = q4["gate"]["rules"]
    assert (rule["metric"], rule["kind"], rule["threshold"]) == ("perplexity", "relative_drop", 0.05)
    assert job.gate_outcome in ("needs_approval", "fail")  # any perplexity increase needs a reviewer

    artifacts = {artifact.name: artifact for artifact in job.artifacts.all()}
    assert set(artifacts) == {"gguf_f16", "gguf_q4_k_m"}
    final = artifacts["gguf_q4_k_m"]
    assert final.format == "gguf" and final.is_final
    with zipfile.ZipFile(final.file.path) as archive:
        names = set(archive.namelist())
        assert {"model.gguf", "tokenizer.model", "manifest.json"} <= names
        with archive.open("model.gguf") as handle:
            assert handle.read(4) == b"GGUF"

    page = page_for(owner, job)
    assert "generations-table" in page and "generation-table" in page
    assert "chart-generation" in page and "chart-quality-size" in page
