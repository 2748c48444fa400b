"""Four eyes in a real browser: a member submits a job, a reviewer approves it, the member downloads it.

The submission goes through the real new-job form of the live server; only the
broker is replaced by a recorder, and the worker's success path is played by the
test (a real zip packaged with ``optimizers.packaging``, the report, the gate
outcome, and the worker's own hook ``record_gate_outcome``), so this test takes
seconds. ``test_browser_flow.py`` runs a real optimization end to end.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path

import pytest
from django.core import mail
from django.core.files import File
from django.db import transaction
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from optimizers.packaging import package_artifact
from tests.webapp.helpers import FakeCelery, sample_report
from webapp.accounts.models import Membership
from webapp.accounts.services import ensure_member
from webapp.jobs.models import Artifact, Job
from webapp.reviews.models import AuditEntry
from webapp.reviews.services import record_gate_outcome

TEAM = "e2e-reviews"
MEMBER = ("e2e-mia", "e2e-mia-correct-horse")
REVIEWER = ("e2e-rex", "e2e-rex-battery-staple")
DEMO_MODEL = "MiniLM-L6 (demo)"


@pytest.fixture
def people(transactional_db):
    """A member (the submitter) and a reviewer of one team, with passwords and e-mail addresses."""
    users = {}
    for (username, password), role in [(MEMBER, Membership.Role.MEMBER), (REVIEWER, Membership.Role.REVIEWER)]:
        user, _team = ensure_member(username, TEAM, role)
        user.set_password(password)
        user.email = f"{username}@example.com"
        user.save(update_fields=["password", "email"])
        users[role] = user
    return users


@pytest.fixture
def broker(monkeypatch) -> FakeCelery:
    """The live server runs in this process: its ``submit_job`` publishes to this recorder."""
    fake = FakeCelery()
    monkeypatch.setattr("webapp.jobs.services.celery_app", lambda: fake)
    return fake


def log_in(browser: Browser, base: str, username: str, password: str) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(60_000)
    page = context.new_page()
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/jobs/")
    return page


def finish_like_the_worker(job_id: int, work_dir: Path) -> Artifact:
    """What ``workers.tasks.run_job`` does on success, with a tiny real variant instead of a real run."""
    assert Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
        status=Job.Status.RUNNING, started_at=timezone.now(), worker="e2e-fake-worker", attempts=1
    )
    job = Job.objects.get(pk=job_id)
    variant = work_dir / "variant"
    variant.mkdir(parents=True)
    (variant / "model.onnx").write_bytes(b"not really onnx, but real bytes " * 64)
    local_zip = work_dir / "1-onnx_export.zip"
    sha256, size = package_artifact(variant, {"job": job_id, "variant": "onnx_export", "recipe": job.recipe}, local_zip)
    storage = Artifact._meta.get_field("file").storage
    with open(local_zip, "rb") as handle:
        name = storage.save(f"jobs/{job_id}/1-onnx_export.zip", File(handle, name=local_zip.name))
    with transaction.atomic():
        artifact = Artifact.objects.create(
            job=job, name="onnx_export", format="onnx", file=name, sha256=sha256, size_bytes=size, order=1,
            is_final=True,
        )  # fmt: skip
        Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).update(
            status=Job.Status.SUCCEEDED, stage="done", progress=100, report=sample_report(),
            gate_outcome=Job.GateOutcome.NEEDS_APPROVAL, finished_at=timezone.now(),
        )  # fmt: skip
        record_gate_outcome(job_id)
    return artifact


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_member_submits_reviewer_approves_member_downloads(
    live_server, browser: Browser, people, broker: FakeCelery, data_dir: Path, settings, tmp_path: Path
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    base = live_server.url

    # 1. The member submits a job through the new-job form.
    member = log_in(browser, base, *MEMBER)
    member.goto(f"{base}/jobs/new/")
    member.get_by_label("Model", exact=True).select_option(label=DEMO_MODEL)
    member.locator("#pass-onnx_export legend").get_by_role("checkbox").check()
    member.get_by_role("button", name="Submit job").click()
    member.wait_for_url(re.compile(re.escape(base) + r"/jobs/\d+/$"))
    job_id = int(member.url.rstrip("/").rsplit("/", 1)[1])
    job = Job.objects.get(pk=job_id)
    assert job.submitter == people["member"] and job.team.name == TEAM
    assert [(sent["name"], sent["args"]) for sent in broker.sent] == [("inferopt.run_job", [job_id])]

    # 2. The "worker" finishes it: gate outcome needs_approval, audited, the reviewer e-mailed.
    artifact = finish_like_the_worker(job_id, tmp_path / "work")
    (message,) = mail.outbox
    assert message.to == [f"{REVIEWER[0]}@example.com"] and f"job #{job_id} awaits review" in message.subject

    # 3. Until approved, the member only gets a download for inspection; "for deployment" is refused.
    member.goto(f"{base}/jobs/{job_id}/")
    expect(member.locator("#approval-state")).to_have_text("Awaiting review")
    expect(member.locator("#review-form")).to_have_count(0)
    expect(member.locator("#review-refusal")).to_contain_text("four-eyes")
    final_row = member.locator("#artifacts tbody tr").filter(has=member.locator(".badge", has_text="final"))
    expect(final_row.locator(".inspect-label")).to_have_text("download for inspection — not approved for deployment")
    deploy_url = f"{base}/jobs/{job_id}/artifacts/{artifact.pk}/download"
    refused = member.request.get(deploy_url)
    assert refused.status == 403 and "not approved for deployment" in refused.text()

    # 4. The reviewer finds it in the review queue, with the gate table, and approves it with a reason.
    reviewer = log_in(browser, base, *REVIEWER)
    reviewer.get_by_role("link", name="Reviews").click()
    item = reviewer.locator(f"#queue-job-{job_id}")
    expect(item.locator(".gate-table tbody tr")).to_have_count(2)
    item.get_by_role("link", name="Review", exact=True).click()
    reviewer.wait_for_url(f"{base}/jobs/{job_id}/#approval")
    reviewer.get_by_label("Approve").check()
    reviewer.get_by_label("Reason").fill("cosine loss 0.007 is acceptable for search")
    reviewer.get_by_role("button", name="Submit review").click()
    expect(reviewer.get_by_text(f"Job #{job_id} approved.")).to_be_visible()
    expect(reviewer.locator("#approval-state")).to_have_text("Approved")
    reviewer.goto(f"{base}/reviews/")
    expect(reviewer.locator("#queue-empty")).to_be_visible()
    reviewer.context.close()

    # 5. The member downloads it for deployment; the zip is the one the page lists.
    member.reload()
    expect(member.locator("#approval-state")).to_have_text("Approved")
    expect(final_row.locator(".inspect-label")).to_have_count(0)
    shown_sha256 = final_row.locator(".sha256").text_content().strip()
    assert shown_sha256 == artifact.sha256
    with member.expect_download() as download_info:
        final_row.get_by_role("link", name=f"{artifact.name}.zip").click()
    download = download_info.value
    assert download.failure() is None, download.failure()
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == shown_sha256
    with zipfile.ZipFile(saved) as archive:
        assert {"model.onnx", "manifest.json"} <= set(archive.namelist())
    member.context.close()

    # Everything is in the audit log, in order, with who did it.
    entries = [(entry.action, entry.actor_name, entry.details.get("purpose")) for entry in
               AuditEntry.objects.filter(job_id=job_id).order_by("created_at", "id")]  # fmt: skip
    assert entries == [
        ("gate_outcome", "", None),
        ("review_requested", "", None),
        ("download_refused", MEMBER[0], "deploy"),
        ("approve", REVIEWER[0], None),
        ("download", MEMBER[0], "deploy"),
    ]
    assert AuditEntry.objects.get(job_id=job_id, action="approve").reason.startswith("cosine loss")
