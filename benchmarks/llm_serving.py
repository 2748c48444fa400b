"""Serving techniques on this CPU: speculative decoding and the quantized KV cache on zoo:tiny-lm, and the best
dynamic-batching setting under a p95 budget on zoo:digits-cnn, as ratios.

Usage: ``python benchmarks/llm_serving.py [--rounds 3] [--prompts 6] [--max-new-tokens 64] [--budget-ms 20]``

Speculative decoding: each method (draft model zoo:tiny-lm-draft, prompt lookup)
runs in its own process per round (``python -m optimizers.serving.speculative``),
methods alternating order between rounds; inside that process every held-out
prompt is generated greedily by the plain target and by the method, interleaved,
so each speedup is against plain greedy measured in the same process. The table
gives medians over rounds, the spread (max/min − 1) of the speedup, and the
acceptance rate counted inside transformers' assisted-generation loop.

KV cache: ``kv_cache_quantization`` (the default cache and each HQQ bit width,
each in its own process): cache bytes held, peak memory growth, perplexity and
top-1 agreement at the decode steps against the default cache, decode tokens/s.

Dynamic batching: ``sweep_isolated`` (own process) over max batch × max queue
delay × Poisson load on zoo:digits-cnn, then ``recommend_setting`` under the
budget. Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _shared  # noqa: E402, F401  (puts the repository root on sys.path)

from optimizers.benchmark.isolated import run_in_child  # noqa: E402
from optimizers.resolve import resolve_model  # noqa: E402
from optimizers.serving.batching import SweepSettings, recommend_setting, sweep_isolated  # noqa: E402
from optimizers.serving.kv_quant import KVQuantOptions, kv_cache_quantization  # noqa: E402
from optimizers.serving.speculative import SpeculativeOptions, SpeculativeReport, speculative_flags  # noqa: E402

#: (label, the options that leave only that method on)
METHODS = [
    ("draft model (zoo:tiny-lm-draft)", {"draft_model": True, "prompt_lookup": False}),
    ("prompt lookup", {"draft_model": False, "prompt_lookup": True}),
]


def speculative_rounds(target, draft_folder: Path, args) -> dict[str, list[SpeculativeReport]]:
    runs: dict[str, list[SpeculativeReport]] = {label: [] for label, _ in METHODS}
    for round_number in range(args.rounds):
        order = METHODS if round_number % 2 == 0 else list(reversed(METHODS))
        for label, switches in order:
            print(f"round {round_number + 1}/{args.rounds}: {label} in its own process", flush=True)
            options = SpeculativeOptions(prompts=args.prompts, max_new_tokens=args.max_new_tokens, **switches)
            request = {
                "artifact": target.model_dump(mode="json"),
                "options": options.model_dump(),
                "draft_folder": str(draft_folder) if options.draft_model else None,
            }
            result = run_in_child("optimizers.serving.speculative", request, what=label, timeout_s=3600)
            runs[label].append(SpeculativeReport.model_validate(result))
    return runs


def print_speculative(runs: dict[str, list[SpeculativeReport]], args) -> None:
    first = next(iter(runs.values()))[0]
    print(f"\n## Speculative decoding: zoo:tiny-lm, {first.prompt_source}, {args.max_new_tokens} new tokens, greedy")
    print(
        f"{first.device}, {first.threads} threads; {args.rounds} rounds, medians; spread = max/min − 1 of the speedup\n"
    )
    print("| method | acceptance | proposed / accepted | target passes / tokens | plain tok/s | method tok/s "
          "| speedup | spread | identical to greedy | flags |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, reports in runs.items():
        methods = [report.methods[0] for report in reports]
        speedups = [method.speedup for method in methods]
        last = methods[-1]
        identical = all(method.identical_outputs for method in methods)
        acceptance = statistics.median(m.acceptance_rate for m in methods)
        # Flags from the medians shown in the row, not from one round's figures.
        flags = speculative_flags(acceptance, statistics.median(speedups))
        print(
            f"| {label} | {acceptance:.0%} | "
            f"{last.proposed_tokens} / {last.accepted_tokens} | {last.target_forward_passes} / {last.new_tokens} | "
            f"{statistics.median(r.baseline_tokens_per_s for r in reports):.0f} | "
            f"{statistics.median(m.tokens_per_s for m in methods):.0f} | {statistics.median(speedups):.2f}x | "
            f"{max(speedups) / min(speedups) - 1:.0%} | {'yes' if identical else 'NO'} | "
            f"{'; '.join(flags) or '—'} |"
        )


def print_kv_quant(report) -> None:
    print(f"\n## Quantized KV cache: zoo:tiny-lm, {report.backend} (groups of {report.q_group_size}, residual "
          f"{report.residual_length}), {report.windows} held-out windows × {report.decode_tokens} teacher-forced "
          "decode steps per context")  # fmt: skip
    print(f"peak = resident-memory growth per context ({report.peak_method}); Δppl and top-1 vs the default cache\n")
    print("| cache | context | cache KB | vs default | peak MB | perplexity | Δppl % | top-1 agreement "
          "| decode tok/s | decode vs default |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    default = {point.context_len: point for point in report.variants[0].points}
    for variant in report.variants:
        if variant.error:
            print(f"| {variant.label} | — | not measured: {variant.error} |||||||")
        for point in variant.points:
            base = default[point.context_len]
            print(
                f"| {variant.label} | {point.context_len} | {point.cache_bytes / 1024:.0f} | "
                f"{point.memory_ratio:.3f} | "
                f"{point.peak_memory_bytes / 1e6:.1f} | {point.perplexity:.2f} | "
                f"{(point.perplexity / base.perplexity - 1) * 100:+.2f} | {point.top1_agreement:.3f} | "
                f"{point.decode_tokens_per_s:.0f} | {point.decode_tokens_per_s / base.decode_tokens_per_s:.2f}x |"
            )


def print_batching(sweep, pick, budget_ms: float) -> None:
    print(
        f"\n## Dynamic batching: zoo:digits-cnn ({sweep.runtime} on {sweep.device}), {len(sweep.cells)} cells, "
        f"{sweep.settings.requests_per_cell} Poisson requests each, batch-1 latency {sweep.batch1_latency_ms:.2f} ms\n"
    )
    batch1 = [c for c in sweep.cells if c.max_batch_size == 1 and not c.saturated and c.p95_ms <= budget_ms]
    best1 = max(batch1, key=lambda cell: cell.throughput_per_s, default=None)
    print("| setting | max batch | max delay ms | offered /s | throughput /s | p95 ms | vs best batch-1 |")
    print("|---|---|---|---|---|---|---|")
    if best1 is not None:
        print(
            f"| best batch-1 within {budget_ms:g} ms | 1 | {best1.max_queue_delay_ms:g} | "
            f"{best1.offered_rate_per_s:.0f} | {best1.throughput_per_s:.0f} | {best1.p95_ms:.2f} | 1.00x |"
        )
    if pick is None:
        print(f"| recommendation | — | — | — | — | — | none within {budget_ms:g} ms |")
    else:
        ratio = f"{pick.throughput_per_s / best1.throughput_per_s:.2f}x" if best1 else "—"
        print(f"| recommended | {pick.max_batch_size} | {pick.max_queue_delay_ms:g} | {pick.offered_rate_per_s:.0f} | "
              f"{pick.throughput_per_s:.0f} | {pick.p95_ms:.2f} | {ratio} |")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--kv-windows", type=int, default=4)
    parser.add_argument("--budget-ms", type=float, default=20.0, help="p95 budget of the batching recommendation")
    parser.add_argument("--requests", type=int, default=200, help="Poisson requests per batching cell")
    args = parser.parse_args()

    print("resolving zoo:tiny-lm and zoo:tiny-lm-draft (trained on first use)...", flush=True)
    target = resolve_model("zoo:tiny-lm")
    draft_folder = resolve_model("zoo:tiny-lm-draft").folder
    runs = speculative_rounds(target, draft_folder, args)
    print_speculative(runs, args)  # each table as soon as it is measured: a long run still shows its first parts

    print("\nmeasuring the KV cache: default, hqq int4, hqq int8 (each in its own process)...", flush=True)
    kv_options = KVQuantOptions(nbits=[4, 8], context_lens=[128, 512], decode_tokens=32, windows=args.kv_windows)
    kv_report = kv_cache_quantization(target, kv_options, on_log=print)
    print_kv_quant(kv_report)

    print("\ndynamic batching sweep on zoo:digits-cnn (own process)...", flush=True)
    settings = SweepSettings(
        max_batch_sizes=[1, 4, 8, 16], max_queue_delays_ms=[0, 2, 5], rate_factors=[0.5, 1, 2, 4, 8],
        requests_per_cell=args.requests,
    )  # fmt: skip
    sweep = sweep_isolated(resolve_model("zoo:digits-cnn"), settings)
    pick = recommend_setting(sweep.cells, args.budget_ms)
    print_batching(sweep, pick, args.budget_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
