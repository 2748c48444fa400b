"""Benchmark for encoders (feature-extraction): tokenize → model → mean pooling, each timed."""

from __future__ import annotations

import resource

from optimizers.artifacts import ModelArtifact
from optimizers.benchmark.hardware import device_name
from optimizers.recipe import BenchmarkSettings
from optimizers.report import BenchmarkInfo, LatencyStats

_BENCH_TEXT = (
    "Performance is measured as ratios against the baseline, on the same machine, in the same run, "
    "with each variant timed in its own process because thread pools keep spinning after a run. "
) * 40


def measure_encoder(
    artifact: ModelArtifact, settings: BenchmarkSettings
) -> tuple[dict[str, LatencyStats], BenchmarkInfo]:
    """Time ``artifact`` in this process at each batch size (feature-extraction encoders)."""
    from optimizers.benchmark.harness import summarize, time_loop
    from optimizers.evaluation.feature_extraction import mean_pool
    from optimizers.runtimes import load_runtime, load_tokenizer

    runtime = load_runtime(artifact, threads=settings.threads)
    tokenizer = load_tokenizer(artifact)
    stats: dict[str, LatencyStats] = {}
    for batch_size in settings.batch_sizes:
        texts = [_BENCH_TEXT] * batch_size

        def preprocess(texts: list[str] = texts) -> dict:
            encoded = tokenizer(
                texts, padding="max_length", truncation=True, max_length=settings.seq_len, return_tensors="np"
            )
            return {key: value.astype("int64") for key, value in encoded.items()}

        timings = time_loop(
            preprocess,
            runtime.forward,
            lambda inputs, hidden: mean_pool(hidden, inputs["attention_mask"]),
            settings,
        )
        stats[str(batch_size)] = summarize(timings, batch_size=batch_size, seq_len=settings.seq_len)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    info = BenchmarkInfo(
        runtime=runtime.name,
        device=device_name(runtime.device),
        threads=runtime.threads(),
        peak_rss_mb=peak_kb / 1024.0,
        isolated_process=True,
    )
    return stats, info
