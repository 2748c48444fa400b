"""The fault rules on their own, against the test database: who may re-claim a running job,
when a job counts as lost, who may retry one. (``test_worker_faults.py`` runs them with
real workers, signals and a real broker.)"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tests.support.services import start_redis
from webapp.accounts.models import Membership, Team
from webapp.fleet.models import WorkerNode
from webapp.jobs.models import Job
from webapp.jobs.services import RetryError, cancel_job, mark_lost_jobs, retry_job, revoke_task
from workers.tasks import JobRecorder, _claim

RECIPE = {"model": "zoo:digits-cnn", "steps": [{"pass": "onnx_export"}]}
HOST = "celery@host-a"


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def register(hostname: str, *, seen_ago_s: float = 0, stopped: bool = False) -> WorkerNode:
    now = timezone.now()
    return WorkerNode.objects.create(
        hostname=hostname,
        last_seen=now - timedelta(seconds=seen_ago_s),
        stopped_at=now if stopped else None,
    )


@pytest.fixture
def running_job(make_job):
    def make(**fields) -> Job:
        return make_job(RECIPE, **{"status": Job.Status.RUNNING, "worker": HOST, "attempts": 1, **fields})

    return make


@pytest.mark.django_db
def test_a_queued_job_is_claimed_with_this_process_pid(make_job):
    job = make_job(RECIPE)

    assert _claim(job.pk, HOST, redelivered=False) == "claimed"

    job.refresh_from_db()
    assert (job.status, job.worker, job.worker_pid, job.attempts) == (Job.Status.RUNNING, HOST, os.getpid(), 1)


@pytest.mark.django_db
def test_a_running_job_whose_process_died_on_this_host_is_claimed_again_with_a_log_line(running_job):
    pid = dead_pid()
    job = running_job(worker_pid=pid)

    assert _claim(job.pk, HOST, redelivered=True) == "claimed"

    job.refresh_from_db()
    assert (job.status, job.worker_pid, job.attempts, job.stage) == (Job.Status.RUNNING, os.getpid(), 2, "restarting")
    assert f"attempt 2 of 3: the worker process of the previous attempt (pid {pid} on {HOST}) died" in job.log


@pytest.mark.django_db
def test_a_running_job_whose_process_lives_is_not_claimed_again(running_job):
    job = running_job(worker_pid=os.getppid())  # alive: the process that started these tests

    assert _claim(job.pk, HOST, redelivered=True) == "skipped"

    job.refresh_from_db()
    assert (job.worker_pid, job.attempts) == (os.getppid(), 1)


@pytest.mark.django_db
def test_a_job_whose_process_died_at_the_attempt_limit_is_failed_not_rerun(running_job, settings):
    settings.INFEROPT_JOB_MAX_ATTEMPTS = 3
    job = running_job(worker_pid=dead_pid(), attempts=3)

    assert _claim(job.pk, HOST, redelivered=True) == "failed"

    job.refresh_from_db()
    assert (job.status, job.stage, job.attempts) == (Job.Status.FAILED, "lost", 3)
    assert "gave up after INFEROPT_JOB_MAX_ATTEMPTS=3" in job.error and job.finished_at


@pytest.mark.django_db
def test_another_host_takes_over_a_redelivered_job_only_when_its_worker_is_not_live(running_job):
    register(HOST, seen_ago_s=0)
    job = running_job(worker_pid=12345)
    assert _claim(job.pk, "celery@host-b", redelivered=True) == "skipped"  # host-a may still be running it
    assert _claim(job.pk, "celery@host-b", redelivered=False) == "skipped"  # a duplicate, not a redelivery

    WorkerNode.objects.filter(hostname=HOST).update(stopped_at=timezone.now())
    assert _claim(job.pk, "celery@host-b", redelivered=True) == "claimed"
    job.refresh_from_db()
    assert (job.worker, job.attempts) == ("celery@host-b", 2)


@pytest.mark.django_db
def test_an_attempt_that_was_superseded_writes_nothing_to_the_row(running_job):
    job = running_job(worker_pid=os.getpid())
    Job.objects.filter(pk=job.pk).update(worker="celery@host-b", worker_pid=4242, attempts=2)  # taken over
    stale = JobRecorder(job.pk, claim={"worker": HOST, "worker_pid": os.getpid()})

    stale.set_stage("packaging", "packaging 1 variant(s)")
    assert stale.finish(status=Job.Status.SUCCEEDED) == 0

    job.refresh_from_db()
    assert (job.status, job.worker, job.stage, job.log) == (Job.Status.RUNNING, "celery@host-b", "", "")
    current = JobRecorder(job.pk, claim={"worker": "celery@host-b", "worker_pid": 4242})
    assert current.finish(status=Job.Status.SUCCEEDED) == 1


@pytest.mark.django_db
def test_finished_and_cancelled_jobs_are_never_claimed(make_job):
    for status in (Job.Status.SUCCEEDED, Job.Status.FAILED, Job.Status.CANCELLED):
        job = make_job(RECIPE, status=status, worker=HOST, worker_pid=dead_pid(), attempts=1)
        assert _claim(job.pk, HOST, redelivered=True) == "skipped"
        job.refresh_from_db()
        assert (job.status, job.attempts) == (status, 1)


@pytest.mark.django_db
def test_jobs_of_a_silent_or_stopped_worker_are_marked_lost_and_others_are_left_alone(running_job, settings):
    settings.INFEROPT_WORKER_LIVE_TIMEOUT_S = 60
    register("celery@silent", seen_ago_s=120)
    register("celery@stopped", stopped=True)
    register("celery@live", seen_ago_s=5)
    silent = running_job(worker="celery@silent")
    stopped = running_job(worker="celery@stopped")
    live = running_job(worker="celery@live")
    unknown = running_job(worker="celery@never-registered")

    assert mark_lost_jobs() == 2

    for job in (silent, stopped, live, unknown):
        job.refresh_from_db()
    assert (silent.status, silent.stage) == (Job.Status.FAILED, "lost")
    assert "lost: worker celery@silent sent no heartbeat since" in silent.error and "(timeout 60 s)" in silent.error
    assert "lost: worker celery@stopped stopped at" in stopped.error
    assert live.status == unknown.status == Job.Status.RUNNING
    assert mark_lost_jobs() == 0


@pytest.fixture
def team_members(django_user_model):
    team = Team.objects.create(name="workers")
    alice = django_user_model.objects.create_user("alice", password="pw")
    Membership.objects.create(user=alice, team=team, role=Membership.Role.MEMBER)
    oscar = django_user_model.objects.create_user("oscar", password="pw")
    return alice, oscar


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_retry_submits_the_same_recipe_as_a_new_job_for_a_teammate_only(make_job, team_members):
    # Inside the test's transaction nothing commits, so nothing is sent: the broker is not under test here.
    alice, oscar = team_members
    failed = make_job(RECIPE, status=Job.Status.FAILED, error="lost: worker celery@x sent no heartbeat")

    assert client_for(oscar).post(f"/jobs/{failed.pk}/retry/").status_code == 404
    assert client_for(alice).get(f"/jobs/{failed.pk}/retry/").status_code == 405
    assert not Job.objects.filter(retry_of=failed).exists()

    response = client_for(alice).post(f"/jobs/{failed.pk}/retry/")

    retry = Job.objects.get(retry_of=failed)
    assert response["Location"] == f"/jobs/{retry.pk}/"
    assert (retry.status, retry.recipe, retry.team, retry.submitter) == (Job.Status.QUEUED, RECIPE, failed.team, alice)
    assert retry.celery_task_id and retry.celery_task_id != failed.celery_task_id


@pytest.mark.django_db
def test_running_queued_and_succeeded_jobs_cannot_be_retried(make_job, team_members):
    alice, _ = team_members
    for status in (Job.Status.QUEUED, Job.Status.RUNNING, Job.Status.SUCCEEDED):
        job = make_job(RECIPE, status=status)
        with pytest.raises(RetryError, match="only failed or cancelled jobs can be retried"):
            retry_job(alice, job)
        assert client_for(alice).post(f"/jobs/{job.pk}/retry/").status_code == 302
        assert 'id="retry-job"' not in client_for(alice).get(f"/jobs/{job.pk}/").content.decode()
    assert not Job.objects.filter(retry_of__isnull=False).exists()


@pytest.mark.django_db(transaction=True)
def test_cancelling_a_queued_job_after_redis_went_down_returns_instead_of_retrying_forever(
    make_job, settings, tmp_path
):
    from tests.workers.test_worker_faults import web_broker

    settings.INFEROPT_ENQUEUE_MAX_RETRIES = 1
    job = make_job(RECIPE, celery_task_id="t-down")
    server = start_redis(tmp_path / "redis")
    outcome: list[Job] = []
    try:
        with web_broker(server.url):
            revoke_task("warm-up")  # the web process has a live broker connection, as after any page that sent a job
            server.stop()  # then Redis goes away: a plain revoke would retry its publish forever
            caller = threading.Thread(target=lambda: outcome.append(cancel_job(job)), daemon=True)
            caller.start()
            caller.join(timeout=60)
    finally:
        server.stop()
    assert not caller.is_alive(), "cancel_job hung on the unreachable broker"
    (cancelled,) = outcome
    assert (cancelled.status, cancelled.cancel_requested) == (Job.Status.CANCELLED, True)
