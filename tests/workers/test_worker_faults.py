"""Worker faults with real processes and real signals: each test kills, stops or starves something.

Every test that breaks a worker or the broker starts its own (``fault_worker``: a private
``redis-server`` and ``celery worker``, queue ``cpu``), so the session's worker stays healthy
for the others. Jobs are real recipes (the digits CNN exported to ONNX, a few seconds);
nothing in the worker is mocked or slowed down for the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from tests.support.services import CeleryWorker, RedisServer, database_url, start_celery_worker, start_redis
from webapp.accounts.models import Membership, Team
from webapp.jobs.models import Artifact, Job

#: A real job of some seconds: export the digits CNN to ONNX, evaluate, time both in their own processes.
DIGITS_EXPORT = {
    "model": "zoo:digits-cnn",
    "steps": [{"pass": "onnx_export"}],
    "benchmark": {"batch_sizes": [1], "threads": 1},
    "evaluation": {"max_samples": 16},
}
#: Shorter, for tests that need a running job but no artifact: the digits CNN evaluated and timed as it is.
DIGITS_BASELINE = {**DIGITS_EXPORT, "steps": []}
#: Two steps, so there is a boundary at which a cancel request is honoured.
DIGITS_EXPORT_THEN_QUANTIZE = {
    **DIGITS_EXPORT,
    "steps": [{"pass": "onnx_export"}, {"pass": "ort_quantize_static", "calibration_samples": 64}],
}


@pytest.fixture(scope="module")
def built_digits_cnn():
    """Build (or reuse) the demo CNN here, so a job's time goes to its recipe."""
    from optimizers.resolve import resolve_model

    return resolve_model("zoo:digits-cnn")


@contextlib.contextmanager
def fault_worker(tmp_path: Path, *, redis_server: RedisServer | None = None, **env: str) -> Iterator[CeleryWorker]:
    """A private Redis (unless given) and Celery worker for one test; both stopped afterwards."""
    own_redis = redis_server is None
    server = redis_server or start_redis(tmp_path / "redis")
    worker = None
    try:
        worker = start_celery_worker(
            redis_url=server.url,
            database_url=database_url(connection.settings_dict),
            data_dir=tmp_path / "worker",
            log_path=tmp_path / "worker" / "worker.log",
            env=env,
        )
        worker.redis = server  # type: ignore[attr-defined]
        yield worker
    finally:
        if worker is not None:
            _kill_group(worker)
        if own_redis:
            server.stop()


def _kill_group(worker: CeleryWorker) -> None:
    """SIGKILL the worker's process group (also right for a SIGSTOPped one) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.process.pid, signal.SIGKILL)
    worker.process.wait()


@contextlib.contextmanager
def web_broker(redis_url: str) -> Iterator[None]:
    """Point the web side's Celery app (``send_task``, ``control``) at ``redis_url``, then back.

    The app caches a producer pool bound to the broker it first used: dropped on the way in
    and out, or later sends would go on trying this test's (stopped) Redis.
    """
    from workers.celery import app

    def use(url: str) -> None:
        app.conf.broker_url = url
        app.close()
        app.amqp._producer_pool = None

    previous = app.conf.broker_url
    use(redis_url)
    try:
        yield
    finally:
        use(previous)


def publish(redis_url: str, job: Job, **options: Any) -> None:
    """Send ``inferopt.run_job`` for ``job`` to the broker at ``redis_url`` (its task id = the row's)."""
    from workers.tasks import run_job

    with run_job.app.connection_for_write(redis_url) as broker:
        run_job.apply_async((job.pk,), connection=broker, task_id=job.celery_task_id or None, **options)


def wait_until(condition: Callable[[], Any], worker: CeleryWorker, what: str, timeout: float = 120.0) -> Any:
    """Poll ``condition`` until it returns something true; fail with the worker's log otherwise."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{worker.log_tail(60)}")
        time.sleep(0.1)
    return result


def running_attempt(job_id: int, attempt: int) -> Callable[[], Job | None]:
    """A condition: job ``job_id`` is running attempt ``attempt`` past its claim (its recipe has started)."""

    def check() -> Job | None:
        job = Job.objects.get(pk=job_id)
        started = job.stage not in ("", "starting", "restarting")
        return job if job.status == Job.Status.RUNNING and job.attempts == attempt and started else None

    return check


def final(job_id: int) -> Callable[[], Job | None]:
    def check() -> Job | None:
        job = Job.objects.get(pk=job_id)
        return job if job.is_final else None

    return check


def task_returned(worker: CeleryWorker, job: Job) -> None:
    """Wait until the task returned (the row is final a moment before its ``finally`` cleans up)."""
    line = f"Task inferopt.run_job[{job.celery_task_id}] succeeded"
    wait_until(lambda: line in worker.log_text(), worker, f"job {job.pk}'s task to return")


def pool_child_pid(worker: CeleryWorker, job: Job) -> int:
    """The pid the row recorded, checked to be a child of the worker's main process."""
    stat = Path(f"/proc/{job.worker_pid}/stat").read_text()
    parent = int(stat.rsplit(")", 1)[1].split()[1])
    assert parent == worker.process.pid, f"pid {job.worker_pid} is not a pool child of the worker"
    return job.worker_pid


def stored_files(worker: CeleryWorker, job: Job) -> list[str]:
    folder = worker.data_dir / "media" / "jobs" / str(job.pk)
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def queued_task_ids(redis_url: str, queue: str = "cpu") -> list[str]:
    client = redis.Redis.from_url(redis_url)
    try:
        return [json.loads(raw)["headers"]["id"] for raw in client.lrange(queue, 0, -1)]
    finally:
        client.close()


def unacked(redis_url: str) -> list[str]:
    """Task ids of messages delivered but not acknowledged (kombu's ``unacked`` hash)."""
    client = redis.Redis.from_url(redis_url)
    try:
        return [json.loads(raw)[0]["headers"]["id"] for raw in client.hvals("unacked")]
    finally:
        client.close()


@pytest.fixture
def make_job(make_job: Callable[..., Job]) -> Callable[..., Job]:
    """The conftest's ``make_job`` with a task id, so the message can be found and revoked."""
    import uuid

    def make(recipe: dict[str, Any], **fields: Any) -> Job:
        return make_job(recipe, celery_task_id=str(uuid.uuid4()), **fields)

    return make


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_kill_9_of_the_pool_child_reruns_the_job_once_or_fails_it_after_the_attempt_limit(
    built_digits_cnn, make_job, tmp_path
):
    with fault_worker(tmp_path, INFEROPT_JOB_MAX_ATTEMPTS="2") as worker:
        # Killed once: the redelivered message re-claims the job and it finishes, once.
        job = make_job(DIGITS_EXPORT)
        publish(worker.redis.url, job)
        running = wait_until(running_attempt(job.pk, 1), worker, "attempt 1 to run")
        os.kill(pool_child_pid(worker, running), signal.SIGKILL)
        job = wait_until(final(job.pk), worker, "the job to end")

        assert job.status == Job.Status.SUCCEEDED, f"{job.error}\n{worker.log_tail()}"
        assert job.attempts == 2
        assert job.worker_pid != running.worker_pid
        assert f"attempt 2 of 2: the worker process of the previous attempt (pid {running.worker_pid}" in job.log
        (artifact,) = job.artifacts.all()
        assert stored_files(worker, job) == [Path(artifact.file.name).name], "only the published zip is stored"
        assert "WorkerLostError" in worker.log_text()

        # Killed on every attempt: failed at the limit, never left running.
        job = make_job(DIGITS_EXPORT)
        publish(worker.redis.url, job)
        for attempt in (1, 2):
            running = wait_until(running_attempt(job.pk, attempt), worker, f"attempt {attempt} to run")
            os.kill(pool_child_pid(worker, running), signal.SIGKILL)
        job = wait_until(final(job.pk), worker, "the job to be failed")
        task_returned(worker, job)

        assert job.status == Job.Status.FAILED
        assert job.stage == "lost"
        assert job.attempts == 2
        assert f"(pid {running.worker_pid} on {running.worker}) died before it finished" in job.error
        assert "gave up after INFEROPT_JOB_MAX_ATTEMPTS=2" in job.error
        assert not job.artifacts.exists() and stored_files(worker, job) == []
        assert not (worker.data_dir / "work" / str(job.pk)).exists()
        assert worker.is_alive()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_sigterm_lets_the_running_job_finish_and_leaves_the_queued_one_on_the_queue(
    built_digits_cnn, make_job, tmp_path
):
    with fault_worker(tmp_path) as worker:
        running_job = make_job(DIGITS_BASELINE)
        waiting_job = make_job(DIGITS_BASELINE)
        publish(worker.redis.url, running_job)
        publish(worker.redis.url, waiting_job)
        wait_until(running_attempt(running_job.pk, 1), worker, "the first job to run")

        os.kill(worker.process.pid, signal.SIGTERM)  # the main process only: a warm shutdown
        wait_until(lambda: worker.process.poll() is not None, worker, "the worker to exit", 180)

        running_job.refresh_from_db()
        waiting_job.refresh_from_db()
        log = worker.log_tail()
        assert running_job.status == Job.Status.SUCCEEDED, f"{running_job.error}\n{log}"
        assert running_job.attempts == 1
        waiting = (waiting_job.status, waiting_job.attempts, waiting_job.started_at)
        assert waiting == (Job.Status.QUEUED, 0, None), log
        # The unfinished job's message is back on the queue for the next worker (not held as unacknowledged
        # until the visibility timeout); the finished one's is gone.
        assert queued_task_ids(worker.redis.url) == [waiting_job.celery_task_id], f"{unacked(worker.redis.url)}\n{log}"
        assert "Warm shutdown" in worker.log_text()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_redis_restart_during_a_job_still_ends_it_and_the_worker_takes_new_jobs(built_digits_cnn, make_job, tmp_path):
    server = start_redis(tmp_path / "redis")
    try:
        with fault_worker(tmp_path, redis_server=server) as worker:
            job = make_job(DIGITS_BASELINE)
            publish(server.url, job)
            wait_until(running_attempt(job.pk, 1), worker, "the job to run")

            port = server.port
            server.stop()  # Redis keeps nothing on disk: the job's message is gone with it
            server = start_redis(tmp_path / "redis-again", port=port)
            job = wait_until(final(job.pk), worker, "the job to end")

            assert job.status == Job.Status.SUCCEEDED, f"{job.error}\n{worker.log_tail()}"
            assert job.attempts == 1
            # The worker reconnected: a job sent after the restart runs too (and fails fast, by design).
            after = make_job({**DIGITS_EXPORT, "steps": [{"pass": "no_such_pass"}]})
            publish(server.url, after)
            after = wait_until(final(after.pk), worker, "a job sent after the restart to run")
            assert after.status == Job.Status.FAILED and "no_such_pass" in after.error
    finally:
        server.stop()


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """Mount a ``size`` tmpfs at ``folder`` (needs root with CAP_SYS_ADMIN; else skip)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip() or mounted.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_disk_full_while_storing_an_artifact_fails_the_job_and_publishes_nothing(built_digits_cnn, make_job, tmp_path):
    # The artifacts' storage (MEDIA_ROOT = <data dir>/media) is a 16 KiB disk: the zip does not fit.
    with small_tmpfs(tmp_path / "worker" / "media", "16k") as media, fault_worker(tmp_path) as worker:
        job = make_job(DIGITS_EXPORT)
        publish(worker.redis.url, job)
        job = wait_until(final(job.pk), worker, "the job to end")
        task_returned(worker, job)

        assert job.status == Job.Status.FAILED
        assert "No space left on device" in job.error
        assert not Artifact.objects.filter(job=job).exists()
        leftovers = [path for path in media.rglob("*") if path.is_file()]
        assert leftovers == [], "a half-written artifact was left in storage"
        assert not (worker.data_dir / "work" / str(job.pk)).exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_job_whose_worker_stops_heartbeating_is_marked_lost_and_retried_from_the_page(
    built_digits_cnn, make_job, tmp_path, settings
):
    alice = get_user_model().objects.create_user("alice", password="pw")
    team = Team.objects.create(name="workers")
    Membership.objects.create(user=alice, team=team, role=Membership.Role.MEMBER)
    outsider = get_user_model().objects.create_user("oscar", password="pw")
    with fault_worker(tmp_path, INFEROPT_WORKER_HEARTBEAT_S="1") as worker:
        job = make_job(DIGITS_EXPORT)
        publish(worker.redis.url, job)
        wait_until(running_attempt(job.pk, 1), worker, "the job to run")

        os.killpg(worker.process.pid, signal.SIGSTOP)  # the whole worker freezes: no heartbeat, no progress
        settings.INFEROPT_WORKER_LIVE_TIMEOUT_S = 3
        client = Client()
        client.force_login(alice)
        deadline = time.monotonic() + 30
        while Job.objects.get(pk=job.pk).status == Job.Status.RUNNING:  # the job page runs the sweep
            assert time.monotonic() < deadline, "the job was never marked lost"
            assert client.get(f"/jobs/{job.pk}/").status_code == 200
            time.sleep(0.5)

        job.refresh_from_db()
        assert (job.status, job.stage) == (Job.Status.FAILED, "lost")
        assert f"lost: worker {job.worker} sent no heartbeat since" in job.error
        page = client.get(f"/jobs/{job.pk}/").content.decode()
        assert 'id="retry-job"' in page and "lost: worker" in page

        outsider_client = Client()
        outsider_client.force_login(outsider)
        assert outsider_client.post(f"/jobs/{job.pk}/retry/").status_code == 404

        with web_broker(worker.redis.url):  # the Retry button publishes to this test's broker
            response = client.post(f"/jobs/{job.pk}/retry/")  # sent on commit: at once, outside a transaction
        retry = Job.objects.get(retry_of=job)
        assert response.status_code == 302 and response["Location"] == f"/jobs/{retry.pk}/"
        assert (retry.status, retry.recipe, retry.queue, retry.submitter) == (
            Job.Status.QUEUED,
            job.recipe,
            job.queue,
            alice,
        )
        assert retry.celery_task_id in queued_task_ids(worker.redis.url)
        assert 'id="retry-of"' in client.get(f"/jobs/{retry.pk}/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_job_past_its_soft_time_limit_fails_with_the_limit_and_leaves_no_files(
    built_digits_cnn, make_job, enqueue, wait_for_final, celery_worker, worker_media, wait_for_worker_log
):
    job = make_job(DIGITS_EXPORT_THEN_QUANTIZE)

    enqueue(job, task_id=job.celery_task_id, soft_time_limit=2, time_limit=120)
    job = wait_for_final(job.pk, timeout=120)
    wait_for_worker_log(f"Task inferopt.run_job[{job.celery_task_id}] succeeded")  # returned after cleaning up

    assert job.status == Job.Status.FAILED
    assert job.error == "exceeded the time limit of 2 s"
    assert not job.artifacts.exists()
    assert not (celery_worker.data_dir / "work" / str(job.pk)).exists(), "the work folder must be removed"
    assert not (worker_media / "jobs" / str(job.pk)).exists()


@pytest.mark.django_db(transaction=True)
def test_a_job_past_its_hard_time_limit_is_failed_by_the_main_process_and_its_files_removed(
    built_digits_cnn, make_job, enqueue, wait_for_final, celery_worker, wait_for_worker_log
):
    job = make_job(DIGITS_EXPORT_THEN_QUANTIZE)

    enqueue(job, task_id=job.celery_task_id, soft_time_limit=4, time_limit=6)
    running = wait_until(running_attempt(job.pk, 1), celery_worker, "the job to run")
    # A child that cannot answer the soft limit (stuck in native code, swapping): Celery kills it at the
    # hard limit, and nothing in the child can clean up or write the row.
    os.kill(pool_child_pid(celery_worker, running), signal.SIGSTOP)
    job = wait_for_final(job.pk, timeout=120)

    assert job.status == Job.Status.FAILED
    assert job.error == "exceeded the hard time limit of 6 s: the worker process was killed"
    assert not job.artifacts.exists()
    work_dir = celery_worker.data_dir / "work" / str(job.pk)
    wait_until(lambda: not work_dir.exists(), celery_worker, "the killed job's work folder to be removed", 30)
    wait_for_worker_log(f"Hard time limit (6s) exceeded for inferopt.run_job[{job.celery_task_id}]")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_cancel_from_the_page_revokes_a_queued_job_and_stops_a_running_one_at_a_step_boundary(
    built_digits_cnn, make_job, enqueue, wait_for_final, celery_worker, api_broker, wait_for_worker_log
):
    alice = get_user_model().objects.create_user("alice", password="pw")
    team = Team.objects.create(name="workers")
    Membership.objects.create(user=alice, team=team, role=Membership.Role.MEMBER)
    client = Client()
    client.force_login(alice)
    running = make_job(DIGITS_EXPORT_THEN_QUANTIZE)
    queued = make_job(DIGITS_EXPORT)
    enqueue(running, task_id=running.celery_task_id)
    enqueue(queued, task_id=queued.celery_task_id)  # waits: the worker runs one job at a time
    deadline = time.monotonic() + 120
    while "onnx_export" not in Job.objects.get(pk=running.pk).stage:
        assert time.monotonic() < deadline, celery_worker.log_tail()
        time.sleep(0.05)

    assert client.post(f"/jobs/{running.pk}/cancel/").status_code == 302  # while step 1 runs
    assert client.post(f"/jobs/{queued.pk}/cancel/").status_code == 302
    queued.refresh_from_db()
    assert queued.status == Job.Status.CANCELLED  # at once, and revoked
    running = wait_for_final(running.pk)

    assert running.status == Job.Status.CANCELLED, f"{running.status}: {running.error}"
    assert "ort_quantize_static" not in running.log, "step 2 must not start"
    assert not running.artifacts.exists()
    wait_for_worker_log(f"Discarding revoked task: inferopt.run_job[{queued.celery_task_id}]")
    queued.refresh_from_db()
    assert (queued.attempts, queued.started_at) == (0, None)
