"""Job operations: submit (validate, save, enqueue after commit), cancel, retry, and the lost-job sweep.

The web app enqueues by task *name* only, so it never imports worker code:
``send_task("inferopt.run_job", args=[job.id], queue=job.queue)``.
"""

from __future__ import annotations

import logging
import uuid
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from optimizers.errors import RecipeError
from optimizers.passes import get_pass
from optimizers.recipe import Recipe, Step
from webapp.catalog.services import dataset_reference
from webapp.jobs.models import Artifact, Job

logger = logging.getLogger(__name__)

RUN_JOB_TASK = "inferopt.run_job"
CPU_QUEUE = "cpu"
GPU_QUEUE = "gpu"


def celery_app():
    """The project's Celery app (``workers/celery.py``), imported only when a job is sent."""
    from workers.celery import app

    return app


def queue_for(recipe: Recipe) -> str:
    """``gpu`` when any step needs CUDA, or prefers a GPU while ``INFEROPT_GPU_QUEUE_ENABLED``; else ``cpu``.

    Without a known GPU worker a GPU-preferring step (gptq, awq, w8a8) stays on ``cpu``, where
    its preflight refuses it if the memory/time estimate does not fit the worker.
    """
    requirements = [get_pass(step.pass_name).requires for step in recipe.steps]
    if any(requirement.device == "cuda" for requirement in requirements):
        return GPU_QUEUE
    prefers_gpu = any(requirement.prefers_gpu for requirement in requirements) or _variants_want_gpu(recipe)
    if settings.INFEROPT_GPU_QUEUE_ENABLED and prefers_gpu:
        return GPU_QUEUE
    return CPU_QUEUE


def _variants_want_gpu(recipe) -> bool:
    """The recipe's benchmark asks for runtime variants that run only on a GPU (fp16, bf16, flash attention)."""
    from optimizers.benchmark.variants import wants_gpu

    benchmark = getattr(recipe, "benchmark", None)
    return wants_gpu(list(getattr(benchmark, "variants", None) or []))


def route_recipe(recipe) -> str:
    """The queue for ``recipe`` by the live workers' capabilities (``webapp.fleet.routing``).

    Falls back to ``queue_for`` while no worker is live; raises ``RoutingError`` (a
    ``RecipeError``: form error / HTTP 400) naming each pass no live worker can run and why.
    """
    from webapp.fleet.routing import route_steps

    return route_steps(
        [step.pass_name for step in recipe.steps],
        static_queue=lambda: queue_for(recipe),
        prefers_gpu=_variants_want_gpu(recipe),
    )


def default_job_name(model_entry, recipe: Recipe) -> str:
    steps = " → ".join(step.pass_name for step in recipe.steps) or "baseline only"
    return f"{model_entry.name}: {steps}"[:200]


def submit_job(user, team, model_entry, recipe_mapping: dict[str, Any], dataset=None, name: str = "") -> Job:
    """Validate ``recipe_mapping`` for ``model_entry``, save a queued job and enqueue it on commit.

    ``model`` is set to the entry's reference and ``dataset`` to the dataset's storage
    reference (``storage:datasets/...@sha256:...``), whatever the mapping said: workers
    fetch uploads through the storage API, never by a path on the web host. Raises
    ``RecipeError`` with a readable message.
    """
    raw = dict(recipe_mapping)
    raw["model"] = model_entry.reference
    if dataset is not None:
        raw["dataset"] = dataset_reference(dataset)
    if not raw.get("task"):
        raw["task"] = model_entry.task
    raw["steps"] = resolve_calibration_datasets(user, raw.get("steps"))
    recipe = Recipe.parse(raw, input_format=model_entry.format)
    job = Job.objects.create(
        team=team,
        submitter=user,
        name=(name or "").strip()[:200] or default_job_name(model_entry, recipe),
        model=model_entry,
        dataset=dataset,
        recipe=recipe.to_raw(),
        queue=route_recipe(recipe),
        celery_task_id=str(uuid.uuid4()),
    )
    job_id = job.pk
    transaction.on_commit(lambda: enqueue_job(job_id))
    return job


def search_space(model_entry, mapping: dict[str, Any], dataset=None):
    """Validate a ``mode: search`` mapping for ``model_entry`` → (``SearchSpace``, candidates to try).

    ``model``/``dataset``/``task`` are filled in as for ``submit_job``. Raises ``RecipeError``
    for a bad space, an unknown pass or bad step config, or when no combination can run.
    """
    from pydantic import ValidationError

    from optimizers.search import SearchSpace, enumerate_candidates

    raw = {key: value for key, value in mapping.items() if key != "mode"}
    raw["model"] = model_entry.reference
    if dataset is not None:
        raw["dataset"] = dataset_reference(dataset)
    if not raw.get("task"):
        raw["task"] = model_entry.task
    try:
        space = SearchSpace.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'space'}: {item['msg']}" for item in error.errors()
        )
        raise RecipeError(f"invalid search space: {problems}") from None
    if not space.axes or any(not isinstance(axis, list) or not axis for axis in space.axes):
        raise RecipeError("'axes' must be a non-empty list of non-empty lists of options (none or steps)")
    valid, skipped = enumerate_candidates(space, model_entry.format)
    if not valid:
        reasons = "; ".join(candidate.reason for candidate in skipped[:3])
        raise RecipeError(f"no combination of the axes can run on this model{': ' + reasons if reasons else ''}")
    return space, valid


def submit_search_job(user, team, model_entry, mapping: dict[str, Any], dataset=None, name: str = "") -> Job:
    """Like ``submit_job`` for a search: the job's ``recipe`` is ``{"mode": "search", **SearchSpace}``."""
    space, valid = search_space(model_entry, mapping, dataset=dataset)
    steps = [Step.from_raw(step) for candidate in valid for step in candidate]
    for step in steps:
        if _calibration_value(step.config) is not None:
            raise RecipeError("a search uses the built-in calibration text: leave calibration_dataset empty")
    job = Job.objects.create(
        team=team,
        submitter=user,
        name=(name or "").strip()[:200] or f"{model_entry.name}: search ({len(valid)} candidates)"[:200],
        model=model_entry,
        dataset=dataset,
        recipe={"mode": "search", **space.model_dump(mode="json", exclude_none=True)},
        queue=route_recipe(SimpleNamespace(steps=steps)),
        celery_task_id=str(uuid.uuid4()),
    )
    job_id = job.pk
    transaction.on_commit(lambda: enqueue_job(job_id))
    return job


def serving_spec(user, model_entry, mapping: dict[str, Any], dataset=None):
    """Validate a ``mode: serving`` mapping for ``model_entry`` → ``ServingSpec``.

    ``model`` is set to the entry's reference and ``task`` to the entry's unless given;
    calibration datasets in ``steps`` are resolved as for ``submit_job``. Raises ``RecipeError``
    for unknown keys, a bad budget or grid, an unknown pass, a step chain that cannot run on
    the entry's format, or a dataset (a serving analysis measures load, not quality).
    """
    from optimizers.serving.analysis import ServingSpec

    if dataset is not None or mapping.get("dataset"):
        raise RecipeError("a serving analysis takes no dataset: it measures latency under load, not quality")
    raw = dict(mapping)
    raw["model"] = model_entry.reference
    if not raw.get("task"):
        raw["task"] = model_entry.task
    raw["steps"] = resolve_calibration_datasets(user, raw.get("steps"))
    spec = ServingSpec.parse(raw)
    if spec.speculative.enabled and spec.speculative.draft_model and not spec.speculative.draft.startswith("zoo:"):
        # Like calibration datasets: a spec must not make the worker read an arbitrary local folder.
        raise RecipeError("speculative.draft must be a demo model (zoo:tiny-lm-draft), not a path")
    # ServingSpec.parse guesses the input format from the reference; the entry knows it.
    Recipe.parse({"model": spec.model, "steps": spec.steps}, input_format=model_entry.format)
    return spec


def submit_serving_job(user, team, model_entry, mapping: dict[str, Any], dataset=None, name: str = "") -> Job:
    """Like ``submit_job`` for a serving analysis: the job's ``recipe`` is the ``ServingSpec`` as JSON."""
    spec = serving_spec(user, model_entry, mapping, dataset=dataset)
    steps = [Step.from_raw(step) for step in spec.steps]
    job = Job.objects.create(
        team=team,
        submitter=user,
        name=(name or "").strip()[:200] or f"{model_entry.name}: serving analysis"[:200],
        model=model_entry,
        recipe=spec.model_dump(mode="json", exclude_none=True),
        queue=route_recipe(SimpleNamespace(steps=steps)),
        celery_task_id=str(uuid.uuid4()),
    )
    job_id = job.pk
    transaction.on_commit(lambda: enqueue_job(job_id))
    return job


def resolve_calibration_datasets(user, steps: Any) -> Any:
    """Steps whose ``calibration_dataset`` is ``dataset:<id>`` get that upload's storage reference.

    A ``zoo:`` name passes through; any other value (a path) is refused: a pass config
    must not make the worker read an arbitrary file.
    """
    if not isinstance(steps, list):
        return steps
    from webapp.catalog.services import resolve_dataset

    resolved = []
    for step in steps:
        value = _calibration_value(step)
        if isinstance(value, str) and value.startswith("dataset:"):
            _, stored = resolve_dataset(user, value)
            step = {**step, "calibration_dataset": stored}
        elif value is not None and not (isinstance(value, str) and value.startswith("zoo:")):
            raise RecipeError(
                "calibration_dataset must be 'dataset:<id>' (an uploaded JSONL dataset) or empty for the built-in text"
            )
        resolved.append(step)
    return resolved


def _calibration_value(step: Any) -> Any:
    return step.get("calibration_dataset") or None if isinstance(step, dict) else None


def enqueue_job(job_id: int) -> bool:
    """Publish the run task; if the broker cannot be reached, fail the job with a clear error."""
    job = Job.objects.get(pk=job_id)
    try:
        celery_app().send_task(
            RUN_JOB_TASK,
            args=[job.pk],
            queue=job.queue,
            task_id=job.celery_task_id or None,
            retry=True,
            retry_policy={
                "max_retries": settings.INFEROPT_ENQUEUE_MAX_RETRIES,
                "interval_start": 0,
                "interval_step": 0.5,
                "interval_max": 1,
            },
        )
    except Exception as error:  # any broker/import failure must not break the request
        logger.exception("could not enqueue job %s", job_id)
        Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
            status=Job.Status.FAILED,
            error=f"could not reach the queue: {error}",
            finished_at=timezone.now(),
        )
        return False
    return True


def cancel_job(job: Job) -> Job:
    """Ask a job to stop: a queued job is cancelled at once (and revoked), a running one at its next step."""
    if job.is_final:
        return job
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)
    cancelled_now = Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
        status=Job.Status.CANCELLED, stage="cancelled", finished_at=timezone.now()
    )
    if cancelled_now and job.celery_task_id:
        try:
            revoke_task(job.celery_task_id)
        except Exception:  # the cancelled status already stops a late delivery
            logger.warning("could not revoke task %s of job %s", job.celery_task_id, job.pk, exc_info=True)
    job.refresh_from_db()
    return job


def revoke_task(task_id: str) -> None:
    """Tell the workers to discard ``task_id``; raise at once if the broker cannot be reached.

    A revoke is a broadcast whose publish retries forever (kombu ``retry=True``), which
    would hang the web request while Redis is down: the broker is checked first, with
    the bounded retries ``enqueue_job`` uses.
    """
    app = celery_app()
    with app.connection_for_write() as connection:
        connection.ensure_connection(
            max_retries=settings.INFEROPT_ENQUEUE_MAX_RETRIES, interval_start=0, interval_step=0.5, interval_max=1
        )
    app.control.revoke(task_id)


class RetryError(ValueError):
    """The job cannot be retried (it is still queued, running, or succeeded)."""


def retry_job(user, job: Job) -> Job:
    """Submit a failed (or lost) or cancelled ``job`` again: a new queued job with the same recipe.

    A new row rather than a requeue, so the failed run stays the record of what
    happened (log, error, attempts); the new job points back at it with ``retry_of``
    and goes to the same queue. The caller checks that ``user`` may see the job
    (a member of its team). Raises ``RetryError`` for any other status.
    """
    if not job.can_retry:
        status = job.get_status_display().lower()
        raise RetryError(f"job #{job.pk} is {status}: only failed or cancelled jobs can be retried")
    retry = Job.objects.create(
        team=job.team,
        submitter=user,
        name=job.name,
        model=job.model,
        dataset=job.dataset,
        recipe=job.recipe,
        queue=job.queue,
        celery_task_id=str(uuid.uuid4()),
        retry_of=job,
    )
    retry_id = retry.pk
    transaction.on_commit(lambda: enqueue_job(retry_id))
    return retry


LOST_STAGE = "lost"


def mark_lost_jobs() -> int:
    """Fail ``running`` jobs whose worker stopped heartbeating; return how many.

    A worker's ``WorkerNode`` heartbeat (``workers/heartbeat.py``) older than
    ``INFEROPT_WORKER_LIVE_TIMEOUT_S``, or a worker that said it stopped, cannot be
    running anything: its jobs are marked failed, stage ``lost``, with the reason, and
    can be retried. Jobs of a worker that never registered are left alone (nothing to
    judge by; that worker's restart fails them). Called by every live worker's
    heartbeat and by the job pages; reads first, so the common case writes nothing.
    """
    from webapp.fleet.models import WorkerNode

    running = list(Job.objects.filter(status=Job.Status.RUNNING).exclude(worker="").values_list("pk", "worker"))
    if not running:
        return 0
    nodes = {node.hostname: node for node in WorkerNode.objects.filter(hostname__in={w for _, w in running})}
    lost = 0
    for job_id, worker in running:
        node = nodes.get(worker)
        if node is None or node.is_live:
            continue
        if node.stopped_at is not None:
            why = f"stopped at {node.stopped_at:%Y-%m-%d %H:%M:%S} UTC"
        else:
            why = (
                f"sent no heartbeat since {node.last_seen:%Y-%m-%d %H:%M:%S} UTC "
                f"(timeout {settings.INFEROPT_WORKER_LIVE_TIMEOUT_S} s)"
            )
        error = f"lost: worker {worker} {why} while running this job; nothing was published — retry it"
        lost += Job.objects.filter(pk=job_id, status=Job.Status.RUNNING, worker=worker).update(
            status=Job.Status.FAILED, stage=LOST_STAGE, error=error, finished_at=timezone.now()
        )
        delete_unpublished_files(job_id)
    if lost:
        logger.warning("marked %d job(s) lost: their workers stopped heartbeating", lost)
    return lost


def delete_unpublished_files(job_id: int) -> None:
    """Delete what a dead attempt stored under ``jobs/<job>/`` that no Artifact row publishes."""
    storage = Artifact._meta.get_field("file").storage
    folder = f"jobs/{job_id}"
    try:
        _, files = storage.listdir(folder)
    except OSError:  # no such folder (nothing was stored), or storage unreachable: nothing to do now
        return
    published = set(Artifact.objects.filter(job_id=job_id).values_list("file", flat=True))
    for name in (f"{folder}/{file}" for file in files):
        if name not in published:
            try:
                storage.delete(name)
            except OSError:
                logger.warning("could not delete unpublished file %s", name, exc_info=True)
