"""Real services for tests: a private redis-server and a Celery worker subprocess.

Shared by ``tests/workers`` and ``tests/e2e``. Nothing here is mocked: the
worker is the same ``celery -A workers.celery worker`` a user runs, pointed at
the test database through ``DATABASE_URL``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Line our ``worker_ready`` handler logs once the worker consumes its queues.
WORKER_READY_TEXT = "consuming queues:"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stop_process_group(process: subprocess.Popen, patience: float) -> None:
    """TERM the process group led by ``process``, then KILL what is left after ``patience``."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=patience)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


@dataclass
class RedisServer:
    """A ``redis-server`` keeping nothing on disk, on its own free port."""

    process: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def cache_url(self) -> str:
        """Database 1: the Django cache the workers and the web side share (``INFEROPT_CACHE_URL``)."""
        return f"redis://127.0.0.1:{self.port}/1"

    def stop(self) -> None:
        _stop_process_group(self.process, patience=5)


def start_redis(workdir: Path, *, timeout: float = 10.0, port: int | None = None) -> RedisServer:
    """Start ``redis-server`` on ``port`` or a free one (``make test`` installs it if missing)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (make test installs the Debian package redis-server)")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--daemonize", "no", "--dir", str(workdir), "--logfile", str(workdir / "redis.log")],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = RedisServer(process=process, port=port)
    client = redis.Redis.from_url(server.url, socket_connect_timeout=1, socket_timeout=1)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                client.ping()
                return server
            except (redis.RedisError, OSError) as error:
                if process.poll() is not None or time.monotonic() > deadline:
                    server.stop()
                    log = _tail(workdir / "redis.log")
                    raise RuntimeError(f"redis-server did not start on port {port}: {log}") from error
                time.sleep(0.05)
    finally:
        client.close()


def use_file_sqlite_test_database(databases: dict[str, Any]) -> Path | None:
    """Point an SQLite ``default`` database's test copy at a file in a new temp folder.

    pytest-django's SQLite test database lives in memory by default, which a
    worker subprocess cannot see. Call this before the test database is
    created (e.g. from ``pytest_configure``); returns the folder to remove at
    the end, or None when nothing changed (not SQLite, or a name already set).
    """
    default = databases["default"]
    if not default["ENGINE"].endswith("sqlite3"):
        return None
    test_settings = default.setdefault("TEST", {})
    if test_settings.get("NAME"):
        return None
    folder = Path(tempfile.mkdtemp(prefix="inferopt-testdb-"))
    test_settings["NAME"] = str(folder / "test.sqlite3")
    return folder


def database_url(settings_dict: Mapping[str, Any]) -> str:
    """A ``DATABASE_URL`` for a Django connection's settings (the test database once set up)."""
    engine = settings_dict["ENGINE"]
    name = str(settings_dict["NAME"])
    if engine.endswith("sqlite3"):
        if name == ":memory:" or name.startswith("file:"):
            raise RuntimeError(
                "the SQLite test database is in memory, so a worker process cannot see it: "
                "call tests.support.services.use_file_sqlite_test_database first"
            )
        return f"sqlite:///{Path(name).resolve()}"
    if engine.endswith("postgresql"):
        user = quote(settings_dict.get("USER") or "", safe="")
        password = quote(settings_dict.get("PASSWORD") or "", safe="")
        credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = settings_dict.get("HOST") or "127.0.0.1"
        port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
        return f"postgres://{credentials}{host}{port}/{quote(name, safe='')}"
    raise RuntimeError(f"no DATABASE_URL form known for the database engine {engine}")


@dataclass
class CeleryWorker:
    """A ``celery -A workers.celery worker`` subprocess and where its output goes."""

    process: subprocess.Popen
    log_path: Path
    hostname: str
    data_dir: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def is_alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        # Warm shutdown first (lets a finishing task write its row), then kill the group.
        _stop_process_group(self.process, patience=20)


def start_celery_worker(
    *,
    redis_url: str,
    database_url: str,
    data_dir: Path,
    log_path: Path,
    queues: str = "cpu",
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> CeleryWorker:
    """Start one prefork worker (concurrency 1) and wait until it consumes ``queues``.

    The worker runs jobs with the short benchmark settings
    (``INFEROPT_QUICK_BENCHMARK=1``) and keeps its media and work folders
    under ``data_dir``. ``env`` adds or overrides environment variables.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    hostname = f"test-{uuid.uuid4().hex[:8]}@%h"
    worker_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "INFEROPT_DATA_DIR": str(data_dir),
        "INFEROPT_QUICK_BENCHMARK": "1",
        # Short capability heartbeat: transactional tests flush the registry row between tests.
        "INFEROPT_WORKER_HEARTBEAT_S": "5",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    command = [sys.executable, "-m", "celery", "-A", "workers.celery", "worker", "-Q", queues]
    command += ["--concurrency", "1", "-P", "prefork", "--loglevel", "INFO", "-n", hostname]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=worker_env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = CeleryWorker(process=process, log_path=log_path, hostname=hostname, data_dir=data_dir)
    deadline = time.monotonic() + timeout
    while WORKER_READY_TEXT not in worker.log_text():
        if not worker.is_alive() or time.monotonic() > deadline:
            worker.stop()
            raise RuntimeError(f"the Celery worker did not become ready:\n{worker.log_tail()}")
        time.sleep(0.2)
    return worker


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
