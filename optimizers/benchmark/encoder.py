"""Benchmark for encoders (feature-extraction): tokenize → model → mean pooling, each timed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from optimizers.artifacts import ModelArtifact
from optimizers.recipe import BenchmarkSettings
from optimizers.report import BenchmarkInfo, LatencyStats

_BENCH_TEXT = (
    "Performance is measured as ratios against the baseline, on the same machine, in the same run, "
    "with each variant timed in its own process because thread pools keep spinning after a run. "
) * 40


def encoder_io(tokenizer, batch_size: int, seq_len: int) -> tuple[Callable[[], dict], Callable[[dict, Any], Any]]:
    """(preprocess, postprocess) for a fixed batch: tokenize to exactly ``seq_len``; mean-pool."""
    from optimizers.evaluation.feature_extraction import mean_pool

    texts = [_BENCH_TEXT] * batch_size

    def preprocess() -> dict:
        encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=seq_len, return_tensors="np")
        return {key: value.astype("int64") for key, value in encoded.items()}

    def postprocess(inputs: dict, hidden: Any) -> Any:
        return mean_pool(hidden, inputs["attention_mask"])

    return preprocess, postprocess


def measure_encoder(
    artifact: ModelArtifact, settings: BenchmarkSettings
) -> tuple[dict[str, LatencyStats], BenchmarkInfo]:
    """Time ``artifact`` in this process at each batch size (feature-extraction encoders)."""
    from optimizers.benchmark.harness import measure_batches
    from optimizers.runtimes import load_runtime, load_tokenizer

    runtime = load_runtime(artifact, threads=settings.threads)
    tokenizer = load_tokenizer(artifact)
    return measure_batches(
        runtime, settings, lambda batch: encoder_io(tokenizer, batch, settings.seq_len), seq_len=settings.seq_len
    )
