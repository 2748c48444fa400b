"""Dynamic batching sweep: Poisson load → in-process dynamic batcher → the model's runtime.

For every setting of the grid (max batch size × max queue delay) and every
offered rate, ``requests_per_cell`` requests arrive with exponential gaps
(an open-loop Poisson process, arrival times drawn in advance from a seed). The
batcher follows Triton's dynamic batcher: it waits from the oldest queued
request's arrival until either ``max_batch_size`` requests are queued or
``max_queue_delay`` has passed, then runs one batch of whatever has arrived
(at most ``max_batch_size``); requests that arrive while the model runs wait
in the queue. A request's latency runs from its *scheduled* arrival to the end
of its batch, so a busy server cannot hide queueing (no coordinated omission).

The batcher runs in the calling thread and treats a request as arrived once the
clock passes its arrival time, exactly like a queue read with a timeout, without
a second Python thread competing with the model for the interpreter. Inputs are
built once per batch size before timing: the figures are model time plus
queueing, not tokenization.

``recommend_setting`` (pure) picks the setting with the highest measured
throughput whose p95 latency stays within the budget. ``sweep_isolated`` runs the
sweep in a fresh process (``python -m optimizers.serving.batching IN OUT``), like
every other timing in InferOpt.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PreflightError

#: A cell whose throughput stays below this share of the offered rate is saturated (its queue grows).
SATURATION_SHARE = 0.8

Infer = Callable[[int], object]


class SweepSettings(BaseModel):
    """The grid and load of a batching sweep (the ``batching`` section of a serving analysis)."""

    model_config = ConfigDict(extra="forbid")

    max_batch_sizes: list[int] = Field(default_factory=lambda: [1, 4, 8, 16])
    max_queue_delays_ms: list[float] = Field(default_factory=lambda: [0.0, 2.0, 10.0])
    #: Offered rates as multiples of the batch-1 capacity (1 / batch-1 latency), measured first.
    rate_factors: list[float] = Field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0])
    #: Offered rates in requests/s; when given, ``rate_factors`` is ignored.
    rates_per_s: list[float] | None = None
    requests_per_cell: int = Field(200, ge=5, le=100_000)
    #: A cell stops taking requests after this long (the rest count as not completed).
    max_cell_seconds: float = Field(20.0, gt=0, le=3600)
    seq_len: int = Field(128, ge=1, le=8192)
    threads: int | None = Field(None, ge=1, le=1024)
    seed: int = 0

    @field_validator("max_batch_sizes")
    @classmethod
    def _batches(cls, value: list[int]) -> list[int]:
        if not value or any(size < 1 or size > 1024 for size in value):
            raise ValueError("max_batch_sizes must be a non-empty list of integers between 1 and 1024")
        return sorted(set(value))

    @field_validator("max_queue_delays_ms")
    @classmethod
    def _delays(cls, value: list[float]) -> list[float]:
        if not value or any(delay < 0 or delay > 10_000 for delay in value):
            raise ValueError("max_queue_delays_ms must be a non-empty list of values between 0 and 10000")
        return sorted(set(value))

    @field_validator("rate_factors", "rates_per_s")
    @classmethod
    def _rates(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (not value or any(rate <= 0 for rate in value)):
            raise ValueError("rates must be a non-empty list of positive numbers")
        return sorted(set(value)) if value is not None else None


class BatchingCell(BaseModel):
    """What one (max batch size, max queue delay, offered rate) cell measured."""

    max_batch_size: int
    max_queue_delay_ms: float
    offered_rate_per_s: float
    requests: int
    completed: int
    duration_s: float
    throughput_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    batches: int
    mean_batch_size: float
    #: Throughput below ``SATURATION_SHARE`` of the offered rate, or requests left unserved.
    saturated: bool


class BatchingSweep(BaseModel):
    """A whole sweep: where it ran, the batch-1 latency the rates derive from, and every cell."""

    model: str
    runtime: str
    device: str
    batch1_latency_ms: float
    rates_per_s: list[float]
    settings: SweepSettings
    cells: list[BatchingCell]
    seconds: float


class BatchingRecommendation(BaseModel):
    """The setting to deploy: highest throughput with p95 within the budget."""

    max_batch_size: int
    max_queue_delay_ms: float
    #: For Triton's ``preferred_batch_size``: the batch the batcher waits to fill.
    preferred_batch_sizes: list[int]
    throughput_per_s: float
    p95_ms: float
    offered_rate_per_s: float
    p95_budget_ms: float
    reason: str


def poisson_arrivals(rate_per_s: float, count: int, *, seed: int = 0) -> np.ndarray:
    """``count`` arrival times in seconds from 0 with exponential gaps of mean ``1 / rate_per_s``.

    The first request arrives at 0 so every cell starts busy at once.
    """
    if rate_per_s <= 0 or count < 1:
        raise ValueError("rate_per_s must be > 0 and count ≥ 1")
    gaps = np.random.default_rng(seed).exponential(1.0 / rate_per_s, size=count)
    gaps[0] = 0.0
    return np.cumsum(gaps)


def run_cell(
    infer: Infer,
    arrivals: np.ndarray,
    *,
    max_batch_size: int,
    max_queue_delay_s: float,
    offered_rate_per_s: float,
    max_seconds: float = float("inf"),
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> BatchingCell:
    """Serve ``arrivals`` (seconds from the start, ascending) through the dynamic batcher.

    ``infer(n)`` runs the model on a batch of ``n`` requests. Returns the cell's
    latency percentiles (over completed requests), throughput (completed ÷ time
    from the first arrival to the last completion) and batch statistics.
    """
    count = len(arrivals)
    latencies = np.full(count, np.nan)
    batch_sizes: list[int] = []
    start = clock()
    last_done = 0.0
    served = 0
    while served < count:
        now = clock() - start
        if now > max_seconds:
            break
        if arrivals[served] > now:  # queue empty: wait for the next request
            sleep(arrivals[served] - now)
        # Wait from the oldest request's arrival until the batch is full or its delay is up.
        fill_index = served + max_batch_size - 1
        fill_time = arrivals[fill_index] if fill_index < count else float("inf")
        wake = min(arrivals[served] + max_queue_delay_s, fill_time)
        now = clock() - start
        if wake > now:
            sleep(wake - now)
            now = clock() - start
        arrived = int(np.searchsorted(arrivals, now, side="right"))
        end = max(served + 1, min(served + max_batch_size, arrived))
        infer(end - served)
        last_done = clock() - start
        latencies[served:end] = last_done - arrivals[served:end]
        batch_sizes.append(end - served)
        served = end
    done = latencies[:served] * 1000.0
    duration = max(last_done - float(arrivals[0]), 1e-9)
    throughput = served / duration if served else 0.0

    def percentile(q: float) -> float:
        return float(np.percentile(done, q)) if served else float("inf")

    return BatchingCell(
        max_batch_size=max_batch_size,
        max_queue_delay_ms=max_queue_delay_s * 1000.0,
        offered_rate_per_s=offered_rate_per_s,
        requests=count,
        completed=served,
        duration_s=duration,
        throughput_per_s=throughput,
        p50_ms=percentile(50),
        p95_ms=percentile(95),
        p99_ms=percentile(99),
        mean_ms=float(np.mean(done)) if served else float("inf"),
        batches=len(batch_sizes),
        mean_batch_size=float(np.mean(batch_sizes)) if batch_sizes else 0.0,
        saturated=served < count or throughput < SATURATION_SHARE * offered_rate_per_s,
    )


def batch1_latency_s(infer: Infer, *, calls: int = 20) -> float:
    """Median seconds of ``infer(1)`` over ``calls`` calls (after the caller's warm-up)."""
    timings = []
    for _ in range(calls):
        began = time.perf_counter()
        infer(1)
        timings.append(time.perf_counter() - began)
    return float(np.median(timings))


def run_sweep(
    infer: Infer,
    settings: SweepSettings,
    *,
    model: str = "",
    runtime: str = "",
    device: str = "",
    on_cell: Callable[[int, int], None] | None = None,
) -> BatchingSweep:
    """Warm every batch size up to the largest, measure batch-1 latency, then run every cell.

    Cells are ordered by max batch size, then delay, then rate; each setting's
    cells use the same arrival times per rate (seeded), so settings compare on
    identical load. ``on_cell(done, total)`` follows progress.
    """
    began = time.perf_counter()
    for size in range(1, max(settings.max_batch_sizes) + 1):
        for _ in range(2):  # first calls per shape allocate and pick kernels
            infer(size)
    single = batch1_latency_s(infer)
    if settings.rates_per_s is not None:
        rates = list(settings.rates_per_s)
    else:
        rates = [factor / max(single, 1e-6) for factor in settings.rate_factors]
    arrivals = {
        rate: poisson_arrivals(rate, settings.requests_per_cell, seed=settings.seed + index)
        for index, rate in enumerate(rates)
    }
    total = len(settings.max_batch_sizes) * len(settings.max_queue_delays_ms) * len(rates)
    cells = []
    for batch in settings.max_batch_sizes:
        for delay in settings.max_queue_delays_ms:
            for rate in rates:
                cells.append(
                    run_cell(
                        infer,
                        arrivals[rate],
                        max_batch_size=batch,
                        max_queue_delay_s=delay / 1000.0,
                        offered_rate_per_s=rate,
                        max_seconds=settings.max_cell_seconds,
                    )
                )
                if on_cell is not None:
                    on_cell(len(cells), total)
    return BatchingSweep(
        model=model,
        runtime=runtime,
        device=device,
        batch1_latency_ms=single * 1000.0,
        rates_per_s=rates,
        settings=settings,
        cells=cells,
        seconds=time.perf_counter() - began,
    )


def recommend_setting(cells: Sequence[BatchingCell], p95_budget_ms: float) -> BatchingRecommendation | None:
    """The cell with the highest throughput whose p95 ≤ ``p95_budget_ms``; None if no cell qualifies.

    Saturated cells are never chosen: their queue grows, so their p95 only
    reflects how many requests the cell happened to send. Ties (throughput
    within 1e-9) go to the lower p95, then the smaller batch, then the shorter delay.
    """
    if p95_budget_ms <= 0:
        raise ValueError("p95_budget_ms must be positive")
    eligible = [cell for cell in cells if not cell.saturated and cell.p95_ms <= p95_budget_ms]
    if not eligible:
        return None
    best = max(
        eligible,
        key=lambda cell: (
            round(cell.throughput_per_s, 9),
            -cell.p95_ms,
            -cell.max_batch_size,
            -cell.max_queue_delay_ms,
        ),
    )
    return BatchingRecommendation(
        max_batch_size=best.max_batch_size,
        max_queue_delay_ms=best.max_queue_delay_ms,
        preferred_batch_sizes=[best.max_batch_size],
        throughput_per_s=best.throughput_per_s,
        p95_ms=best.p95_ms,
        offered_rate_per_s=best.offered_rate_per_s,
        p95_budget_ms=p95_budget_ms,
        reason=(
            f"highest measured throughput ({best.throughput_per_s:.1f} req/s at an offered "
            f"{best.offered_rate_per_s:.1f} req/s) with p95 {best.p95_ms:.2f} ms within the "
            f"{p95_budget_ms:g} ms budget, out of {len(eligible)} of {len(cells)} cells that met it"
        ),
    )


def curves(sweep: BatchingSweep) -> list[dict[str, Any]]:
    """Per setting: ``{"max_batch_size", "max_queue_delay_ms", "points": [{rate, throughput, p95, saturated}]}``.

    Points are in offered-rate order: the throughput-vs-p95 curve of that setting.
    """
    settings: dict[tuple[int, float], list[BatchingCell]] = {}
    for cell in sweep.cells:
        settings.setdefault((cell.max_batch_size, cell.max_queue_delay_ms), []).append(cell)
    return [
        {
            "max_batch_size": batch,
            "max_queue_delay_ms": delay,
            "points": [
                {
                    "offered_rate_per_s": cell.offered_rate_per_s,
                    "throughput_per_s": cell.throughput_per_s,
                    "p95_ms": cell.p95_ms,
                    "saturated": cell.saturated,
                }
                for cell in sorted(group, key=lambda cell: cell.offered_rate_per_s)
            ],
        }
        for (batch, delay), group in settings.items()
    ]


def artifact_infer(artifact: ModelArtifact, *, seq_len: int, threads: int | None) -> tuple[Infer, str, str]:
    """(``infer(n)``, runtime name, device) for an image classifier or text encoder artifact.

    Inputs for each batch size are built on first use and reused, so only the model runs
    per request batch. ``PreflightError`` for tasks without a batch benchmark (causal LMs
    decode token by token: dynamic batching of whole requests does not describe them).
    """
    from optimizers.runtimes import load_runtime

    if artifact.task == "image-classification":
        from optimizers.benchmark.images import image_input_shape, image_io

        shape = image_input_shape(artifact)

        def build(size: int) -> dict:
            return image_io(size, shape)[0]()
    elif artifact.task == "feature-extraction":
        from optimizers.benchmark.encoder import encoder_io
        from optimizers.runtimes import load_tokenizer

        tokenizer = load_tokenizer(artifact)

        def build(size: int) -> dict:
            return encoder_io(tokenizer, size, seq_len)[0]()
    else:
        raise PreflightError(
            f"a dynamic batching sweep needs an image classifier or a text encoder, not {artifact.task}"
        )
    # Spinning off: the batcher sleeps between batches, and spinning threads would steal its core.
    runtime = load_runtime(artifact, threads=threads, allow_spinning=False)
    inputs: dict[int, dict] = {}

    def infer(size: int) -> object:
        if size not in inputs:
            inputs[size] = build(size)
        return runtime.forward(inputs[size])

    return infer, runtime.name, runtime.device


def sweep_artifact(artifact: ModelArtifact, settings: SweepSettings) -> BatchingSweep:
    """``run_sweep`` over ``artifact``'s runtime in this process (``sweep_isolated`` for timings you report)."""
    infer, runtime, device = artifact_infer(artifact, seq_len=settings.seq_len, threads=settings.threads)
    return run_sweep(infer, settings, model=artifact.name, runtime=runtime, device=device)


def sweep_isolated(artifact: ModelArtifact, settings: SweepSettings, *, timeout_s: float = 3600.0) -> BatchingSweep:
    """``sweep_artifact`` in a fresh interpreter; ``PassError`` with the child's stderr tail if it fails."""
    from optimizers.benchmark.isolated import run_in_child

    request = {"artifact": artifact.model_dump(), "settings": settings.model_dump()}
    result = run_in_child(
        "optimizers.serving.batching", request, what=f"batching sweep of {artifact.name}", timeout_s=timeout_s
    )
    return BatchingSweep.model_validate(result)


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[0]).read_text())
    sweep = sweep_artifact(
        ModelArtifact.model_validate(request["artifact"]), SweepSettings.model_validate(request["settings"])
    )
    Path(argv[1]).write_text(sweep.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
