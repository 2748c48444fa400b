"""Pytest fixtures around ``tests.support.services``: a real Redis server and Celery worker.

A pytest plugin: a test folder that needs ``redis_server``, ``celery_worker`` or
``worker_media`` loads it from its ``conftest.py``::

    def pytest_configure(config):
        config.pluginmanager.import_plugin("tests.support.fixtures")

Loading it twice (tests/workers and tests/e2e in one run) is a no-op, so one
session shares one Redis server and one worker. Its ``pytest_configure`` makes
an SQLite test database a file, so it must be loaded before the test database
is created (any conftest's ``pytest_configure`` is early enough).

The worker reads and writes the same test database as the tests, so tests that
use it need a transactional database (``@pytest.mark.django_db(transaction=True)``
or ``live_server``): rows must be committed for another process to see them.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings

from tests.support.services import (
    CeleryWorker,
    RedisServer,
    database_url,
    start_celery_worker,
    start_redis,
    use_file_sqlite_test_database,
)

_sqlite_folder: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    # Before the test database exists: an SQLite one must be a file the worker can open.
    # Safe to run from several conftest files: only the first call changes anything.
    global _sqlite_folder
    folder = use_file_sqlite_test_database(django_settings.DATABASES)
    if folder is not None:
        _sqlite_folder = folder


def pytest_unconfigure(config: pytest.Config) -> None:
    if _sqlite_folder is not None:
        shutil.rmtree(_sqlite_folder, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def celery_worker(
    django_db_setup: None, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CeleryWorker]:
    """One worker for the session, on queue ``cpu``, against the test database, with a shared Redis cache
    (``redis_server.cache_url``) as ``make run`` gives it."""
    from django.db import connection

    data_dir = tmp_path_factory.mktemp("worker-data")
    worker = start_celery_worker(
        redis_url=redis_server.url,
        database_url=database_url(connection.settings_dict),
        data_dir=data_dir,
        log_path=data_dir / "worker.log",
        env={"INFEROPT_CACHE_URL": redis_server.cache_url},
    )
    yield worker
    worker.stop()


@pytest.fixture
def worker_media(celery_worker: CeleryWorker, settings: Any) -> Path:
    """Point this process's storage at the worker's media folder, so artifacts open here."""
    media = celery_worker.data_dir / "media"
    settings.MEDIA_ROOT = media
    return media
