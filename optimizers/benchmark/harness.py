"""Timing loop and statistics (pure functions plus one loop; no runtime imports)."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from optimizers.recipe import BenchmarkSettings
from optimizers.report import BenchmarkInfo, LatencyStats

STABILITY_WINDOWS = 3
STABILITY_TOLERANCE = 0.10


@dataclass
class Timings:
    """Per-iteration seconds for the model call and for pre/post-processing."""

    model: list[float] = field(default_factory=list)
    preprocess: list[float] = field(default_factory=list)
    postprocess: list[float] = field(default_factory=list)


def time_loop(
    preprocess: Callable[[], object],
    model: Callable[[object], object],
    postprocess: Callable[[object, object], object],
    settings: BenchmarkSettings,
) -> Timings:
    """Warm up, then iterate until both ``min_iterations`` and ``min_seconds`` are reached.

    Each phase is timed on its own with ``perf_counter`` so tokenization and
    pooling never hide inside the model's latency.
    """
    for _ in range(settings.warmup):
        inputs = preprocess()
        postprocess(inputs, model(inputs))
    timings = Timings()
    started = time.perf_counter()
    while len(timings.model) < settings.min_iterations or time.perf_counter() - started < settings.min_seconds:
        t0 = time.perf_counter()
        inputs = preprocess()
        t1 = time.perf_counter()
        outputs = model(inputs)
        t2 = time.perf_counter()
        postprocess(inputs, outputs)
        t3 = time.perf_counter()
        timings.preprocess.append(t1 - t0)
        timings.model.append(t2 - t1)
        timings.postprocess.append(t3 - t2)
    return timings


def window_spread(latencies: list[float], windows: int = STABILITY_WINDOWS) -> float:
    """Relative spread (max/min − 1) of the medians of consecutive windows."""
    if len(latencies) < windows * 2:
        return 0.0
    medians = [float(np.median(chunk)) for chunk in np.array_split(np.asarray(latencies), windows)]
    return max(medians) / max(min(medians), 1e-12) - 1.0


def summarize(timings: Timings, *, batch_size: int, seq_len: int) -> LatencyStats:
    """Percentiles in milliseconds; throughput counts samples per second of model time."""
    model_ms = np.asarray(timings.model) * 1000.0
    spread = window_spread(timings.model)
    total_seconds = float(np.sum(timings.model))
    return LatencyStats(
        batch_size=batch_size,
        seq_len=seq_len,
        iterations=len(model_ms),
        seconds=total_seconds,
        p50_ms=float(np.percentile(model_ms, 50)),
        p90_ms=float(np.percentile(model_ms, 90)),
        p95_ms=float(np.percentile(model_ms, 95)),
        p99_ms=float(np.percentile(model_ms, 99)),
        mean_ms=float(np.mean(model_ms)),
        stdev_ms=float(statistics.pstdev(model_ms.tolist())) if len(model_ms) > 1 else 0.0,
        throughput_per_s=batch_size * len(model_ms) / max(total_seconds, 1e-12),
        stable=spread <= STABILITY_TOLERANCE,
        window_spread=spread,
        preprocess_p50_ms=float(np.percentile(np.asarray(timings.preprocess) * 1000.0, 50)),
        postprocess_p50_ms=float(np.percentile(np.asarray(timings.postprocess) * 1000.0, 50)),
    )


def measure_batches(
    runtime, settings: BenchmarkSettings, io_for: Callable[[int], tuple[Callable, Callable]], *, seq_len: int
) -> tuple[dict[str, LatencyStats], BenchmarkInfo]:
    """Time ``runtime.forward`` at each of ``settings.batch_sizes`` in this process.

    ``io_for(batch_size)`` gives the (preprocess, postprocess) pair for that batch; ``seq_len``
    is recorded in each row (0 where inputs have no sequence axis). The info names the runtime,
    its device and threads, and this process's peak RSS (the caller runs in its own process).
    """
    from optimizers.benchmark.hardware import device_name

    stats: dict[str, LatencyStats] = {}
    for batch_size in settings.batch_sizes:
        preprocess, postprocess = io_for(batch_size)
        timings = time_loop(preprocess, runtime.forward, postprocess, settings)
        stats[str(batch_size)] = summarize(timings, batch_size=batch_size, seq_len=seq_len)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    info = BenchmarkInfo(
        runtime=runtime.name,
        device=device_name(runtime.device),
        threads=runtime.threads(),
        peak_rss_mb=peak_kb / 1024.0,
        isolated_process=True,
    )
    return stats, info
