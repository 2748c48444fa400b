"""Live model cards per artifact (Markdown download and HTML page): content, escaping, access."""

from __future__ import annotations

import json

import pytest
from django.apps import apps
from django.core.files.base import ContentFile
from django.urls import reverse

from tests.optimizers.reports import fixed_report
from tests.webapp.helpers import api_client_for, client_for, zip_bytes
from webapp.jobs.models import Artifact, Job

pytestmark = pytest.mark.django_db

HOSTILE = "<script>alert(1)</script> | **x**"


@pytest.fixture
def carded_job(make_job, team, owner) -> Job:
    """A job with the fixed report and the candidate's zip, whose manifest carries the data hashes."""
    job = make_job(team, owner, name=f"nightly {HOSTILE}", status=Job.Status.SUCCEEDED, report=fixed_report(),
                   gate_outcome="needs_approval", optimization_seconds=1800.0)  # fmt: skip
    manifest = {"data": {"dataset": "zoo:pydoc-retrieval/eval", "eval_fingerprint_sha256": "e" * 64,
                         "eval_texts": 16, "eval_pairs": 8}}  # fmt: skip
    artifact = Artifact(job=job, name="ort_quantize_dynamic", format="onnx", order=2, is_final=True, sha256="d" * 64)
    artifact.file.save("2-int8.zip", ContentFile(zip_bytes({"manifest.json": json.dumps(manifest).encode()})))
    return job


def urls(job: Job) -> tuple[str, str]:
    artifact = job.artifacts.get()
    return (
        reverse("costs:card_md", args=[job.pk, artifact.pk]),
        reverse("costs:card_html", args=[job.pk, artifact.pk]),
    )


def test_markdown_card_is_a_download_with_every_section(carded_job, teammate):
    md_url, _ = urls(carded_job)
    response = client_for(teammate).get(md_url)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="job-{carded_job.pk}-ort_quantize_dynamic-MODEL_CARD.md"'
    )
    text = response.content.decode()
    assert text.startswith("# Model card: ort\\_quantize\\_dynamic of zoo:minilm")
    for heading in ("Summary", "Recipe", "Data", "Quality", "Quality gate", "Benchmark", "Cost", "Library versions",
                    "Approvals"):  # fmt: skip
        assert f"\n## {heading}\n" in text, heading
    assert f"**Download (zip) sha256**: `{'d' * 64}`" in text
    assert f"`{'e' * 64}`" in text  # the evaluated texts' fingerprint from the zip's manifest
    assert "**Hardware**: cpu: Intel(R) Xeon(R) Platinum 8488C (2 logical cores)" in text
    assert "| cost per 1M requests on AWS c7i.xlarge, batch 8 | $0.50 |" in text
    assert "| optimization job | $0.09 |" in text  # 1800 s on the cheapest CPU worker at $0.18/h
    assert "<script>" not in text and "\\<script\\>" in text  # the job name is escaped


def test_cost_choices_come_from_the_query_like_the_panel(carded_job, owner):
    from webapp.costs.models import InstanceType

    g5 = InstanceType.objects.get(team=None, name="AWS g5.xlarge")
    md_url, _ = urls(carded_job)
    text = client_for(owner).get(md_url, {"cost-instance": g5.pk, "cost-batch": 1}).content.decode()
    assert "on AWS g5.xlarge, batch 1" in text and "measured on CPU" in text


def test_html_card_escapes_everything(carded_job, owner):
    _, html_url = urls(carded_job)
    response = client_for(owner).get(html_url)
    assert response.status_code == 200
    markup = response.content.decode()
    assert "<script>alert(1)</script>" not in markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markup
    assert f"<code>{'d' * 64}</code>" in markup
    assert 'id="card-benchmark"' in markup and 'id="card-approvals"' in markup


@pytest.mark.skipif(not apps.is_installed("webapp.reviews"), reason="the reviews app is not installed")
def test_cards_list_the_jobs_reviews(carded_job, teammate):
    from webapp.reviews.models import Review

    Review.objects.create(job=carded_job, reviewer=teammate, reviewer_name=teammate.username, decision="approve",
                          reason=f"fine {HOSTILE}", gate_outcome="needs_approval")  # fmt: skip
    md_url, html_url = urls(carded_job)
    text = client_for(teammate).get(md_url).content.decode()
    assert "Current state: Approved" in text
    row = next(line for line in text.splitlines() if line.startswith("| bob |"))
    assert row.count(" | ") == 3 and "Approve" in row and "\\<script\\>" in row
    markup = client_for(teammate).get(html_url).content.decode()
    assert "fine &lt;script&gt;" in markup


def test_artifact_zipped_before_fingerprints_falls_back_to_what_the_job_knows(finished_job, owner):
    artifact = finished_job.artifacts.last()
    text = client_for(owner).get(reverse("costs:card_md", args=[finished_job.pk, artifact.pk])).content.decode()
    assert "packaged before evaluation data was fingerprinted" in text
    assert "the benchmark did not record its device" in text


def test_outsider_gets_404_and_anonymous_logs_in(carded_job, outsider, client):
    md_url, html_url = urls(carded_job)
    for url in (md_url, html_url):
        assert client_for(outsider).get(url).status_code == 404
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert api_client_for(outsider).get(md_url).status_code == 404


def test_api_token_fetches_the_markdown_card(carded_job, owner):
    md_url, _ = urls(carded_job)
    assert api_client_for(owner).get(md_url).status_code == 200


def test_artifact_of_another_job_is_404(carded_job, finished_job, owner):
    artifact = carded_job.artifacts.get()
    assert client_for(owner).get(reverse("costs:card_md", args=[finished_job.pk, artifact.pk])).status_code == 404
