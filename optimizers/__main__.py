"""Command line: ``python -m optimizers run RECIPE.yaml --out DIR``, ``passes``, ``search`` and ``zoo build``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from optimizers.errors import InferOptError
from optimizers.zoo import BUILT_MODELS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m optimizers", description="InferOpt optimization library")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a recipe and write DIR/report.json")
    run.add_argument("recipe", type=Path, help="recipe YAML file")
    run.add_argument("--out", type=Path, required=True, help="output folder (variants and report.json)")
    run.add_argument("--quick", action="store_true", help="short benchmark (smoke tests; numbers are rough)")
    run.add_argument("--cache", type=Path, default=None, help="pass output cache folder")
    commands.add_parser("passes", help="list the registered passes as JSON")
    search = commands.add_parser("search", help="try combinations of techniques within a time budget")
    search.add_argument("space", type=Path, help="search space YAML (model, axes, budget_s)")
    search.add_argument("--out", type=Path, required=True, help="output folder (candidates and search.json)")
    search.add_argument("--quick", action="store_true", help="short benchmark (smoke tests; numbers are rough)")
    zoo = commands.add_parser("zoo", help="build the demo models trained here (zoo:tiny-lm, zoo:digits-cnn, ...)")
    zoo.add_argument("action", choices=["build"], help="train the models if they are not cached yet")
    zoo.add_argument("keys", nargs="*", default=list(BUILT_MODELS), help="which models (default: all of them)")
    args = parser.parse_args(argv)

    if args.command == "zoo":
        from optimizers.zoo import zoo_model_folder

        for key in args.keys:
            folder, _ = zoo_model_folder(
                f"zoo:{key}",
                progress=lambda fraction, message: print(f"[{fraction * 100:5.1f}%] {message}", flush=True),
            )
            print(f"zoo:{key}: {folder}")
        return 0

    if args.command == "search":
        return _search(args)

    if args.command == "passes":
        from optimizers.passes import all_passes

        print(json.dumps([cls.describe() for cls in all_passes()], indent=2))
        return 0

    from optimizers.pipeline import run_recipe
    from optimizers.recipe import Recipe

    try:
        recipe = Recipe.from_file(args.recipe)
        report = run_recipe(
            recipe,
            args.out,
            on_progress=lambda event: print(f"[{event.percent:5.1f}%] {event.stage}: {event.message}", flush=True),
            on_log=lambda message: print(f"         {message}", flush=True),
            quick=args.quick,
            cache_dir=args.cache,
        )
    except InferOptError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    _print_summary(report)
    print(f"report: {args.out / 'report.json'}")
    return 0


def _search(args) -> int:
    from optimizers.search import SearchSpace, run_search

    try:
        report = run_search(
            SearchSpace.from_yaml(args.space.read_text()),
            args.out,
            on_log=lambda message: print(f"  {message}", flush=True),
            quick=args.quick,
        )
    except InferOptError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for index, candidate in enumerate(report.candidates):
        steps = " → ".join(step["pass"] for step in candidate.steps)
        marks = ("★ best " if index == report.best_passing else "") + ("pareto " if candidate.on_pareto_front else "")
        detail = candidate.gate_outcome or candidate.reason
        print(f"{index:>3} {candidate.status:<8} {marks:<13} {steps}  ({detail})")
    print(f"search: {args.out / 'search.json'} ({report.elapsed_s:.0f} s of {report.budget_s:.0f} s budget)")
    return 0


def _print_summary(report) -> None:
    batches = list(report.baseline.benchmark)
    header = f"{'variant':<24}{'size MB':>9}" + "".join(f"{'p50@' + b + ' ms':>12}" for b in batches)
    print(header + "  metrics")
    for variant in report.variants:
        cells = "".join(f"{variant.benchmark[b].p50_ms:>12.2f}" for b in batches if b in variant.benchmark)
        metrics = ", ".join(
            f"{k}={v:.4f}" for k, v in variant.metrics.items() if "_ci_" not in k and k != "eval_samples"
        )
        print(f"{variant.name:<24}{variant.size_bytes / 1e6:>9.1f}{cells}  {metrics}")
    if report.gate:
        print(f"gate: {report.gate.outcome}" + (f" ({'; '.join(report.gate.reasons)})" if report.gate.reasons else ""))


if __name__ == "__main__":
    sys.exit(main())
