"""benchmarks/load.py end to end with tiny numbers, and its job accounting on hand-made rows.

The end-to-end run starts everything the benchmark starts (a PostgreSQL database of its own, Redis,
gunicorn, a Celery worker) with 3 users and 4 jobs: it must exit 0 with every job accounted for and
drop its database. No latency is checked here. Ctrl-C mid-run must stop everything and drop the
database too. The accounting test feeds ``account_jobs`` rows that were lost, ran twice or were
never submitted, and checks each is named.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "load.py"
POSTGRES = os.environ.get("INFEROPT_LOAD_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


def load_module():
    spec = importlib.util.spec_from_file_location("benchmarks_load", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def databases() -> set[str]:
    with psycopg.connect(f"{POSTGRES}/postgres", connect_timeout=5) as connection:
        return {row[0] for row in connection.execute("SELECT datname FROM pg_database")}


@pytest.fixture(scope="module")
def postgres() -> str:
    try:
        databases()
    except psycopg.OperationalError as error:
        pytest.skip(f"benchmarks/load.py needs PostgreSQL at {POSTGRES} (trust auth): {error}")
    return POSTGRES


def tiny_run_arguments(results: Path) -> list[str]:
    return [
        sys.executable, str(SCRIPT), "--users", "3", "--jobs", "4", "--workers", "1", "--web-workers", "1",
        "--web-threads", "2", "--think", "0.2", "0.5", "--ramp", "1", "--drain-timeout", "600",
        "--postgres", POSTGRES, "--results", str(results),
    ]  # fmt: skip


@pytest.mark.slow
def test_a_tiny_load_run_accounts_for_every_job_and_drops_its_database(postgres, tmp_path):
    results = tmp_path / "load.json"
    before = databases()
    completed = subprocess.run(
        tiny_run_arguments(results), cwd=REPO, capture_output=True, text=True, timeout=900, check=False
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-4000:]

    report = json.loads(results.read_text())
    jobs = report["jobs"]
    assert (jobs["submitted"], jobs["final"], jobs["succeeded"]) == (4, 4, 4), jobs
    assert jobs["lost"] == jobs["duplicated"] == jobs["unexpected"] == [] and jobs["errors"] == {}
    assert report["ok"] is True
    pages = {row["kind"]: row for row in report["pages"]}
    assert pages["job list"]["requests"] > 0 and pages["job detail"]["requests"] > 0
    assert pages["all pages"]["errors"] == 0
    other = {row["kind"]: row for row in report["other"]}
    assert (other["login"]["requests"], other["login"]["errors"]) == (3, 0)
    assert (other["api submit"]["requests"], other["api submit"]["errors"]) == (4, 0)
    assert "job accounting: ok" in output
    assert not {name for name in databases() - before if name.startswith("inferopt_load_")}


@pytest.mark.slow
def test_keep_leaves_the_database_and_data_folder_for_profiling(postgres, tmp_path):
    arguments = tiny_run_arguments(tmp_path / "load.json") + ["--keep", "--users", "1", "--jobs", "1"]
    completed = subprocess.run(arguments, cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    output = completed.stdout + completed.stderr
    kept = [line.split()[2].rstrip(":") for line in output.splitlines() if line.startswith("kept database ")]
    folders = [line.split()[-1] for line in output.splitlines() if line.startswith("logs kept in ")]
    try:
        assert completed.returncode == 0, output[-4000:]
        assert kept and kept[0] in databases(), output[-2000:]
        assert folders and (Path(folders[0]) / "data").is_dir(), output[-2000:]
    finally:
        for name in kept:
            load_module().drop_database(POSTGRES, name)
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_stops_the_run_and_drops_its_database(postgres, tmp_path):
    process = subprocess.Popen(
        tiny_run_arguments(tmp_path / "load.json"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # As from a terminal: a suite started in the background inherits SIGINT ignored (Python then installs
        # no KeyboardInterrupt handler), and the script would not see this Ctrl-C.
        preexec_fn=_interruptible,
    )
    lines = []
    try:
        deadline = time.monotonic() + 300
        for line in process.stdout:
            lines.append(line)
            if line.startswith("submitting ") or time.monotonic() > deadline:
                break
        created = [line.split()[1].rstrip(",") for line in lines if line.startswith("database inferopt_load_")]
        assert created, "".join(lines)
        assert created[0] in databases()
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, "".join(lines) + (output or "")
    assert created[0] not in databases()
    assert not (tmp_path / "load.json").exists()


@pytest.mark.django_db
def test_accounting_names_lost_duplicated_failed_and_unexpected_jobs(tmp_path, django_user_model):
    from webapp.accounts.models import Team
    from webapp.catalog.models import ModelEntry
    from webapp.jobs.models import Artifact, Job

    load = load_module()
    team = Team.objects.create(name=load.TEAM)
    user = django_user_model.objects.create(username="someone")
    entry = ModelEntry.objects.create(
        name="digits", reference="zoo:digits-cnn", task="image-classification", source="zoo", format="torch"
    )
    report = {"variants": [{"name": "baseline"}, {"name": "onnx"}]}

    def job(status: str, attempts: int = 1, artifacts: int = 1, **fields) -> Job:
        row = Job.objects.create(
            team=team, submitter=user, name="j", model=entry, recipe={}, status=status, attempts=attempts, **fields
        )
        for number in range(artifacts):
            name = f"jobs/{row.pk}/variant-{number}.zip"
            (tmp_path / "media" / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "media" / name).write_bytes(b"zip")
            Artifact.objects.create(job=row, name=f"v{number}", format="onnx", file=name, sha256="0" * 64)
        return row

    good = job("succeeded", report=report)
    claims = f"job {good.pk} claimed by w@h\n"
    assert load.account_jobs([good.pk], [claims], tmp_path / "media", 1.0).ok

    twice = job("succeeded", attempts=2, report=report)
    two_sets = job("succeeded", artifacts=2, report=report)
    queued = job("queued", attempts=0, artifacts=0)
    failed = job("failed", artifacts=0, error="boom")
    stray = job("succeeded", report=report)
    submitted = [good.pk, twice.pk, two_sets.pk, queued.pk, failed.pk, 10_000_000]
    claims += "".join(f"job {pk} claimed by w@h\n" for pk in (twice.pk, two_sets.pk, failed.pk, stray.pk))

    accounting = load.account_jobs(submitted, [claims, f"job {twice.pk} claimed by v@h\n"], tmp_path / "media", 1.0)

    assert accounting.lost == [queued.pk, 10_000_000]
    assert accounting.duplicated == [twice.pk, two_sets.pk]
    assert accounting.unexpected == [stray.pk]
    assert accounting.errors == {failed.pk: "boom"}
    assert (accounting.submitted, accounting.final, accounting.succeeded, accounting.failed) == (6, 4, 3, 1)
    assert not accounting.ok
