"""Capability-based routing: send a job to a queue that some live worker serving it can run.

A job runs all its steps on one worker. With live workers registered (``WorkerNode``
heartbeats within ``INFEROPT_WORKER_LIVE_TIMEOUT_S``), ``optimizers.capabilities.choose_queue``
picks among the workers that can run every step, by each worker's own probe; if none can,
``RoutingError`` (a ``RecipeError``: a form error / HTTP 400) names each pass and why, so a
job is never left in a queue nobody can serve.

With no live worker (a fresh ``make run`` before the worker's first heartbeat, or every
worker down) there is nothing to judge by, so routing falls back to the static rules of
``webapp.jobs.services.queue_for`` and the job waits in its queue for a worker, as before the
registry existed — except that a step needing CUDA is refused unless
``INFEROPT_GPU_QUEUE_ENABLED`` declares a GPU worker: waiting for one that may never come
is exactly the stuck job this module exists to prevent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction

from optimizers.capabilities import StepNeed, WorkerView, choose_queue
from optimizers.errors import RecipeError
from optimizers.passes import get_pass
from optimizers.passes.base import Requirements
from webapp.fleet.models import WorkerNode

logger = logging.getLogger(__name__)


class RoutingError(RecipeError):
    """No live worker can run the job (the message names each pass and the reason)."""


def step_need(pass_name: str) -> StepNeed:
    technique = get_pass(pass_name)
    return StepNeed(
        pass_name=pass_name,
        requires=technique.requires,
        # TensorRT engines run only on the GPU architecture they were built on.
        pins_architecture=technique.output_format == "tensorrt",
    )


def live_workers() -> list[WorkerView]:
    """The live registry as routing sees it; empty (static routing) if the registry cannot be read.

    A database without the registry's table (migrations not applied yet) must not break job
    submission or estimates: it is logged and treated like "no worker has registered".
    """
    try:
        with transaction.atomic():  # a savepoint: a failed read must not poison the caller's transaction
            nodes = list(WorkerNode.objects.live())
    except DatabaseError:
        logger.warning("the worker registry cannot be read (migrations not applied?): static routing", exc_info=True)
        return []
    return [
        WorkerView(hostname=node.hostname, queues=tuple(node.queues or ()), capabilities=node.capabilities or {})
        for node in nodes
    ]


def _static_refusal(need: StepNeed) -> str | None:
    needs_gpu = need.requires.device == "cuda" or need.requires.min_compute_capability is not None
    if needs_gpu and not settings.INFEROPT_GPU_QUEUE_ENABLED:
        return (
            f"{need.pass_name} needs a CUDA GPU, and no live worker has reported one "
            "(none has registered yet, or their heartbeats stopped); start a GPU worker "
            "(-Q gpu,gpu.smXY) and submit again"
        )
    return None


#: Routing's name for the benchmark's GPU-only runtime variants (fp16/bf16/flash attention).
GPU_VARIANTS_NEED = "benchmark variants (half precision)"


def route_steps(
    pass_names: Sequence[str], static_queue: Callable[[], str], workers=None, *, prefers_gpu: bool = False
) -> str:
    """The queue for a job running ``pass_names`` on one worker; ``RoutingError`` if none can.

    ``static_queue()`` gives the queue when no worker is live (see the module docstring).
    ``workers`` (a list of ``WorkerView``) defaults to the live registry. ``prefers_gpu``: the
    recipe's benchmark asks for GPU-only runtime variants (``benchmark.variants``: fp16, bf16,
    flash attention): a live GPU worker that can run the steps is preferred, and a CPU-only
    fleet still runs the job (those rows are then reported as skipped, with the reason).
    """
    needs = [step_need(name) for name in dict.fromkeys(pass_names)]
    if prefers_gpu:
        needs.append(StepNeed(pass_name=GPU_VARIANTS_NEED, requires=Requirements(prefers_gpu=True)))
    workers = live_workers() if workers is None else workers
    if not workers:
        problems = [problem for problem in map(_static_refusal, needs) if problem]
        if problems:
            raise RoutingError("; ".join(problems))
        return static_queue()
    routing = choose_queue(needs, workers)
    if not routing.ok:
        raise RoutingError("; ".join(routing.problems))
    return routing.queue


def pass_availability(pass_names: Iterable[str]) -> dict[str, str]:
    """``{pass name: why no live worker can run it}`` for the passes that cannot run now (the form disables them)."""
    workers = live_workers()
    unavailable: dict[str, str] = {}
    for name in pass_names:
        try:
            route_steps([name], static_queue=lambda: "", workers=workers)
        except RoutingError as error:
            unavailable[name] = str(error)
    return unavailable


def registry_summary() -> dict[str, Any]:
    """Counts for pages: registered, live, and whether routing uses the registry or the static fallback."""
    registered = WorkerNode.objects.count()
    live = WorkerNode.objects.live().count()
    return {"registered": registered, "live": live, "mode": "registry" if live else "static"}
