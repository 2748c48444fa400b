"""Fixtures for worker tests. ``redis_server``, ``celery_worker`` and ``worker_media``
(a real Redis server and Celery worker subprocess) come from ``tests/support/fixtures.py``.

The worker reads and writes the same test database as the tests, so tests that
use it need ``@pytest.mark.django_db(transaction=True)`` (rows must be committed
for another process to see them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from tests.support.services import CeleryWorker, RedisServer
from webapp.accounts.models import Team
from webapp.catalog.models import ModelEntry
from webapp.jobs.models import Job


def pytest_configure(config: pytest.Config) -> None:
    # redis_server, celery_worker and worker_media (shared with tests/e2e: one worker per session).
    config.pluginmanager.import_plugin("tests.support.fixtures")


@pytest.fixture
def make_job(django_user_model: Any) -> Callable[..., Job]:
    """Create a queued job for ``recipe`` (owned by alice of team "workers")."""

    def make(recipe: dict[str, Any], **fields: Any) -> Job:
        team, _ = Team.objects.get_or_create(name="workers")
        alice, _ = get_user_model().objects.get_or_create(username="alice")
        entry, _ = ModelEntry.objects.get_or_create(
            name=recipe["model"],
            defaults={"reference": recipe["model"], "task": "feature-extraction", "source": "zoo"},
        )
        return Job.objects.create(team=team, submitter=alice, name="worker test", model=entry, recipe=recipe, **fields)

    return make


@pytest.fixture
def enqueue(redis_server: RedisServer) -> Callable[..., None]:
    """Publish ``inferopt.run_job`` for a job to the test broker (queue ``cpu``).

    Keyword arguments go to ``apply_async`` (e.g. ``soft_time_limit``).
    """
    from workers.tasks import run_job

    def publish(job: Job, **options: Any) -> None:
        with run_job.app.connection_for_write(redis_server.url) as connection:
            run_job.apply_async((job.pk,), connection=connection, **options)

    return publish


@pytest.fixture
def wait_for_final(celery_worker: CeleryWorker) -> Callable[..., Job]:
    """Poll a job's row until it is succeeded/failed/cancelled; fail with the worker's log otherwise."""

    def wait(job_id: int, timeout: float = 600.0) -> Job:
        deadline = time.monotonic() + timeout
        while True:
            job = Job.objects.get(pk=job_id)
            if job.is_final:
                return job
            if not celery_worker.is_alive():
                pytest.fail(f"the worker died while job {job_id} was {job.status}:\n{celery_worker.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"job {job_id} still {job.status} ({job.stage}) after {timeout:.0f}s:\n{celery_worker.log_tail()}"
                )
            time.sleep(0.25)

    return wait


@pytest.fixture
def wait_for_worker_log(celery_worker: CeleryWorker) -> Callable[..., None]:
    """Wait until the worker's output contains a text."""

    def wait(text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in celery_worker.log_text():
            if time.monotonic() > deadline:
                pytest.fail(f"the worker never logged {text!r}:\n{celery_worker.log_tail()}")
            time.sleep(0.1)

    return wait


@pytest.fixture
def api_broker(redis_server: RedisServer) -> Iterator[str]:
    """Point the web side's Celery app at the test broker, so an API submission reaches the worker."""
    from workers.celery import app

    previous = app.conf.broker_url
    app.conf.broker_url = redis_server.url
    app.close()
    yield redis_server.url
    app.conf.broker_url = previous
    app.close()


def page_for(user, job) -> str:
    """The job page as ``user`` sees it (asserts it answers 200)."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    response = client.get(f"/jobs/{job.pk}/")
    assert response.status_code == 200
    return response.content.decode()
