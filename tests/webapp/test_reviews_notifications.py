"""The worker's hook: gate outcomes audited; reviewers e-mailed and the team webhook called (never raising)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail

from tests.webapp.helpers import sample_report
from webapp.accounts.models import Membership
from webapp.jobs.models import Job
from webapp.reviews.models import AuditEntry
from webapp.reviews.services import notify_reviewers, record_gate_outcome

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _mail(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.INFEROPT_BASE_URL = "https://inferopt.example"
    settings.INFEROPT_WEBHOOK_TIMEOUT_S = 1


@pytest.fixture
def reviewers(reviewer, team_admin, owner, teammate):
    for user, address in [(reviewer, "rita@example.com"), (team_admin, "adam@example.com"),
                          (owner, "alice@example.com"), (teammate, "bob@example.com")]:  # fmt: skip
        user.email = address
        user.save(update_fields=["email"])
    return reviewer, team_admin


class Hook:
    """A local HTTP server recording POSTed JSON; ``status`` and ``delay`` shape its answer."""

    def __init__(self, status: int = 204, delay: float = 0.0) -> None:
        self.received: list[dict] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.received.append({"json": json.loads(body), "type": self.headers["Content-Type"]})
                time.sleep(delay)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    server = Hook()
    yield server
    server.close()


def test_a_gate_outcome_is_audited_and_reviewers_are_notified_after_commit(
    finished_job, reviewers, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        entry = record_gate_outcome(finished_job.pk)
    assert len(callbacks) == 1
    assert (entry.action, entry.actor, entry.details) == ("gate_outcome", None, {"outcome": "needs_approval"})
    (message,) = mail.outbox
    assert sorted(message.to) == ["adam@example.com", "rita@example.com"], "reviewers and admins, not the submitter"
    assert f"job #{finished_job.pk} awaits review" in message.subject
    assert f"https://inferopt.example/jobs/{finished_job.pk}/" in message.body
    notified = AuditEntry.objects.get(job_id=finished_job.pk, action="review_requested")
    assert notified.details == {"emailed": 2}


def test_a_passed_gate_is_audited_without_notifying_anyone(finished_job, reviewers, django_capture_on_commit_callbacks):
    Job.objects.filter(pk=finished_job.pk).update(gate_outcome="pass")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        entry = record_gate_outcome(finished_job.pk)
    assert entry.details == {"outcome": "pass"} and callbacks == [] and mail.outbox == []


def test_a_failed_gate_notifies_too(finished_job, reviewers, django_capture_on_commit_callbacks):
    Job.objects.filter(pk=finished_job.pk).update(gate_outcome="fail")
    with django_capture_on_commit_callbacks(execute=True):
        record_gate_outcome(finished_job.pk)
    assert "(fail)" in mail.outbox[0].subject


def test_the_team_webhook_gets_a_short_json(finished_job, reviewers, hook, team):
    team.webhook_url = hook.url
    team.save(update_fields=["webhook_url"])
    result = notify_reviewers(finished_job.pk)
    assert result.webhook_status == 204
    (call,) = hook.received
    assert call["type"] == "application/json"
    assert call["json"] == {
        "event": "job.awaiting_review",
        "job": {"id": finished_job.pk, "name": "test job", "team": "acme", "gate_outcome": "needs_approval",
                "submitter": "alice", "url": f"https://inferopt.example/jobs/{finished_job.pk}/"},
    }  # fmt: skip
    assert AuditEntry.objects.get(action="review_requested").details["webhook_status"] == 204


@pytest.mark.parametrize("server", [{"status": 500}, {"delay": 3.0}], ids=["error", "timeout"])
def test_a_failing_or_slow_webhook_is_logged_not_raised(finished_job, reviewers, team, server, caplog):
    failing = Hook(**server)
    try:
        team.webhook_url = failing.url
        team.save(update_fields=["webhook_url"])
        started = time.monotonic()
        result = notify_reviewers(finished_job.pk)
        assert time.monotonic() - started < 2.5, "the webhook call must be time-limited"
    finally:
        failing.close()
    assert result.webhook_error and len(mail.outbox) == 1, "e-mail still goes out"
    assert "webhook of team acme" in caplog.text
    assert AuditEntry.objects.get(action="review_requested").details["webhook_error"]


def test_a_broken_mail_backend_is_logged_not_raised(finished_job, reviewers, settings, caplog):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 1, 1
    result = notify_reviewers(finished_job.pk)
    assert result.emailed == [] and "could not e-mail" in caplog.text


def test_nobody_to_notify_is_fine(finished_job, owner):
    Membership.objects.filter(user=owner).update(role="reviewer")  # the submitter is never asked
    result = notify_reviewers(finished_job.pk)
    assert result.emailed == [] and mail.outbox == []


@pytest.mark.django_db(transaction=True)
def test_the_worker_records_the_gate_outcome_when_a_job_succeeds(make_job, team, owner, reviewers, monkeypatch):
    """``run_job`` in-process with the recipe run and packaging stubbed: the hook runs on success."""
    from optimizers.report import Report
    from workers import tasks

    job = make_job(team, owner, recipe={"model": "zoo:minilm", "steps": [{"pass": "onnx_export"}]})
    report = Report.model_validate(sample_report())
    monkeypatch.setattr(tasks, "run_recipe", lambda recipe, out_dir, **kwargs: report)
    monkeypatch.setattr(tasks, "_package_variants", lambda job, report, work_dir, stored: [])
    monkeypatch.setattr(tasks.Recipe, "parse", staticmethod(lambda raw: raw))

    assert tasks.run_job(job.pk) == Job.Status.SUCCEEDED

    job.refresh_from_db()
    assert job.gate_outcome == "needs_approval"
    actions = list(AuditEntry.objects.filter(job_id=job.pk).values_list("action", flat=True))
    assert actions == ["gate_outcome", "review_requested"]
    assert len(mail.outbox) == 1
