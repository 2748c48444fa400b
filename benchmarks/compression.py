"""Compression techniques on this CPU, as ratios: zoo:minilm and zoo:digits-cnn.

Usage: ``python benchmarks/compression.py [--models minilm digits-cnn] [--rounds 3] [--min-seconds 3]``

One table per model: variant, quality (cosine to FP32 for MiniLM, eval accuracy for the
digits CNN), size MB, p50 ms per batch size and speedup vs FP32 eager, each variant timed
in its own process (``benchmarks/_shared.py``) and the median of the rounds reported with
its spread. Quality comes from the product's own evaluators (the held-out split), so the
numbers are the ones a job would show.

Hugging Face Optimum is not in the product's environment (it pins an older transformers);
"ORT INT8 dynamic per-channel" is the product's export + ``ort_quantize_dynamic``, which
LIBRARIES.md measured ~1.3× slower than Optimum's export on this machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _shared import Chain, build_chains, time_rounds  # noqa: E402

from optimizers.evaluation import evaluator_for  # noqa: E402
from optimizers.recipe import BenchmarkSettings  # noqa: E402

EXPORT = ("onnx_export", {})
MINILM: list[tuple[str, Chain]] = [
    ("eager FP32", []),
    ("ORT INT8 dynamic per-channel", [EXPORT, ("ort_quantize_dynamic", {"per_channel": True})]),
    ("ORT INT8 static (QDQ)", [EXPORT, ("ort_quantize_static", {})]),
    ("OpenVINO FP32", [EXPORT, ("openvino_quantize", {"precision": "fp32"})]),
    ("OpenVINO+NNCF INT8", [EXPORT, ("openvino_quantize", {"precision": "int8"})]),
    ("distilled 3-layer, eager", [("distill", {"student_layers": 3})]),
    ("distilled 3-layer, OpenVINO INT8", [("distill", {"student_layers": 3}), EXPORT, ("openvino_quantize", {})]),
]
DIGITS: list[tuple[str, Chain]] = [
    ("eager FP32", []),
    ("ORT FP32", [EXPORT]),
    ("ORT INT8 static (QDQ)", [EXPORT, ("ort_quantize_static", {})]),
    ("QAT INT8 (ONNX)", [("qat", {})]),
    ("pruned 50% unstructured", [("prune_unstructured", {"sparsity": 0.5})]),
    ("pruned 50% channels, ORT", [("prune_structured", {"units": "channels", "target": 0.5}), EXPORT]),
    ("distilled student, ORT", [("distill", {}), EXPORT]),
    ("OpenVINO+NNCF INT8", [EXPORT, ("openvino_quantize", {})]),
]
MODELS = {"minilm": ("zoo:minilm", MINILM, "cosine", 128), "digits-cnn": ("zoo:digits-cnn", DIGITS, "accuracy", 0)}


def run_model(key: str, args: argparse.Namespace) -> None:
    reference, variants, metric, seq_len = MODELS[key]
    print(f"\n== {reference}: building variants (cached by pass, config and input hash)...", flush=True)
    baseline, artifacts = build_chains(reference, variants, args.work / key / "variants", args.work / key / "cache")
    evaluator = evaluator_for(baseline.task, dataset=None, max_samples=args.eval_samples, batch_size=16)
    print(f"evaluating on {evaluator.describe()}", flush=True)
    quality = {label: evaluator.evaluate(artifact) for label, artifact in artifacts.items()}  # baseline first

    settings = BenchmarkSettings(batch_sizes=args.batch_sizes, seq_len=seq_len or 128, min_seconds=args.min_seconds)
    timings = time_rounds(artifacts, settings, args.rounds)
    eager = variants[0][0]
    header = " | ".join(f"p50 ms b{b} | vs eager b{b}" for b in args.batch_sizes)
    print(f"\n{reference} on {timings.device}; {args.rounds} rounds, each variant in its own process")
    print(f"| variant | {metric} | size MB | {header} | spread |")
    print("|---|---|---|" + "---|---|" * len(args.batch_sizes) + "---|")
    for label, artifact in artifacts.items():
        cells = []
        for batch in map(str, args.batch_sizes):
            p50 = timings.median_p50(label, batch)
            cells.append(f"{p50:.2f} | {timings.median_p50(eager, batch) / p50:.2f}x")
        spread = max(timings.spread(label, str(batch)) for batch in args.batch_sizes)
        print(
            f"| {label} | {quality[label][metric]:.4f} | {artifact.size_bytes / 1e6:.1f} | "
            f"{' | '.join(cells)} | {spread:.0%} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["digits-cnn", "minilm"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--eval-samples", type=int, default=256)
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "inferopt" / "bench-compression")
    args = parser.parse_args()
    for key in args.models:
        run_model(key, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
