"""Time one variant in a fresh Python process and read its result back.

``benchmark_isolated`` is what the pipeline calls; ``main`` is the child's
entry point (``python -m optimizers.benchmark.isolated IN.json OUT.json``).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PassError
from optimizers.recipe import BenchmarkSettings
from optimizers.report import BenchmarkInfo, LatencyStats

_BENCH_TEXT = (
    "Performance is measured as ratios against the baseline, on the same machine, in the same run, "
    "with each variant timed in its own process because thread pools keep spinning after a run. "
) * 40


def benchmark_isolated(
    artifact: ModelArtifact, settings: BenchmarkSettings, *, timeout_s: float = 3600.0
) -> tuple[dict[str, LatencyStats], BenchmarkInfo]:
    """Run ``measure_variant`` for ``artifact`` in a child process; ``PassError`` if it fails."""
    with tempfile.TemporaryDirectory(prefix="inferopt-bench-") as scratch:
        request, result = Path(scratch) / "request.json", Path(scratch) / "result.json"
        request.write_text(json.dumps({"artifact": artifact.model_dump(), "settings": settings.model_dump()}))
        completed = subprocess.run(
            [sys.executable, "-m", "optimizers.benchmark.isolated", str(request), str(result)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
        if completed.returncode != 0 or not result.exists():
            tail = (completed.stderr or completed.stdout)[-2000:]
            raise PassError(f"benchmark of {artifact.name} failed (exit {completed.returncode}): {tail}")
        data = json.loads(result.read_text())
    stats = {key: LatencyStats.model_validate(value) for key, value in data["stats"].items()}
    return stats, BenchmarkInfo.model_validate(data["info"])


def measure_variant(
    artifact: ModelArtifact, settings: BenchmarkSettings
) -> tuple[dict[str, LatencyStats], BenchmarkInfo]:
    """Time ``artifact`` in this process at each batch size (feature-extraction encoders)."""
    from optimizers.benchmark.harness import summarize, time_loop
    from optimizers.evaluation.feature_extraction import mean_pool
    from optimizers.runtimes import load_runtime, load_tokenizer

    if artifact.task != "feature-extraction":
        raise PassError(f"benchmarks for task {artifact.task} are not available yet")
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
        device=_device_name(runtime.device),
        threads=runtime.threads(),
        peak_rss_mb=peak_kb / 1024.0,
        isolated_process=True,
    )
    return stats, info


def _device_name(device: str) -> str:
    """``cpu: <model name>`` so every row names its hardware."""
    if device != "cpu":
        return device
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"cpu: {line.split(':', 1)[1].strip()} ({os.cpu_count()} logical cores)"
    except OSError:
        pass
    return f"cpu ({os.cpu_count()} logical cores)"


def main(argv: list[str]) -> int:
    request_path, result_path = Path(argv[0]), Path(argv[1])
    request = json.loads(request_path.read_text())
    stats, info = measure_variant(
        ModelArtifact.model_validate(request["artifact"]), BenchmarkSettings.model_validate(request["settings"])
    )
    result_path.write_text(
        json.dumps({"stats": {k: v.model_dump() for k, v in stats.items()}, "info": info.model_dump()})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
