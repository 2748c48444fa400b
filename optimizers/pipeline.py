"""Run a recipe: baseline → each pass → evaluation → isolated benchmarks → gate → report.

One runner enforces the pass contract (preflight → run → cleanup, always) and
records lineage; every pass output is cached under ``cache_dir`` keyed by
``hash(pass, config, input sha256)`` so a repeated recipe does not redo work.
Progress is reported as overall percentages with a stage name, and
cancellation is honoured between steps.
"""

from __future__ import annotations

import logging
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from optimizers.artifacts import ModelArtifact, library_versions
from optimizers.errors import CancelledError, PreflightError, RecipeError
from optimizers.evaluation import evaluator_for, supported_tasks
from optimizers.gates import default_rules, evaluate_gate
from optimizers.hashing import sha256_json
from optimizers.passes import get_pass
from optimizers.passes.base import PassContext
from optimizers.profiling import PROFILED_TASKS
from optimizers.recipe import Recipe
from optimizers.report import Report, VariantReport
from optimizers.resolve import resolve_model

logger = logging.getLogger("optimizers.pipeline")

# Share of overall progress per phase: passes, evaluation, benchmarks (the rest is the gate).
_STEPS_SHARE, _EVAL_SHARE, _BENCH_SHARE = 40.0, 20.0, 38.0


@dataclass(frozen=True)
class ProgressEvent:
    stage: str
    percent: float
    message: str


class _Reporter:
    def __init__(self, on_progress, on_log, should_cancel) -> None:
        self._on_progress = on_progress or (lambda event: None)
        self._on_log = on_log or logger.info
        self.should_cancel = should_cancel or (lambda: False)

    def progress(self, stage: str, percent: float, message: str) -> None:
        self._on_progress(ProgressEvent(stage=stage, percent=max(0.0, min(100.0, percent)), message=message))

    def log(self, message: str) -> None:
        self._on_log(message)

    def check_cancelled(self) -> None:
        if self.should_cancel():
            raise CancelledError("cancelled at the user's request")


def run_recipe(
    recipe: Recipe,
    out_dir: Path,
    *,
    on_progress: Callable[[ProgressEvent], None] | None = None,
    on_log: Callable[[str], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    quick: bool = False,
    cache_dir: Path | None = None,
) -> Report:
    """Run ``recipe`` into ``out_dir`` and return (and write) its report.

    Raises ``RecipeError``/``PreflightError``/``PassError`` for problems users
    can fix and ``CancelledError`` when ``should_cancel()`` turned true.
    """
    started = time.perf_counter()
    reporter = _Reporter(on_progress, on_log, should_cancel)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    reporter.progress("prepare", 0.0, f"resolving {recipe.model}")
    baseline = resolve_model(
        recipe.model,
        task=recipe.task,
        tokenizer=recipe.tokenizer,
        work_dir=out_dir / "input",
        progress=lambda fraction, message: reporter.progress(
            "build demo model", fraction, f"building {recipe.model}: {message}"
        ),
    )
    if baseline.task not in supported_tasks():
        raise RecipeError(f"task {baseline.task} cannot be evaluated yet; supported: {', '.join(supported_tasks())}")
    recipe.check_steps(baseline.format)
    reporter.log(f"baseline {baseline.name}: {baseline.format}, {baseline.task}, sha256 {baseline.sha256[:12]}")

    profile = None
    if recipe.profile and baseline.task not in PROFILED_TASKS:
        reporter.log(f"profile skipped: profiling for task {baseline.task} is not available yet")
    elif recipe.profile:
        reporter.check_cancelled()
        reporter.progress("profile", 1.0, f"profiling {baseline.name} in its own process (where does the time go?)")
        phase = time.perf_counter()
        from optimizers.benchmark.isolated import profile_isolated

        profile = profile_isolated(
            baseline, batch_size=recipe.benchmark.batch_sizes[0], seq_len=recipe.benchmark.seq_len
        )
        timings["profile_s"] = time.perf_counter() - phase
        shares = ", ".join(f"{name} {share:.0%}" for name, share in profile.shares.items())
        top = ", ".join(f"{op.op} {op.share:.0%}" for op in profile.top_ops[:3])
        reporter.log(f"profile: {shares}; top operators: {top}")

    variants = [baseline]
    phase = time.perf_counter()
    for index, step in enumerate(recipe.steps, start=1):
        reporter.check_cancelled()
        base_percent = _STEPS_SHARE * (index - 1) / len(recipe.steps)
        reporter.progress(f"step {index}: {step.pass_name}", base_percent, f"running {step.pass_name}")
        variants.append(
            _run_step(
                step.pass_name,
                step.config,
                variants[-1],
                out_dir / "variants" / f"{index}-{step.pass_name}",
                reporter,
                base_percent,
                _STEPS_SHARE / len(recipe.steps),
                cache_dir,
            )
        )
    timings["passes_s"] = time.perf_counter() - phase

    reporter.check_cancelled()
    phase = time.perf_counter()
    metrics, generations = _evaluate(recipe, variants, reporter)
    timings["evaluation_s"] = time.perf_counter() - phase

    phase = time.perf_counter()
    settings = recipe.benchmark.quick() if quick else recipe.benchmark
    reports = []
    for number, (artifact, variant_metrics) in enumerate(zip(variants, metrics, strict=True)):
        reporter.check_cancelled()
        percent = _STEPS_SHARE + _EVAL_SHARE + _BENCH_SHARE * number / len(variants)
        reporter.progress("benchmark", percent, f"timing {artifact.name} in its own process")
        from optimizers.benchmark.isolated import measure_isolated

        measured = measure_isolated(artifact, settings)
        report_row = _variant_report(artifact, variant_metrics, measured.stats, measured.info)
        report_row.generation = measured.generation
        report_row.generations = generations[number]
        if measured.notes:  # e.g. batch sizes outside a TensorRT engine's optimization profile
            report_row.details["notes"] = [*report_row.details.get("notes", []), *measured.notes]
        reports.append(report_row)
    runtime_variants = []
    if settings.variants:
        reporter.check_cancelled()
        percent = _STEPS_SHARE + _EVAL_SHARE + _BENCH_SHARE * len(variants) / (len(variants) + 1)
        reporter.progress("benchmark", percent, f"timing runtime variants of {baseline.name}")
        from optimizers.benchmark.variants import measure_runtime_variants

        runtime_variants = measure_runtime_variants(baseline, settings, log=reporter.log)
    timings["benchmark_s"] = time.perf_counter() - phase

    for artifact, variant in zip(variants[1:], reports[1:], strict=True):
        # Default rules may depend on the variant's precision (causal LMs: 8-bit vs 4-bit perplexity bound).
        rules = recipe.gate if recipe.gate is not None else default_rules(baseline.task, artifact.metadata)
        variant.gate = evaluate_gate(rules, reports[0], variant)
    gate = reports[-1].gate if len(reports) > 1 else None
    timings["total_s"] = time.perf_counter() - started
    report = Report(
        model=recipe.model,
        task=baseline.task,
        recipe=recipe.to_raw(),
        variants=reports,
        gate=gate,
        profile=profile.model_dump() if profile else None,
        environment=_environment(settings.model_dump(), quick),
        runtime_variants=runtime_variants,
        timings=timings,
    )
    (out_dir / "report.json").write_text(report.model_dump_json(indent=2))
    outcome = gate.outcome if gate else "no candidate"
    reporter.progress("done", 100.0, f"finished: gate {outcome}")
    return report


def _run_step(name, raw_config, source, work_dir, reporter, base_percent, share, cache_dir) -> ModelArtifact:
    """Preflight → run → cleanup (always) for one pass, with the output cache."""
    technique = get_pass(name)
    config = technique.parse_config(raw_config)
    technique.preflight(source, config)
    key = sha256_json({"pass": name, "config": config.model_dump(), "input": source.sha256})
    cached = _from_cache(cache_dir, key, work_dir, source) if cache_dir else None
    if cached is not None:
        reporter.log(f"{name}: reused cached output {cached.sha256[:12]} (same pass, config and input)")
        return cached
    if work_dir.exists():
        shutil.rmtree(work_dir)
    ctx = PassContext(
        work_dir=work_dir,
        log=lambda message: reporter.log(f"{name}: {message}"),
        progress=lambda fraction, message: reporter.progress(
            f"step: {name}", base_percent + share * max(0.0, min(1.0, fraction)), message
        ),
        should_cancel=reporter.should_cancel,
    )
    began = time.perf_counter()
    try:
        artifact = technique.run(source, config, ctx)
    finally:
        technique.cleanup(ctx)
    artifact.metadata["pass_seconds"] = round(time.perf_counter() - began, 3)
    reporter.log(f"{name}: done in {artifact.metadata['pass_seconds']:.1f} s, {artifact.size_bytes / 1e6:.1f} MB")
    if cache_dir:
        _to_cache(cache_dir, key, artifact)
    return artifact


def _from_cache(cache_dir: Path, key: str, work_dir: Path, source: ModelArtifact) -> ModelArtifact | None:
    entry = Path(cache_dir) / key
    if not (entry / "artifact.json").is_file():
        return None
    if work_dir.exists():
        shutil.rmtree(work_dir)
    shutil.copytree(entry / "model", work_dir)
    artifact = ModelArtifact.model_validate_json((entry / "artifact.json").read_text())
    return artifact.model_copy(update={"path": str(work_dir), "parent_sha256": source.sha256})


def _to_cache(cache_dir: Path, key: str, artifact: ModelArtifact) -> None:
    entry = Path(cache_dir) / key
    staging = Path(cache_dir) / f".{key}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(artifact.folder, staging / "model")
    (staging / "artifact.json").write_text(artifact.model_dump_json())
    shutil.rmtree(entry, ignore_errors=True)
    staging.rename(entry)  # atomic publish: a reader sees all of it or none


def _evaluate(
    recipe: Recipe, variants: list[ModelArtifact], reporter: _Reporter
) -> tuple[list[dict[str, float]], list[dict[str, str]]]:
    """Metrics of every variant, and its generations where the evaluator makes some (causal LMs)."""
    evaluator = evaluator_for(
        variants[0].task,
        dataset=recipe.dataset,
        max_samples=recipe.evaluation.max_samples,
        batch_size=recipe.evaluation.batch_size,
    )
    reporter.log(f"evaluating on {evaluator.describe()}")
    results: list[dict[str, float]] = []
    generations: list[dict[str, str]] = []
    for number, artifact in enumerate(variants):
        reporter.check_cancelled()
        percent = _STEPS_SHARE + _EVAL_SHARE * number / len(variants)
        reporter.progress("evaluate", percent, f"evaluating {artifact.name}")
        results.append(evaluator.evaluate(artifact))
        generations.append(dict(getattr(evaluator, "last_generations", None) or {}))
    return results, generations


def _variant_report(artifact: ModelArtifact, metrics: dict[str, float], stats, info) -> VariantReport:
    return VariantReport(
        name=artifact.name,
        format=artifact.format,
        path=artifact.path,
        sha256=artifact.sha256,
        size_bytes=artifact.size_bytes,
        produced_by=artifact.produced_by,
        config=artifact.config,
        parent_sha256=artifact.parent_sha256,
        metrics=metrics,
        benchmark=stats,
        benchmark_info=info,
        details=dict(artifact.metadata.get("details") or {}),
    )


def _environment(benchmark_settings: dict, quick: bool) -> dict:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "library_versions": library_versions(),
        "benchmark_settings": benchmark_settings,
        "quick_benchmark": quick,
    }


def check_runnable(recipe: Recipe) -> None:
    """Cheap checks a caller can do before queueing (model resolvable, chain valid)."""
    baseline = resolve_model(recipe.model, task=recipe.task, tokenizer=recipe.tokenizer, work_dir=None)
    recipe.check_steps(baseline.format)
    if baseline.task not in supported_tasks():
        raise PreflightError(f"task {baseline.task} cannot be evaluated yet")


__all__ = ["ProgressEvent", "check_runnable", "run_recipe"]
