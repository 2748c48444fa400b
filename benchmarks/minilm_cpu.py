"""MiniLM-L6 on this CPU: eager PyTorch vs ONNX Runtime variants, as ratios.

Usage: ``python benchmarks/minilm_cpu.py [--rounds 3] [--min-seconds 5] [--batch-sizes 1 8]``

Each variant is timed in its own process (``benchmark_isolated``), variants are
alternated within each round, and the table reports the median p50 across
rounds with the spread (max/min − 1) so noise on a shared machine is visible.
Speedups are ratios against eager FP32 measured in the same run; "vs best"
compares each variant with the fastest one that passes the default gate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _shared import build_chains, time_rounds  # noqa: E402

from optimizers.evaluation.datasets import pydoc_retrieval  # noqa: E402
from optimizers.evaluation.feature_extraction import embed_dataset, feature_extraction_metrics  # noqa: E402
from optimizers.gates import default_rules, evaluate_gate  # noqa: E402
from optimizers.recipe import BenchmarkSettings  # noqa: E402
from optimizers.report import VariantReport  # noqa: E402
from optimizers.runtimes import load_runtime, load_tokenizer  # noqa: E402

#: (label, chain of (pass, config)) — every chain starts from the FP32 MiniLM.
VARIANTS: list[tuple[str, list[tuple[str, dict]]]] = [
    ("eager FP32 (PyTorch)", []),
    ("eager INT8 dynamic (PyTorch)", [("torch_quantize_dynamic", {})]),
    ("ORT FP32", [("onnx_export", {})]),
    ("ORT FP32 graph-optimized", [("onnx_export", {}), ("ort_optimize", {})]),
    ("ORT INT8 dynamic per-tensor", [("onnx_export", {}), ("ort_quantize_dynamic", {"per_channel": False})]),
    ("ORT INT8 dynamic per-channel", [("onnx_export", {}), ("ort_quantize_dynamic", {"per_channel": True})]),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=5.0)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "inferopt" / "bench-minilm")
    args = parser.parse_args()

    print("building variants (cached by pass, config and input hash)...", flush=True)
    baseline, artifacts = build_chains("zoo:minilm", VARIANTS, args.work / "variants", args.work / "cache")

    print("evaluating on the held-out pydoc retrieval set...", flush=True)
    dataset = pydoc_retrieval("eval")
    tokenizer = load_tokenizer(baseline)
    reference = embed_dataset(load_runtime(baseline, allow_spinning=False), tokenizer, dataset)
    metrics = {
        label: feature_extraction_metrics(
            embed_dataset(load_runtime(artifact, allow_spinning=False), tokenizer, dataset), reference
        )
        for label, artifact in artifacts.items()
    }

    settings = BenchmarkSettings(batch_sizes=args.batch_sizes, seq_len=args.seq_len, min_seconds=args.min_seconds)
    timings = time_rounds(artifacts, settings, args.rounds)
    p50s, p95s, throughputs, device = timings.p50, timings.p95, timings.throughput, timings.device

    rules = default_rules("feature-extraction")
    baseline_label = VARIANTS[0][0]

    def as_report(label: str) -> VariantReport:
        artifact = artifacts[label]
        return VariantReport(
            name=label,
            format=artifact.format,
            path=artifact.path,
            sha256=artifact.sha256,
            size_bytes=artifact.size_bytes,
            metrics=metrics[label],
        )

    outcomes = {label: evaluate_gate(rules, as_report(baseline_label), as_report(label)).outcome for label in artifacts}
    print(f"\nMiniLM-L6, seq {args.seq_len}, {device}; {args.rounds} rounds, each variant in its own process")
    print("p50/p95 in ms (median over rounds); spread = max/min − 1 of p50 across rounds\n")
    for batch in map(str, args.batch_sizes):
        median = {label: statistics.median(p50s[label][batch]) for label in artifacts}
        eager = median[baseline_label]
        acceptable = [label for label in artifacts if outcomes[label] != "fail"]
        best = min(acceptable, key=lambda label: median[label])
        best_pass = min((label for label in artifacts if outcomes[label] == "pass"), key=lambda label: median[label])
        print(f"batch {batch}")
        print("| variant | p50 ms | p95 ms | throughput/s | spread | vs eager | vs best | cosine | recall@1 | gate |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for label in artifacts:
            rounds = p50s[label][batch]
            spread = max(rounds) / min(rounds) - 1
            print(
                f"| {label} | {median[label]:.1f} | {statistics.median(p95s[label][batch]):.1f} | "
                f"{statistics.median(throughputs[label][batch]):.1f} | {spread:.0%} | {eager / median[label]:.2f}x | "
                f"{median[best] / median[label]:.2f}x | {metrics[label]['cosine']:.4f} | "
                f"{metrics[label]['recall_at_1']:.3f} | {outcomes[label]} |"
            )
        print(f"fastest variant that passes the gate outright: {best_pass} ({eager / median[best_pass]:.2f}x eager)")
        ratio = eager / median[best]
        print(f"fastest variant within the gate's thresholds: {best} ({ratio:.2f}x eager, {outcomes[best]})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
