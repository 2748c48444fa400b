"""zoo:tiny-lm on this CPU: PyTorch FP32 and ONNX Runtime FP32 vs llama.cpp F16 / Q8_0 / Q5_K_M / Q4_K_M, as ratios.

Usage: ``python benchmarks/llm_cpu.py [--rounds 3] [--windows 64] [--threads N]``

Quality: perplexity on the held-out split (sliding windows of 256 tokens),
KL divergence and top-1 agreement against the FP32 baseline, every variant
scored on the same token ids (GGUF through llama.cpp's own logits, ONNX through
ONNX Runtime with the exported KV cache). Speed:
each variant timed in its own process (``measure_isolated``), variants
alternated within each round; prefill of a 512-token prompt and decode of 128
new tokens at batch 1; the table reports medians across rounds with the spread
(max/min − 1) of decode speed. Speedups are against llama.cpp F16, measured in
the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _shared import build_chains  # noqa: E402

from optimizers.benchmark.isolated import measure_isolated  # noqa: E402
from optimizers.evaluation.causal_lm import CausalLMEvaluator  # noqa: E402
from optimizers.recipe import BenchmarkSettings  # noqa: E402

#: (label, chain of (pass, config)) — every chain starts from the FP32 tiny LM.
VARIANTS: list[tuple[str, list[tuple[str, dict]]]] = [
    ("PyTorch FP32", []),
    ("ONNX Runtime FP32", [("onnx_export", {})]),
    ("llama.cpp F16", [("gguf_convert", {"outtype": "f16"})]),
    ("llama.cpp Q8_0", [("gguf_convert", {"outtype": "f16"}), ("gguf_quantize", {"type": "Q8_0"})]),
    ("llama.cpp Q5_K_M", [("gguf_convert", {"outtype": "f16"}), ("gguf_quantize", {"type": "Q5_K_M"})]),
    ("llama.cpp Q4_K_M", [("gguf_convert", {"outtype": "f16"}), ("gguf_quantize", {"type": "Q4_K_M"})]),
]
REFERENCE = "llama.cpp F16"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--windows", type=int, default=64, help="evaluation windows of 256 tokens")
    parser.add_argument("--threads", type=int, default=None, help="default: the machine's cores")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "inferopt" / "bench-llm")
    args = parser.parse_args()

    print("building variants (cached by pass, config and input hash)...", flush=True)
    baseline, artifacts = build_chains("zoo:tiny-lm", VARIANTS, args.work / "variants", args.work / "cache")

    print("evaluating on the held-out split of the tiny-LM corpus...", flush=True)
    evaluator = CausalLMEvaluator(None, max_samples=args.windows)
    metrics = {label: evaluator.evaluate(artifact) for label, artifact in artifacts.items()}

    settings = BenchmarkSettings(batch_sizes=[1], warmup=2, min_iterations=5, min_seconds=3.0, threads=args.threads)
    prefill: dict[str, list[float]] = {label: [] for label in artifacts}
    decode: dict[str, list[float]] = {label: [] for label in artifacts}
    device, threads = "", {}
    for round_number in range(args.rounds):
        order = list(artifacts) if round_number % 2 == 0 else list(reversed(artifacts))
        for label in order:
            print(f"round {round_number + 1}/{args.rounds}: timing {label} in its own process", flush=True)
            measured = measure_isolated(artifacts[label], settings)
            device = measured.info.device
            threads[label] = measured.info.threads
            prefill[label].append(measured.generation.prefill_tokens_per_s)
            decode[label].append(measured.generation.decode_tokens_per_s)

    base_ppl = metrics[VARIANTS[0][0]]["perplexity"]
    reference_decode = statistics.median(decode[REFERENCE])
    print(f"\nzoo:tiny-lm ({baseline.size_bytes / 1e6:.1f} MB FP32), {device}; {args.rounds} rounds")
    print(
        f"threads: PyTorch {threads[VARIANTS[0][0]]}, ONNX Runtime {threads['ONNX Runtime FP32']}, "
        f"llama.cpp {threads[REFERENCE]}"
    )
    print(f"quality on {int(metrics[REFERENCE]['eval_tokens'])} held-out tokens; speed at batch 1, 512-token prompt,")
    print("128 new tokens; tokens/s are medians over rounds; spread = max/min − 1 of decode across rounds\n")
    print(
        "| variant | size MB | perplexity | Δppl % | KLD | KLD p99 | top-1 agreement | prefill tok/s "
        "| decode tok/s | spread | decode vs F16 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, artifact in artifacts.items():
        values = metrics[label]
        rate = statistics.median(decode[label])
        spread = max(decode[label]) / min(decode[label]) - 1
        print(
            f"| {label} | {artifact.size_bytes / 1e6:.1f} | {values['perplexity']:.2f} | "
            f"{(values['perplexity'] / base_ppl - 1) * 100:+.2f} | {values['kl_divergence']:.5f} | "
            f"{values['kl_divergence_p99']:.4f} | {values['top1_agreement']:.3f} | "
            f"{statistics.median(prefill[label]):.0f} | {rate:.0f} | {spread:.0%} | "
            f"{rate / reference_decode:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
