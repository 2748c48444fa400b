"""The whole user flow in a real browser: log in, submit a MiniLM job, watch it, read and download the results.

Nothing is mocked: the live server enqueues to a real Redis server, a real Celery
worker runs the recipe (with ``INFEROPT_QUICK_BENCHMARK=1``) and writes to the
test database and its media folder, which the live server serves downloads from.

``INFEROPT_UPDATE_SCREENSHOT=1`` writes the results screenshot to
``docs/screenshot-results.png`` (used by the README); otherwise it goes to ``tmp_path``.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

from tests.support.services import REPO_ROOT, CeleryWorker
from webapp.accounts.services import ensure_member
from webapp.jobs.models import Job

USERNAME = "e2e-alice"
PASSWORD = "e2e-correct-horse-battery"
TEAM = "e2e-team"
DEMO_MODEL = "MiniLM-L6 (demo)"
#: How long the job may take from submission to a final status.
JOB_TIMEOUT_S = 600
SCREENSHOT = REPO_ROOT / "docs" / "screenshot-results.png"

#: The live status block as one snapshot (None while the page is between documents).
READ_STATUS_JS = """() => {
  const block = document.querySelector("#job-status");
  if (!block) return null;
  const badge = block.querySelector("#job-status-badge");
  const stage = block.querySelector(".stage");
  const bar = block.querySelector("[role=progressbar]");
  return {
    status: badge ? badge.textContent.trim() : "",
    stage: stage ? stage.textContent.trim() : "",
    progress: bar ? bar.getAttribute("aria-valuenow") : "",
    results: document.querySelector("#results") !== null,
  };
}"""


@pytest.fixture
def member(transactional_db):
    """A user with a password, member of one team (created the way ``manage.py api_token`` does)."""
    user, _team = ensure_member(USERNAME, TEAM)
    user.set_password(PASSWORD)
    user.save(update_fields=["password"])
    return user


def _watch_job(page: Page, job_id: int, worker: CeleryWorker) -> list[dict]:
    """Read the status block (updated by htmx only: the test never reloads) until the job is final.

    Returns the distinct snapshots seen while the job was queued or running, in order.
    """
    active: list[dict] = []
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        try:
            snapshot = page.evaluate(READ_STATUS_JS)
        except PlaywrightError:  # the page is being replaced (HX-Refresh when the job ends)
            snapshot = None
        if snapshot:
            if snapshot["status"] in ("Queued", "Running"):
                key = {key: snapshot[key] for key in ("status", "stage", "progress")}
                if not active or active[-1] != key:
                    active.append(key)
            elif snapshot["status"]:
                return active
        if not worker.is_alive():
            pytest.fail(f"the worker died while job {job_id} ran:\n{worker.log_tail()}")
        if time.monotonic() > deadline:
            job = Job.objects.get(pk=job_id)
            pytest.fail(
                f"job {job_id} still {job.status} ({job.stage}, {job.progress:.0f}%) after {JOB_TIMEOUT_S}s; "
                f"the page showed {active[-3:]}\nworker log:\n{worker.log_tail()}"
            )
        time.sleep(0.5)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_submit_minilm_job_watch_progress_and_download_the_artifact(
    live_server, page: Page, member, celery_worker: CeleryWorker, worker_media: Path, web_broker: str, tmp_path: Path
):
    base = live_server.url

    # Log in through the form; LOGIN_REDIRECT_URL is the job list.
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Username").fill(USERNAME)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/jobs/")

    # New job: MiniLM, ONNX export then dynamic INT8 quantization (per-channel by default), tiny benchmark.
    page.goto(f"{base}/jobs/new/")
    expect(page.get_by_label("Team")).to_have_value(str(member.memberships.get().team_id))
    page.get_by_label("Model", exact=True).select_option(label=DEMO_MODEL)
    page.locator("#pass-onnx_export legend").get_by_role("checkbox").check()
    quantize = page.locator("#pass-ort_quantize_dynamic")
    quantize.locator("legend").get_by_role("checkbox").check()
    expect(quantize.get_by_label("Per Channel")).to_be_checked()
    for other in ("ort_optimize", "torch_quantize_dynamic"):
        expect(page.locator(f"#pass-{other} legend").get_by_role("checkbox")).not_to_be_checked()
    page.get_by_label("Benchmark batch sizes").fill("1")
    page.get_by_label("Sequence length").fill("32")
    page.get_by_role("button", name="Submit job").click()
    page.wait_for_url(re.compile(re.escape(base) + r"/jobs/\d+/$"))
    job_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    expect(page.get_by_text(f"Job #{job_id} queued.")).to_be_visible()
    job = Job.objects.get(pk=job_id)
    assert [step["pass"] for step in job.recipe["steps"]] == ["onnx_export", "ort_quantize_dynamic"]
    assert job.recipe["benchmark"]["batch_sizes"] == [1] and job.recipe["benchmark"]["seq_len"] == 32

    # Live progress: htmx swaps the status block; when the job ends the server asks for a reload (HX-Refresh).
    seen = _watch_job(page, job_id, celery_worker)
    print(f"job {job_id}: the status block showed {seen}")
    job.refresh_from_db()
    if job.status != Job.Status.SUCCEEDED:
        pytest.fail(f"job {job_id} ended {job.status}: {job.error}\n{job.traceback}\n{celery_worker.log_tail()}")
    assert len(seen) >= 2, f"the status block never changed while the job ran: {seen}"
    assert any(snapshot["status"] == "Running" for snapshot in seen), seen

    # The reloaded page: status, gate, charts.
    expect(page.locator("#job-status-badge")).to_have_text("Succeeded")
    expect(page.locator("#results")).to_be_visible()
    gate_table = page.locator("#gate-table")
    expect(gate_table).to_be_visible()
    outcome = page.locator("#gate-outcome")
    expect(outcome).to_be_visible()
    assert job.gate_outcome in Job.GateOutcome.values
    assert outcome.text_content().strip().replace(" ", "_") == job.gate_outcome
    rules = gate_table.locator("tbody tr")
    expect(rules.first.locator("td")).to_have_count(7)  # a rule row, not "No gate rules were evaluated."
    for chart in ("chart-latency", "chart-throughput", "chart-size"):
        expect(page.locator(f"#{chart} .main-svg").first).to_be_visible()

    screenshot = SCREENSHOT if os.environ.get("INFEROPT_UPDATE_SCREENSHOT") == "1" else tmp_path / SCREENSHOT.name
    page.screenshot(path=str(screenshot), full_page=True)

    # The final artifact: the downloaded zip's sha256 is the one the page shows.
    final_row = page.locator("#artifacts tbody tr").filter(has=page.locator(".badge", has_text="final"))
    expect(final_row).to_have_count(1)
    shown_sha256 = final_row.locator(".sha256").text_content().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", shown_sha256), shown_sha256
    with page.expect_download() as download_info:
        final_row.get_by_role("link").click()
    download = download_info.value
    assert download.failure() is None, download.failure()
    zip_path = tmp_path / download.suggested_filename
    download.save_as(zip_path)
    assert hashlib.sha256(zip_path.read_bytes()).hexdigest() == shown_sha256
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
    assert "model.onnx" in names and "manifest.json" in names, names
