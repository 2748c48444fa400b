"""Helpers the benchmark scripts share: build pass chains, time each variant in its own process.

Not a test: nothing here asserts a speed. Every variant is timed in a child process
(``benchmark_isolated``) and variants alternate order between rounds, so a noisy shared
machine shows up as spread instead of as a wrong ranking.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from optimizers.artifacts import ModelArtifact  # noqa: E402
from optimizers.benchmark.isolated import benchmark_isolated  # noqa: E402
from optimizers.pipeline import _Reporter, _run_step  # noqa: E402
from optimizers.recipe import BenchmarkSettings  # noqa: E402
from optimizers.resolve import resolve_model  # noqa: E402

#: (label, chain of (pass, config)); an empty chain is the model itself.
Chain = list[tuple[str, dict]]


def build_chains(
    model: str, variants: list[tuple[str, Chain]], work: Path, cache: Path
) -> tuple[ModelArtifact, dict[str, ModelArtifact]]:
    """Run every chain from ``model`` (pass outputs cached by pass, config and input hash)."""
    reporter = _Reporter(None, lambda message: print(f"  {message}", flush=True), None)
    baseline = resolve_model(model)
    artifacts = {}
    for label, chain in variants:
        artifact = baseline
        for index, (name, config) in enumerate(chain):
            folder = work / f"{label.replace(' ', '_').replace('/', '-')}-{index}-{name}"
            artifact = _run_step(name, config, artifact, folder, reporter, 0.0, 0.0, cache)
        artifacts[label] = artifact
    return baseline, artifacts


@dataclass
class Timings:
    """Per variant and batch size: p50/p95 (ms) and throughput of every round."""

    p50: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    p95: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    throughput: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    device: str = ""

    def median_p50(self, label: str, batch: str) -> float:
        return statistics.median(self.p50[label][batch])

    def spread(self, label: str, batch: str) -> float:
        rounds = self.p50[label][batch]
        return max(rounds) / min(rounds) - 1


def time_rounds(artifacts: dict[str, ModelArtifact], settings: BenchmarkSettings, rounds: int) -> Timings:
    """Time every artifact ``rounds`` times, each in its own process, alternating the order."""
    timings = Timings()
    for label in artifacts:
        timings.p50[label], timings.p95[label], timings.throughput[label] = {}, {}, {}
    for round_number in range(rounds):
        order = list(artifacts) if round_number % 2 == 0 else list(reversed(artifacts))
        for label in order:
            print(f"round {round_number + 1}/{rounds}: timing {label} in its own process", flush=True)
            stats, info = benchmark_isolated(artifacts[label], settings)
            timings.device = info.device
            for batch, row in stats.items():
                timings.p50[label].setdefault(batch, []).append(row.p50_ms)
                timings.p95[label].setdefault(batch, []).append(row.p95_ms)
                timings.throughput[label].setdefault(batch, []).append(row.throughput_per_s)
    return timings
