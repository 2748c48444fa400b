"""Celery tasks: load a job row, run its recipe through ``optimizers``, record the outcome.

The job row is the record of a run (status, stage, progress, log, error,
report, artifacts); there is no result backend. Tasks take a job id and fetch
the fresh row; a job that is gone or already claimed is a normal outcome, so
redelivery of the same message (``acks_late``) never runs a job twice.

Faults (docs/ARCHITECTURE.md, "Worker faults"): a claim records the pool child's
pid; when that child dies (kill -9, out of memory) Celery requeues the message
(``task_reject_on_worker_lost``) and the redelivery re-claims the ``running`` row
only once that process is gone, up to ``INFEROPT_JOB_MAX_ATTEMPTS`` claims, then
fails it. A hard time limit kills the child without a redelivery: the
``task_failure`` handler below fails the row in the worker's main process.
Artifacts are published by their rows, created in the transaction that marks the
job succeeded; stored files of an attempt that did not get there are deleted.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import time
import traceback
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from celery.signals import task_failure
from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.db.models import F, TextField, Value
from django.db.models.functions import Concat
from django.utils import timezone

from optimizers.artifacts import library_versions
from optimizers.errors import CancelledError, InferOptError
from optimizers.hashing import sha256_file
from optimizers.model_card import card_file_name, data_manifest, evaluation_data_info, packaged_card
from optimizers.packaging import package_artifact
from optimizers.pipeline import run_recipe
from optimizers.recipe import Recipe
from optimizers.report import Report
from optimizers.search import SearchReport, SearchSpace, run_search
from optimizers.serving.analysis import SERVING_MODE, ServingSpec, run_serving_analysis
from webapp.jobs import figure_cache
from webapp.jobs.models import Artifact, Job
from webapp.jobs.services import delete_unpublished_files
from webapp.reviews.services import record_gate_outcome
from workers.celery import app
from workers.inputs import materialize_inputs

logger = logging.getLogger(__name__)

#: How often a running job writes progress to its row and re-reads its cancel flag.
WRITE_INTERVAL_S = 1.0
#: Longest traceback kept on a failed job (its last characters: the useful end).
TRACEBACK_MAX_CHARS = 20_000
#: Longest error message kept on a failed job (one line).
ERROR_MAX_CHARS = 2_000
#: Log text a job may append to its row; later lines are dropped with one notice.
LOG_MAX_CHARS = 200_000


def _fit(field: str, value: str) -> str:
    """Cut ``value`` to the max_length of the Job field ``field``, if it has one."""
    limit = Job._meta.get_field(field).max_length
    return value[:limit] if limit else value


def _one_line(text: str, limit: int = ERROR_MAX_CHARS) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _tail(text: str, limit: int = TRACEBACK_MAX_CHARS) -> str:
    if len(text) <= limit:
        return text
    marker = "… (traceback cut to its last characters)\n"
    return marker + text[-(limit - len(marker)) :]


class JobRecorder:
    """Keeps a running job's row current: stage, progress, log and the cancel flag.

    Writes go through ``update()`` on rows still ``running`` (never ``save()``,
    which would overwrite fields the web process changes, such as
    ``cancel_requested``) and, given ``claim`` (the row's ``worker`` and
    ``worker_pid`` as this attempt set them), still held by this attempt: one
    that was superseded (marked lost, re-claimed elsewhere) changes nothing.
    Progress is written at most every ``WRITE_INTERVAL_S`` seconds, and always
    when the stage changes.
    """

    def __init__(
        self,
        job_id: int,
        interval: float = WRITE_INTERVAL_S,
        deadline: float | None = None,
        claim: dict[str, Any] | None = None,
    ) -> None:
        self.job_id = job_id
        self.claim = claim or {}
        self.interval = interval
        #: ``time.monotonic()`` after which the next cancel check raises ``SoftTimeLimitExceeded``.
        self.deadline = deadline
        self._stage: str | None = None
        self._progress: float | None = None
        self._dirty = False
        self._pending_log: list[str] = []
        self._log_chars = 0
        self._last_write = float("-inf")
        self._last_cancel_check = float("-inf")
        self._cancelled = False

    def _rows(self):
        return Job.objects.filter(pk=self.job_id, status=Job.Status.RUNNING, **self.claim)

    def log(self, message: str) -> None:
        """Queue one log line (timestamped) for the next write."""
        if self._log_chars >= LOG_MAX_CHARS:
            return
        line = f"{timezone.now():%H:%M:%S} {message.rstrip()}\n"
        self._log_chars += len(line)
        if self._log_chars >= LOG_MAX_CHARS:
            line = f"{timezone.now():%H:%M:%S} (log limit reached: later lines are not kept)\n"
        self._pending_log.append(line)

    def on_log(self, message: str) -> None:
        self.log(message)
        self._maybe_flush(force=False)

    def on_progress(self, event: Any) -> None:
        """``optimizers`` progress callback: ``event.stage``, ``event.percent``, ``event.message``."""
        stage_changed = event.stage != self._stage
        self._stage = event.stage
        self._progress = round(max(0.0, min(100.0, float(event.percent))), 1)
        self._dirty = True
        if event.message:
            self.log(f"[{event.stage}] {event.message}")
        self._maybe_flush(force=stage_changed)

    def set_stage(self, stage: str, message: str) -> None:
        """A stage of the worker's own (after the recipe ran), written at once."""
        self._stage = stage
        self._dirty = True
        self.log(message)
        self.flush()

    def should_cancel(self) -> bool:
        """``optimizers`` cancel check: has someone set ``cancel_requested`` on the row?

        Past the soft time limit it raises ``SoftTimeLimitExceeded`` itself: Celery's
        signal can land inside library code that catches every exception (the ONNX
        exporter retries with another strategy), and must not be lost there.
        """
        now = time.monotonic()
        if self.deadline is not None and now > self.deadline:
            raise SoftTimeLimitExceeded()
        if not self._cancelled and now - self._last_cancel_check >= self.interval:
            self._last_cancel_check = now
            self._cancelled = Job.objects.filter(pk=self.job_id, cancel_requested=True).exists()
        return self._cancelled

    def _maybe_flush(self, *, force: bool) -> None:
        if force or time.monotonic() - self._last_write >= self.interval:
            self.flush()

    def _pending_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if self._dirty:
            fields["stage"] = _fit("stage", self._stage or "")
            if self._progress is not None:
                fields["progress"] = self._progress
            self._dirty = False
        if self._pending_log:
            text = "".join(self._pending_log)
            self._pending_log.clear()
            fields["log"] = Concat(F("log"), Value(text), output_field=TextField())
        return fields

    def flush(self) -> None:
        fields = self._pending_fields()
        if fields:
            self._rows().update(**fields)
        self._last_write = time.monotonic()

    def finish(self, **fields: Any) -> int:
        """Write the final state (plus anything pending) to the row; return the rows changed."""
        return self._rows().update(**{**self._pending_fields(), **fields})


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "variant"


def _package_variants(job: Job, report: Report, work_dir: Path, stored: list[str]) -> list[Artifact]:
    """Zip every non-baseline variant into storage; return the (unsaved) Artifact rows.

    Each stored name is appended to ``stored`` as soon as it exists, so the
    caller can delete the files if anything later fails.
    """
    dataset = evaluation_data_info(
        job.recipe, display_name=job.dataset.name if job.dataset_id else None, task=report.task
    )
    return [
        _package_one(
            job, report, variant, order, order == len(report.variants) - 1, work_dir, stored, dataset, recipe=job.recipe
        )
        for order, variant in enumerate(report.variants[1:], start=1)
    ]


def _package_one(
    job: Job,
    report: Report,
    variant: Any,
    order: int,
    is_final: bool,
    work_dir: Path,
    stored: list[str],
    dataset: Any,
    *,
    recipe: dict[str, Any],
    name: str | None = None,
    with_gate: bool | None = None,
) -> Artifact:
    """Zip one variant of ``report`` (manifest + MODEL_CARD.md) into storage; return its unsaved row."""
    versions = library_versions()
    include_gate = is_final if with_gate is None else with_gate
    manifest = {
        "job": job.pk,
        "variant": variant.name,
        "format": variant.format,
        "produced_by": variant.produced_by,
        "config": variant.config,
        "parent_sha256": variant.parent_sha256,
        "recipe": recipe,
        "metrics": variant.metrics,
        "sha256_content": variant.sha256,
        "library_versions": versions,
        "gate": report.gate.model_dump(mode="json") if include_gate and report.gate else None,
        "task": report.task,
        "benchmark": {batch: stats.model_dump(mode="json") for batch, stats in variant.benchmark.items()},
        "benchmark_info": variant.benchmark_info.model_dump(mode="json") if variant.benchmark_info else None,
        "data": data_manifest(report, dataset),
    }
    card_name = manifest["model_card"] = card_file_name(Path(variant.path))
    card = packaged_card(
        report, variant.name, job=f"#{job.pk} {job.name}", dataset=dataset, live_url=f"/jobs/{job.pk}/"
    )
    filename = f"{order}-{_safe_name(name or variant.name)}.zip"
    local_zip = work_dir / "packages" / filename
    sha256, size = package_artifact(Path(variant.path), manifest, local_zip, extra_files={card_name: card})
    stored_name = _store_file(job, local_zip, filename, stored)
    return Artifact(
        job=job,
        name=name or variant.name,
        format=variant.format,
        file=stored_name,
        sha256=sha256,
        size_bytes=size,
        order=order,
        is_final=is_final,
    )


def _store_file(job: Job, local: Path, filename: str, stored: list[str]) -> str:
    """Save ``local`` as ``jobs/<job>/<filename>`` in the artifacts' storage; record and return its name.

    The name is recorded in ``stored`` *before* writing: a write that fails half way
    (disk full) leaves part of a file behind, which the caller must delete too.
    """
    storage = Artifact._meta.get_field("file").storage
    name = storage.get_available_name(f"jobs/{job.pk}/{filename}")
    stored.append(name)
    with open(local, "rb") as handle:
        stored_name = storage.save(name, File(handle, name=filename))
    if stored_name != name:
        stored.append(stored_name)
    return stored_name


def _candidate_name(index: int, steps: list[dict[str, Any]]) -> str:
    return f"c{index + 1}-" + "+".join(step["pass"] for step in steps)


def _package_search(job: Job, search: SearchReport, work_dir: Path, stored: list[str]) -> list[Artifact]:
    """Zip the best passing candidate (final) and the Pareto ones; each zip's card compares it with the baseline."""
    dataset = evaluation_data_info(
        job.recipe, display_name=job.dataset.name if job.dataset_id else None, task=search.task
    )
    chosen = [
        index
        for index, candidate in enumerate(search.candidates)
        if candidate.variant is not None and (candidate.on_pareto_front or index == search.best_passing)
    ]
    rows = []
    for index in chosen:
        candidate = search.candidates[index]
        recipe = {key: value for key, value in job.recipe.items() if key not in ("mode", "axes", "budget_s")}
        report = Report(
            model=search.model,
            task=search.task,
            recipe={**recipe, "steps": candidate.steps},
            variants=[search.baseline, candidate.variant],
            gate=candidate.variant.gate,
        )
        name = _candidate_name(index, candidate.steps)
        is_final = index == search.best_passing
        rows.append(
            _package_one(
                job,
                report,
                candidate.variant,
                index + 1,
                is_final,
                work_dir,
                stored,
                dataset,
                recipe=report.recipe,
                name=name,
                with_gate=True,
            )  # fmt: skip
        )
    return rows


def search_gate_outcome(search: SearchReport) -> str:
    """``pass`` with a best passing candidate, else ``needs_approval`` with near-misses, else ``fail``."""
    if search.best_passing is not None:
        return Job.GateOutcome.PASS
    return Job.GateOutcome.NEEDS_APPROVAL if search.near_misses else Job.GateOutcome.FAIL


def _run_search_job(job: Job, recorder: JobRecorder, work_dir: Path, stored: list[str]) -> dict[str, Any]:
    """Run a ``mode: search`` job; return the row's final fields (report, gate outcome) and its artifacts."""
    space = SearchSpace.model_validate({k: v for k, v in job.recipe.items() if k != "mode"})
    search = run_search(
        space,
        work_dir / "run",
        on_progress=recorder.on_progress,
        on_log=recorder.on_log,
        should_cancel=recorder.should_cancel,
        quick=settings.INFEROPT_QUICK_BENCHMARK,
    )
    recorder.set_stage("packaging", "packaging the best passing and Pareto candidates for download")
    artifacts = _package_search(job, search, work_dir, stored)
    report = {"kind": "search", **search.model_dump(mode="json")}
    return {"report": report, "gate_outcome": search_gate_outcome(search), "artifacts": artifacts}


def _run_serving_job(job: Job, recorder: JobRecorder, work_dir: Path, stored: list[str]) -> dict[str, Any]:
    """Run a ``mode: serving`` job: report = ``ServingReport`` (``"kind": "serving"``), artifact = the Triton zip."""
    serving = run_serving_analysis(
        ServingSpec.parse(job.recipe),
        work_dir / "run",
        on_progress=recorder.on_progress,
        on_log=recorder.on_log,
        should_cancel=recorder.should_cancel,
    )
    artifacts = []
    if serving.triton_zip:
        recorder.set_stage("packaging", "storing the Triton model repository for download")
        local = Path(serving.triton_zip)
        stored_name = _store_file(job, local, f"triton-{_safe_name(local.stem)}.zip", stored)
        artifacts.append(
            Artifact(
                job=job,
                name=f"triton repository ({local.stem})",
                format="triton",
                file=stored_name,
                sha256=sha256_file(local),
                size_bytes=local.stat().st_size,
                order=1,
                is_final=True,
            )
        )
    report = serving.model_dump(mode="json", exclude={"triton_zip"})
    return {"report": report, "gate_outcome": "", "artifacts": artifacts}


def _delete_stored(names: list[str]) -> None:
    storage = Artifact._meta.get_field("file").storage
    for name in names:
        try:
            storage.delete(name)
        except OSError:
            logger.warning("could not delete stored artifact %s", name, exc_info=True)


def _work_dir(job_id: int) -> Path:
    return Path(getattr(settings, "INFEROPT_WORK_DIR", Path(settings.INFEROPT_DATA_DIR) / "work")) / str(job_id)


def _discard_attempt(job_id: int) -> None:
    """Delete what an attempt that will not finish left behind: stored files no Artifact row names, its work folder."""
    delete_unpublished_files(job_id)
    shutil.rmtree(_work_dir(job_id), ignore_errors=True)


def _append_log(message: str) -> Concat:
    line = f"{timezone.now():%H:%M:%S} {message}\n"
    return Concat(F("log"), Value(line), output_field=TextField())


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # /proc/<pid>/stat: "pid (comm) state ..."; a zombie has exited already.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _holder_is_gone(row: dict[str, Any], hostname: str, redelivered: bool) -> bool:
    """Is the attempt that set ``row`` ``running`` provably dead, so this delivery may take over?

    On the same host: its pool child's pid no longer exists (Celery requeued the message
    after that child died). On another host: the broker redelivered the message and that
    worker's heartbeat is not live (a live one may still be running it after a broker blip).
    """
    if row["worker"] == hostname:
        return row["worker_pid"] is not None and not _pid_alive(row["worker_pid"])
    if not redelivered:
        return False
    from webapp.fleet.models import WorkerNode

    return not WorkerNode.objects.live().filter(hostname=row["worker"]).exists()


def _claim(job_id: int, hostname: str, redelivered: bool) -> str:
    """Claim job ``job_id`` for this process: ``claimed``, ``skipped`` or ``failed``.

    ``queued`` → ``running`` with a conditional UPDATE (0 rows: another delivery has it).
    A ``running`` row whose holder is gone (``_holder_is_gone``) is re-claimed, with one
    more attempt, unless ``INFEROPT_JOB_MAX_ATTEMPTS`` claims were made already: then it
    is failed, so a job that kills its worker every time never loops nor stays running.
    """
    worker = _fit("worker", hostname)
    # What any claim writes: this process holds the row, one more attempt, progress from zero.
    holder = {
        "started_at": timezone.now(),
        "worker": worker,
        "worker_pid": os.getpid(),
        "attempts": F("attempts") + 1,
        "progress": 0,
    }
    claimed = Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
        status=Job.Status.RUNNING, stage=_fit("stage", "starting"), **holder
    )
    if claimed:
        return "claimed"
    row = Job.objects.filter(pk=job_id).values("status", "worker", "worker_pid", "attempts").first()
    if row is None or row["status"] != Job.Status.RUNNING or not _holder_is_gone(row, worker, redelivered):
        return "skipped"
    # Conditional on the row as read: of two deliveries racing to take over, one wins.
    same_attempt = Job.objects.filter(
        pk=job_id,
        status=Job.Status.RUNNING,
        worker=row["worker"],
        worker_pid=row["worker_pid"],
        attempts=row["attempts"],
    )
    before = f"pid {row['worker_pid']} on {row['worker']}" if row["worker_pid"] else row["worker"]
    limit = settings.INFEROPT_JOB_MAX_ATTEMPTS
    if row["attempts"] >= limit:
        error = (
            f"the worker process running this job ({before}) died before it finished, on each of "
            f"{row['attempts']} attempt(s) (killed, out of memory or crashed); gave up after "
            f"INFEROPT_JOB_MAX_ATTEMPTS={limit} — nothing was published"
        )
        failed = same_attempt.update(
            status=Job.Status.FAILED,
            stage=_fit("stage", "lost"),
            error=error,
            finished_at=timezone.now(),
            log=_append_log(f"failed: {error}"),
        )
        if failed:
            _discard_attempt(job_id)
        return "failed" if failed else "skipped"
    reclaimed = same_attempt.update(
        **holder,
        stage=_fit("stage", "restarting"),
        log=_append_log(
            f"attempt {row['attempts'] + 1} of {limit}: the worker process of the previous attempt "
            f"({before}) died before it finished; running the job again"
        ),
    )
    if not reclaimed:
        return "skipped"
    delete_unpublished_files(job_id)
    return "claimed"


ORPHAN_ERROR = (
    "the worker running this job stopped (killed, crashed or restarted) before it finished; "
    "nothing was published — submit the job again"
)


def fail_orphaned_jobs(hostname: str) -> int:
    """Fail jobs still ``running`` on ``hostname``; return how many.

    Called when a worker starts: a worker that is only now ready cannot be
    running anything, so such rows were left by its previous life (kill -9,
    hard time limit, Ctrl-C past the grace period) and would otherwise stay
    "running" forever.
    """
    orphans = list(
        Job.objects.filter(status=Job.Status.RUNNING, worker=_fit("worker", hostname)).values_list("pk", flat=True)
    )
    failed = Job.objects.filter(pk__in=orphans, status=Job.Status.RUNNING).update(
        status=Job.Status.FAILED,
        error=ORPHAN_ERROR,
        stage=_fit("stage", "lost"),
        finished_at=timezone.now(),
    )
    for job_id in orphans:
        _discard_attempt(job_id)
    return failed


def _soft_limit(task: Any) -> int | None:
    limits = task.request.timelimit or (None, None)
    return limits[1] or task.soft_time_limit


@app.task(
    name="inferopt.run_job",
    bind=True,
    acks_late=True,
    soft_time_limit=settings.INFEROPT_JOB_SOFT_TIME_LIMIT,
    time_limit=settings.INFEROPT_JOB_HARD_TIME_LIMIT,
)
def run_job(self, job_id: int) -> str:
    """Run job ``job_id`` once; return its final status, or ``missing``/``skipped``.

    ``skipped`` means another delivery already claimed the job (not ``queued``, and
    not ``running`` in a process that died: see ``_claim``). Errors end the job
    ``failed`` with a one-line ``error`` and a capped ``traceback``; they are not
    raised, since the row is the record.
    """
    if not Job.objects.filter(pk=job_id).exists():
        logger.warning("job %s does not exist (deleted before it ran?)", job_id)
        return "missing"
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    claim = _claim(job_id, self.request.hostname or socket.gethostname(), redelivered)
    if claim == "failed":
        logger.warning("job %s failed: its worker process died on every attempt", job_id)
        return Job.Status.FAILED
    if claim != "claimed":
        logger.info("job %s is not queued any more (already claimed or cancelled): skipped", job_id)
        return "skipped"

    job = Job.objects.get(pk=job_id)
    started = time.monotonic()
    soft_limit = _soft_limit(self)
    recorder = JobRecorder(
        job_id,
        deadline=started + soft_limit if soft_limit else None,
        claim={"worker": job.worker, "worker_pid": job.worker_pid},
    )
    work_dir = _work_dir(job_id)
    stored: list[str] = []
    succeeded = False
    logger.info("job %s claimed by %s (pid %s, attempt %s)", job_id, job.worker, job.worker_pid, job.attempts)
    try:
        shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True)
        # Uploads named by storage reference → verified local copies (workers/inputs.py); in memory only.
        job.recipe = materialize_inputs(job, work_dir)
        if job.recipe.get("mode") == "search":
            outcome = _run_search_job(job, recorder, work_dir, stored)
        elif job.recipe.get("mode") == SERVING_MODE:
            outcome = _run_serving_job(job, recorder, work_dir, stored)
        else:
            report = run_recipe(
                Recipe.parse(job.recipe),
                work_dir / "run",
                on_progress=recorder.on_progress,
                on_log=recorder.on_log,
                should_cancel=recorder.should_cancel,
                quick=settings.INFEROPT_QUICK_BENCHMARK,
            )
            recorder.set_stage("packaging", f"packaging {len(report.variants) - 1} variant(s) for download")
            outcome = {
                "report": report.model_dump(mode="json"),
                "gate_outcome": report.gate.outcome if report.gate else "",
                "artifacts": _package_variants(job, report, work_dir, stored),
            }
            # Before the row says succeeded: the page the user is polling reloads then, and finds them built.
            figure_cache.warm(outcome["report"])
        with transaction.atomic():
            Artifact.objects.bulk_create(outcome["artifacts"])
            done = recorder.finish(
                status=Job.Status.SUCCEEDED,
                stage=_fit("stage", "done"),
                progress=100,
                report=outcome["report"],
                gate_outcome=outcome["gate_outcome"],
                optimization_seconds=time.monotonic() - started,
                finished_at=timezone.now(),
            )
            if not done:
                # The row left "running" under us (deleted or reset): keep nothing.
                transaction.set_rollback(True)
                return "missing"
            # Audit the outcome with it; reviewers are notified after commit if it awaits review.
            record_gate_outcome(job_id)
        succeeded = True
        logger.info("job %s succeeded (%s)", job_id, outcome["gate_outcome"] or "no gate")
        return Job.Status.SUCCEEDED
    except CancelledError:
        recorder.log("cancelled at the user's request")
        _end(recorder, Job.Status.CANCELLED, started, stage="cancelled")
        logger.info("job %s cancelled", job_id)
        return Job.Status.CANCELLED
    except SoftTimeLimitExceeded:
        message = f"exceeded the time limit of {soft_limit} s"
        _end(recorder, Job.Status.FAILED, started, error=message, tb=traceback.format_exc())
        logger.warning("job %s failed: %s", job_id, message)
        return Job.Status.FAILED
    except InferOptError as error:
        # Expected failures (bad recipe, pass cannot run here, bad result): the message is for users.
        _end(recorder, Job.Status.FAILED, started, error=str(error), tb=traceback.format_exc())
        logger.info("job %s failed: %s", job_id, error)
        return Job.Status.FAILED
    except Exception as error:
        _end(recorder, Job.Status.FAILED, started, error=f"{type(error).__name__}: {error}", tb=traceback.format_exc())
        logger.exception("job %s failed unexpectedly", job_id)
        return Job.Status.FAILED
    finally:
        if not succeeded:
            _delete_stored(stored)
        shutil.rmtree(work_dir, ignore_errors=True)


def _end(
    recorder: JobRecorder, status: str, started: float, *, stage: str | None = None, error: str = "", tb: str = ""
) -> None:
    fields: dict[str, Any] = {
        "status": status,
        "finished_at": timezone.now(),
        "optimization_seconds": time.monotonic() - started,
    }
    if stage:
        fields["stage"] = _fit("stage", stage)
    if error:
        fields["error"] = _one_line(error)
        fields["traceback"] = _tail(tb)
        recorder.log(f"failed: {fields['error']}")
    recorder.finish(**fields)


@task_failure.connect(sender=run_job)
def fail_job_killed_by_celery(sender=None, task_id=None, exception=None, args=None, **kwargs) -> None:
    """Fail the row of a job whose pool child Celery killed without a redelivery.

    Runs in the worker's main process after a hard time limit (the child is killed,
    the message acknowledged) or a lost child that is not requeued; otherwise the row
    would stay ``running`` while the worker lives on. Removes the dead attempt's
    work folder and stored files, which its own ``finally`` never got to.
    """
    if not isinstance(exception, (TimeLimitExceeded, WorkerLostError)) or not args:
        return
    job_id = args[0]
    if isinstance(exception, TimeLimitExceeded):
        limit = exception.args[0] if exception.args else "?"
        error = f"exceeded the hard time limit of {limit} s: the worker process was killed"
    else:
        error = f"the worker process running this job died before it finished ({exception})"
    failed = Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).update(
        status=Job.Status.FAILED,
        stage=_fit("stage", "failed"),
        error=_one_line(error),
        finished_at=timezone.now(),
        log=_append_log(f"failed: {_one_line(error)}"),
    )
    if failed:
        logger.warning("job %s failed: %s", job_id, error)
        _discard_attempt(job_id)
