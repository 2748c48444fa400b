"""Simulated users browse the job pages while small jobs run on Celery workers: page latency and job accounting.

Usage: ``python benchmarks/load.py [--users 50] [--jobs 100] [--workers 2] [--web-workers 4] [--web-threads 4]``

What runs, all started here and stopped on exit (Ctrl-C too):

* a fresh PostgreSQL database ``inferopt_load_<hex>`` on ``--postgres`` (trust auth), migrated, then dropped;
* a private ``redis-server`` on a free port (the broker);
* gunicorn serving ``webapp.wsgi`` as ``make run`` does (gthread; ``--web-workers`` × ``--web-threads``) and
  ``--workers`` Celery workers (``-Q cpu``, concurrency 1, the short benchmark settings), with
  ``DATABASE_CONN_MAX_AGE=60`` and the cache in the same Redis (database 1) as in ``docker/docker-compose.yml``;
* one team, ``--users`` members who sign in through the real login form (CSRF token and all) and an API token
  that submits ``--jobs`` jobs through ``POST /api/v1/jobs``: ``zoo:digits-cnn`` → ``prune_unstructured``, evaluated
  and timed with the quick settings (a few seconds each).

Each simulated user loops: the team's job list (page 2 now and then), think, one job's page, and while
that job is active the status block htmx polls every 2 s, until the user moves on. Think times are
uniform in ``--think`` seconds. Page latencies count from the first job submission until every job is
final (or ``--drain-timeout`` passes); the sign-ins and submissions are reported apart.

Job accounting, from the database rows and the workers' logs: every submitted job reached a final
state (none lost: still queued/running at the deadline), none ran twice (``attempts`` = 1, one
"claimed" line in the workers' logs, one set of artifacts: as many rows as the report has candidate
variants, each file in storage once), and none failed.

Not a test: nothing here asserts a speed. The latency target (p95 of all pages ≤ ``--target-p95-ms``)
is reported as met or not; the exit status is 1 only when the job accounting fails.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import redis
import requests
from psycopg import sql
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: The smallest real job: prune 30% of the digits CNN's weights (no fine-tuning), evaluate both, time both briefly.
JOB_RECIPE: dict[str, Any] = {
    "model": "zoo:digits-cnn",
    "steps": [{"pass": "prune_unstructured", "sparsity": 0.3, "finetune_steps": 0}],
    "profile": False,
    "benchmark": {"batch_sizes": [1]},
    "evaluation": {"max_samples": 64},
}
TEAM = "load"
#: Line ``workers/celery.py`` logs once a worker consumes its queues.
WORKER_READY_TEXT = "consuming queues:"
#: ``workers/tasks.run_job`` logs this once per claim of a job.
CLAIM_LINE = re.compile(r"job (\d+) claimed by ")
JOB_LINK = re.compile(r'href="/jobs/(\d+)/"')
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
PAGE_KINDS = ("job list", "job detail", "job status")
REQUEST_TIMEOUT_S = 60


# --- results ---------------------------------------------------------------------------------------


class LatencyRow(BaseModel):
    kind: str
    requests: int
    errors: int
    #: ``{"HTTP 500": n, "ReadTimeout": n, ...}``
    error_reasons: dict[str, int]
    #: GETs sent again after the server closed the kept-alive connection they reused, as browsers do.
    retries: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None


class JobAccounting(BaseModel):
    submitted: int
    final: int
    succeeded: int
    failed: int
    cancelled: int
    #: Submitted jobs still queued or running at the drain deadline, or with no row at all.
    lost: list[int]
    #: Jobs claimed more than once (attempts, workers' log) or with more than one set of artifacts.
    duplicated: list[int]
    #: Job rows of the team that no submission created.
    unexpected: list[int]
    #: ``{job id: error}`` of failed or cancelled jobs.
    errors: dict[int, str]
    run_seconds_p50: float | None
    run_seconds_max: float | None
    drain_seconds: float

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected or self.errors) and self.final == self.submitted


class LoadReport(BaseModel):
    started_at: str
    settings: dict[str, Any]
    machine: dict[str, Any]
    load_average_before: list[float]
    load_average_after: list[float]
    measured_seconds: float
    pages_per_second: float
    #: CPU seconds each part used during the measured window (this script = the simulated users' load generator).
    cpu_seconds: dict[str, float]
    pages: list[LatencyRow]
    other: list[LatencyRow]
    target_p95_ms: float
    target_met: bool
    jobs: JobAccounting
    ok: bool


# --- latency samples -------------------------------------------------------------------------------


Sample = tuple[str, float, float, str, bool]


@dataclass
class Samples:
    """Thread-safe samples from every simulated user: (kind, start time, ms, error or "", retried)."""

    rows: list[Sample] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, started: float, error: str = "", retried: bool = False) -> None:
        with self.lock:
            self.rows.append((kind, started, (time.monotonic() - started) * 1000, error, retried))

    def between(self, start: float, end: float) -> list[Sample]:
        with self.lock:
            return [row for row in self.rows if start <= row[1] <= end]


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil without floats drifting
    return ordered[int(rank) - 1]


def latency_row(kind: str, rows: list[Sample]) -> LatencyRow:
    times = [ms for _, _, ms, error, _ in rows if not error]
    reasons = Counter(error for _, _, _, error, _ in rows if error)
    return LatencyRow(
        kind=kind,
        requests=len(rows),
        errors=sum(reasons.values()),
        error_reasons=dict(reasons),
        retries=sum(1 for *_, retried in rows if retried),
        p50_ms=percentile(times, 50),
        p95_ms=percentile(times, 95),
        p99_ms=percentile(times, 99),
        max_ms=max(times) if times else None,
    )


# --- services --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def group_cpu_seconds(process_group: int) -> float:
    """CPU seconds used by the live processes of a process group, with the children they have waited for."""
    total_ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # exited meanwhile
        # After the command name: state, ppid, pgrp, ..., utime (12th), stime, cutime, cstime.
        if int(fields[2]) == process_group:
            total_ticks += sum(int(value) for value in fields[11:15])
    return total_ticks / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(services: list[Service]) -> dict[str, float]:
    """CPU seconds so far: gunicorn, the Celery workers (with their benchmark subprocesses), this script."""
    workers = [service for service in services if service.name.startswith("celery")]
    web = [service for service in services if service.name == "gunicorn"]
    own = os.times()
    return {
        "gunicorn": sum(group_cpu_seconds(service.process.pid) for service in web),
        "celery workers": sum(group_cpu_seconds(service.process.pid) for service in workers),
        "load generator": own.user + own.system,
    }


@dataclass
class Service:
    """A child process in its own process group (so stopping it stops its children too)."""

    name: str
    process: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, patience: float) -> None:
        """TERM the group (Celery: warm shutdown, the running task finishes), KILL what is left after ``patience``."""
        if self.alive():
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=patience)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


def start_service(name: str, command: list[str], env: dict[str, str], log_path: Path) -> Service:
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Service(name, process, log_path)


def wait_until(check: Callable[[], bool], service: Service, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if not service.alive() or time.monotonic() > deadline:
            tail = "\n".join(service.log_text().splitlines()[-30:])
            raise RuntimeError(f"{service.name} did not {what}:\n{tail}")
        time.sleep(0.2)


def start_redis(folder: Path) -> tuple[Service, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (make test installs the Debian package redis-server)")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    command += ["--daemonize", "no", "--dir", str(folder)]
    service = start_service("redis-server", command, dict(os.environ), folder / "redis.log")
    url = f"redis://127.0.0.1:{port}/0"

    def answers() -> bool:
        try:
            return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
        except (redis.RedisError, OSError):
            return False

    wait_until(answers, service, "answer PING", 10)
    return service, url


def start_web(env: dict[str, str], folder: Path, workers: int, threads: int) -> tuple[Service, str]:
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "webapp.wsgi:application", "--bind", f"127.0.0.1:{port}"]
    command += ["--workers", str(workers), "--worker-class", "gthread", "--threads", str(threads)]
    command += ["--timeout", "300", "--no-control-socket"]
    service = start_service("gunicorn", command, env, folder / "gunicorn.log")
    base_url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return requests.get(f"{base_url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_until(healthy, service, "answer /healthz", 60)
    return service, base_url


def start_worker(env: dict[str, str], folder: Path, number: int) -> Service:
    hostname = f"load{number}-{secrets.token_hex(3)}@%h"
    command = [sys.executable, "-m", "celery", "-A", "workers.celery", "worker", "-Q", "cpu", "--concurrency", "1"]
    command += ["-P", "prefork", "--loglevel", "INFO", "-n", hostname]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    return start_service(f"celery worker {number}", command, env, folder / f"worker-{number}.log")


# --- database --------------------------------------------------------------------------------------


def create_database(server: str) -> str:
    name = f"inferopt_load_{secrets.token_hex(4)}"
    with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=5) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(server: str, name: str) -> None:
    with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=5) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def setup_django(env: dict[str, str]) -> None:
    """Point this process's Django at the load database and data folder, migrate."""
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def populate(users: int, password: str) -> tuple[list[str], str]:
    """One team with ``users`` members (one password hash for all: hashing is slow on purpose), an API token,
    and the demo catalogue entries with their fingerprints, as ``make run``'s ``setup_demo`` leaves them (else the
    first submission hashes the demo models inside a request)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from webapp.accounts.models import ApiToken, Membership, Team
    from webapp.catalog.services import ensure_demo_models

    ensure_demo_models()

    team = Team.objects.create(name=TEAM)
    hashed = make_password(password)
    model = get_user_model()
    names = [f"user{index:03d}" for index in range(users)]
    members = model.objects.bulk_create([model(username=name, password=hashed) for name in names])
    Membership.objects.bulk_create([Membership(user=user, team=team) for user in members])
    submitter = model.objects.create(username="load-submitter", password=hashed)
    Membership.objects.create(user=submitter, team=team)
    _, key = ApiToken.issue(submitter, "load benchmark")
    return names, key


# --- simulated users and the submitter ------------------------------------------------------------


class Browser:
    """One simulated user: a cookie session that signs in through the login form, then browses."""

    def __init__(self, base_url: str, samples: Samples, think: tuple[float, float], stop: threading.Event, seed: int):
        self.base_url = base_url
        self.samples = samples
        self.think_range = think
        self.stop = stop
        self.random = random.Random(seed)
        self.session = requests.Session()

    def send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = self.base_url + path
        return self.session.request(method, url, timeout=REQUEST_TIMEOUT_S, allow_redirects=False, **kwargs)

    def request(self, kind: str, method: str, path: str, expect: int, **kwargs: Any) -> requests.Response | None:
        """One timed request; the response when its status is ``expect``, else None (counted as an error)."""
        started = time.monotonic()
        retried = False
        try:
            try:
                response = self.send(method, path, **kwargs)
            except requests.ConnectionError:
                if method != "GET":
                    raise
                # gunicorn closes a connection idle for 2 s (its keep-alive) and may do so just as we reuse it:
                # browsers send such a GET again on a new connection, and so do we (counted, timed from the start).
                retried = True
                response = self.send(method, path, **kwargs)
        except requests.RequestException as error:
            self.samples.add(kind, started, type(error).__name__, retried)
            return None
        error = "" if response.status_code == expect else f"HTTP {response.status_code}"
        self.samples.add(kind, started, error, retried)
        return None if error else response

    def think(self, seconds: float | None = None) -> bool:
        """Wait like a reader; False once the run is over."""
        return not self.stop.wait(self.random.uniform(*self.think_range) if seconds is None else seconds)

    def login(self, username: str, password: str) -> bool:
        page = self.request("login form", "GET", "/accounts/login/", 200)
        match = CSRF_INPUT.search(page.text) if page is not None else None
        if match is None:
            return False
        form = {"csrfmiddlewaretoken": match.group(1), "username": username, "password": password, "next": "/jobs/"}
        response = self.request("login", "POST", "/accounts/login/", 302, data=form)
        return response is not None and response.headers.get("Location") == "/jobs/"

    def browse(self) -> None:
        pages = 1
        while not self.stop.is_set():
            page_number = 2 if pages > 1 and self.random.random() < 0.25 else 1
            listing = self.request("job list", "GET", "/jobs/" + ("?page=2" if page_number == 2 else ""), 200)
            if listing is not None:
                pages = 2 if "?page=2" in listing.text else pages
            ids = JOB_LINK.findall(listing.text) if listing is not None else []
            if not self.think() or not ids:
                continue
            self.read_job(self.random.choice(ids))
            self.think()

    def read_job(self, job_id: str) -> None:
        """The job page, then htmx's status poll every 2 s while the job is active, for one think time."""
        detail = self.request("job detail", "GET", f"/jobs/{job_id}/", 200)
        polling = detail is not None and 'hx-trigger="every 2s"' in detail.text
        leave_at = time.monotonic() + self.random.uniform(*self.think_range)
        while polling and time.monotonic() + 2 <= leave_at:
            if not self.think(2.0):
                return
            status = self.request("job status", "GET", f"/jobs/{job_id}/status/", 200, headers={"HX-Request": "true"})
            if status is None:
                return
            if status.headers.get("HX-Refresh") == "true":  # the job just finished: htmx reloads the page
                self.request("job detail", "GET", f"/jobs/{job_id}/", 200)
                return
            polling = 'hx-trigger="every 2s"' in status.text


def run_user(browser: Browser, username: str, password: str, start_delay: float, signed_in: list[bool]) -> None:
    """Sign in after ``start_delay``, append the outcome to ``signed_in``, then browse if it worked."""
    if browser.stop.wait(start_delay):
        return
    ok = browser.login(username, password)
    signed_in.append(ok)
    if ok:
        browser.browse()


def submit_jobs(base_url: str, token: str, count: int, samples: Samples) -> list[int]:
    """POST ``count`` recipes to the API one after another; return the new job ids."""
    ids = []
    headers = {"Authorization": f"Bearer {token}"}
    with requests.Session() as session:
        for number in range(count):
            body = {**JOB_RECIPE, "name": f"load job {number + 1}", "team": TEAM}
            started = time.monotonic()
            response = session.post(f"{base_url}/api/v1/jobs", json=body, headers=headers, timeout=REQUEST_TIMEOUT_S)
            samples.add("api submit", started, "" if response.status_code == 201 else f"HTTP {response.status_code}")
            if response.status_code != 201:
                raise RuntimeError(f"POST /api/v1/jobs answered {response.status_code}: {response.text[:500]}")
            ids.append(int(response.json()["id"]))
    return ids


# --- accounting ------------------------------------------------------------------------------------


def wait_for_jobs(ids: list[int], deadline: float, workers: list[Service]) -> None:
    from django.db import close_old_connections

    from webapp.jobs.models import Job

    while time.monotonic() < deadline:
        close_old_connections()
        if not Job.objects.filter(pk__in=ids).exclude(status__in=Job.FINAL_STATUSES).exists():
            return
        if not any(worker.alive() for worker in workers):
            print("every Celery worker has exited: not waiting for the remaining jobs", flush=True)
            return
        time.sleep(1.0)


def account_jobs(ids: list[int], worker_logs: list[str], media_root: Path, drain_seconds: float) -> JobAccounting:
    """Check team ``load``'s rows, the workers' claim lines and the stored artifact files of the jobs ``ids``."""
    from webapp.jobs.models import Job

    jobs = {job.pk: job for job in Job.objects.filter(team__name=TEAM).prefetch_related("artifacts")}
    claims = Counter(int(number) for text in worker_logs for number in CLAIM_LINE.findall(text))
    lost, duplicated, errors, run_seconds = [], [], {}, []
    statuses = Counter()
    for job_id in ids:
        job = jobs.get(job_id)
        if job is None or not job.is_final:
            lost.append(job_id)
            continue
        statuses[job.status] += 1
        if job.status != Job.Status.SUCCEEDED:
            errors[job_id] = job.error or job.status
        if job.optimization_seconds is not None:
            run_seconds.append(job.optimization_seconds)
        artifacts = list(job.artifacts.all())
        candidates = len((job.report or {}).get("variants", [])) - 1 if job.status == Job.Status.SUCCEEDED else 0
        folder = media_root / "jobs" / str(job_id)
        files = sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []
        stored = sorted(Path(artifact.file.name).name for artifact in artifacts)
        if job.attempts != 1 or claims[job_id] != 1 or len(artifacts) != max(candidates, 0) or files != stored:
            duplicated.append(job_id)
    unexpected = sorted(set(jobs) - set(ids))
    return JobAccounting(
        submitted=len(ids),
        final=sum(statuses.values()),
        succeeded=statuses[Job.Status.SUCCEEDED],
        failed=statuses[Job.Status.FAILED],
        cancelled=statuses[Job.Status.CANCELLED],
        lost=lost,
        duplicated=duplicated,
        unexpected=unexpected,
        errors=errors,
        run_seconds_p50=percentile(run_seconds, 50),
        run_seconds_max=max(run_seconds) if run_seconds else None,
        drain_seconds=drain_seconds,
    )


# --- report ----------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def print_report(report: LoadReport) -> None:
    settings = report.settings
    print(
        f"\n{settings['users']} users, {settings['jobs']} jobs, {settings['workers']} Celery workers, gunicorn "
        f"{settings['web_workers']}×{settings['web_threads']} threads; {report.machine['cpus']} CPUs, "
        f"load average {report.load_average_before[0]:.2f} before, {report.load_average_after[0]:.2f} after"
    )
    print(
        f"measured {report.measured_seconds:.0f} s (first submission → every job final), "
        f"{report.pages_per_second:.1f} pages/s, think time {settings['think'][0]:g}–{settings['think'][1]:g} s"
    )
    available = report.measured_seconds * report.machine["cpus"]
    used = ", ".join(f"{part} {seconds:.0f}" for part, seconds in report.cpu_seconds.items())
    print(f"CPU seconds in that window: {used} (of {available:.0f} on {report.machine['cpus']} CPUs)\n")
    header = (
        f"{'kind':<13} {'requests':>8} {'errors':>6} {'retries':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
        f"{'max ms':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in [*report.pages, *report.other]:
        print(
            f"{row.kind:<13} {row.requests:>8} {row.errors:>6} {row.retries:>7} {_ms(row.p50_ms):>7} "
            f"{_ms(row.p95_ms):>7} {_ms(row.p99_ms):>7} {_ms(row.max_ms):>7}"
        )
    for row in [*report.pages[:-1], *report.other]:
        if row.error_reasons:
            print(f"  {row.kind} errors: " + ", ".join(f"{reason} ×{n}" for reason, n in row.error_reasons.items()))
    overall = next(row for row in report.pages if row.kind == "all pages")
    verdict = "met" if report.target_met else "NOT met"
    print(f"\ntarget p95 ≤ {report.target_p95_ms:.0f} ms over all pages: {verdict} ({_ms(overall.p95_ms)} ms)")
    jobs = report.jobs
    print(
        f"jobs: {jobs.submitted} submitted, {jobs.final} final ({jobs.succeeded} succeeded, {jobs.failed} failed, "
        f"{jobs.cancelled} cancelled), {len(jobs.lost)} lost, {len(jobs.duplicated)} duplicated, "
        f"{len(jobs.unexpected)} unexpected; run time p50 {jobs.run_seconds_p50 or 0:.1f} s, "
        f"max {jobs.run_seconds_max or 0:.1f} s; drained in {jobs.drain_seconds:.0f} s"
    )
    for label, values in (("lost", jobs.lost), ("duplicated", jobs.duplicated), ("unexpected", jobs.unexpected)):
        if values:
            print(f"  {label}: {values}")
    for job_id, error in list(jobs.errors.items())[:10]:
        print(f"  job {job_id} did not succeed: {error}")
    print(f"job accounting: {'ok' if report.ok else 'FAILED'}")


# --- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes (concurrency 1 each)")
    parser.add_argument("--web-workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--web-threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--think", type=float, nargs=2, default=(1.0, 3.0), metavar=("MIN", "MAX"))
    parser.add_argument("--ramp", type=float, default=10.0, help="seconds over which the users sign in")
    parser.add_argument(
        "--drain-timeout", type=float, default=3600.0, help="seconds after the last submission until a job is lost"
    )
    parser.add_argument("--target-p95-ms", type=float, default=300.0)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432", help="server URL, no database")
    parser.add_argument("--results", type=Path, default=None, help="JSON file (default .local/benchmarks/load-*.json)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the database and the data folder afterwards (to profile pages)"
    )
    args = parser.parse_args(argv)
    for name in ("users", "jobs", "workers", "web_workers", "web_threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= args.think[0] <= args.think[1]:
        parser.error("--think needs 0 <= MIN <= MAX")
    return args


def build_zoo_model(env: dict[str, str]) -> None:
    """Build ``zoo:digits-cnn`` once before the workers start (cached on disk; a no-op when built)."""
    code = "from optimizers.zoo import zoo_model_folder; zoo_model_folder('zoo:digits-cnn', build=True)"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)


def run(args: argparse.Namespace) -> int:
    started_at = datetime.now(UTC)
    load_before = list(os.getloadavg())
    folder = Path(tempfile.mkdtemp(prefix="inferopt-load-"))
    services: list[Service] = []
    database = ""
    stop = threading.Event()
    threads: list[threading.Thread] = []
    keep_folder = True
    keep_database = args.keep
    try:
        database = create_database(args.postgres)
        print(f"database {database}, data and logs in {folder}", flush=True)
        redis_service, redis_url = start_redis(folder)
        services.append(redis_service)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "webapp.settings",
            "DATABASE_URL": f"{args.postgres}/{database}",
            "DATABASE_CONN_MAX_AGE": "60",
            "REDIS_URL": redis_url,
            # The shared cache of `make run` and the compose file: workers pre-build the job pages' figures.
            "INFEROPT_CACHE_URL": redis_url.removesuffix("/0") + "/1",
            "INFEROPT_DATA_DIR": str(folder / "data"),
            "INFEROPT_QUICK_BENCHMARK": "1",
            "INFEROPT_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
        build_zoo_model(env)
        setup_django(env)
        password = secrets.token_urlsafe(12)
        usernames, token = populate(args.users, password)

        workers = [start_worker(env, folder, number + 1) for number in range(args.workers)]
        services.extend(workers)
        web, base_url = start_web(env, folder, args.web_workers, args.web_threads)
        services.append(web)
        for worker in workers:
            wait_until(lambda worker=worker: WORKER_READY_TEXT in worker.log_text(), worker, "become ready", 180)
        print(f"gunicorn on {base_url}, {len(workers)} Celery workers ready; {args.users} users signing in", flush=True)

        samples = Samples()
        signed_in: list[bool] = []
        for index, username in enumerate(usernames):
            browser = Browser(base_url, samples, tuple(args.think), stop, seed=index)
            delay = args.ramp * index / max(1, len(usernames))
            thread = threading.Thread(
                target=run_user, args=(browser, username, password, delay, signed_in), daemon=True
            )
            thread.start()
            threads.append(thread)
        # Sign-ins hash a password each (slow on purpose): let them all finish before the measured window.
        deadline = time.monotonic() + args.ramp + 300
        while len(signed_in) < len(usernames) and time.monotonic() < deadline:
            time.sleep(0.2)
        if sum(signed_in) != len(usernames):
            print(f"warning: {sum(signed_in)} of {len(usernames)} users signed in", flush=True)

        print(f"submitting {args.jobs} jobs through POST /api/v1/jobs", flush=True)
        window_start = time.monotonic()
        cpu_start = cpu_snapshot(services)
        ids = submit_jobs(base_url, token, args.jobs, samples)
        submitted = time.monotonic()
        wait_for_jobs(ids, submitted + args.drain_timeout, workers)
        window_end = time.monotonic()
        cpu_used = {part: seconds - cpu_start[part] for part, seconds in cpu_snapshot(services).items()}
        stop.set()
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT_S + 5)

        from django.conf import settings

        accounting = account_jobs(
            ids, [worker.log_text() for worker in workers], Path(settings.MEDIA_ROOT), window_end - submitted
        )
        measured = samples.between(window_start, window_end)
        pages = [latency_row(kind, [row for row in measured if row[0] == kind]) for kind in PAGE_KINDS]
        overall = latency_row("all pages", [row for row in measured if row[0] in PAGE_KINDS])
        other = [
            latency_row(kind, [row for row in samples.rows if row[0] == kind])
            for kind in ("login form", "login", "api submit")
        ]
        seconds = window_end - window_start
        report = LoadReport(
            started_at=started_at.isoformat(timespec="seconds"),
            settings={
                "users": args.users,
                "jobs": args.jobs,
                "workers": args.workers,
                "web_workers": args.web_workers,
                "web_threads": args.web_threads,
                "think": list(args.think),
                "ramp": args.ramp,
                "recipe": JOB_RECIPE,
                "database": "postgresql",
            },
            machine={"cpus": os.cpu_count(), "hostname": socket.gethostname()},
            load_average_before=load_before,
            load_average_after=list(os.getloadavg()),
            measured_seconds=seconds,
            pages_per_second=overall.requests / seconds if seconds else 0.0,
            cpu_seconds=cpu_used,
            pages=[*pages, overall],
            other=other,
            target_p95_ms=args.target_p95_ms,
            target_met=overall.p95_ms is not None and overall.p95_ms <= args.target_p95_ms and overall.errors == 0,
            jobs=accounting,
            ok=accounting.ok,
        )
        print_report(report)
        results = args.results or ROOT / ".local" / "benchmarks" / f"load-{started_at:%Y%m%dT%H%M%SZ}.json"
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(report.model_dump_json(indent=2) + "\n")
        print(f"results written to {results}")
        keep_folder = args.keep or not report.ok
        if keep_folder:
            print(f"logs kept in {folder}")
        return 0 if report.ok else 1
    except KeyboardInterrupt:
        keep_folder = keep_database = False
        raise
    except Exception:
        print(f"logs kept in {folder}", file=sys.stderr)
        raise
    finally:
        stop.set()
        # Workers first (a finishing task still needs Redis and the database), the broker last.
        for service in sorted(services, key=lambda service: service.name == "redis-server"):
            service.stop(patience=20 if service.name.startswith("celery") else 10)
        if database and keep_database:
            print(f"kept database {database}: drop it with DROP DATABASE {database}", flush=True)
        elif database:
            if "django" in sys.modules:
                from django.db import connections

                connections.close_all()
            drop_database(args.postgres, database)
        if not keep_folder:
            shutil.rmtree(folder, ignore_errors=True)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (a timeout, pytest stopping us) cleans up the way Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("\ninterrupted: stopped the services and dropped the database", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
