"""Recipe search: try combinations of techniques within a time budget, keep every candidate.

A search space is a model plus *axes*; each axis lists options, an option is
``none`` or one or more steps. Every combination (one option per axis, steps
concatenated in axis order) is a candidate recipe. Candidates whose format
chain is impossible are listed as skipped with the reason; the rest run
cheapest first (fewest steps, then axis order), sharing the baseline's
evaluation and benchmark and the pass cache (a shared prefix such as
``onnx_export`` is built once). When the budget is spent, the remaining
candidates are listed as not run. The result marks the Pareto set (latency,
size, quality) and the best candidate that passes the gate; near-misses
(``needs_approval``) stay available for a human decision.

Space file (YAML)::

    model: zoo:minilm
    budget_s: 900
    axes:
      - [none, {pass: torch_quantize_dynamic}]
      - [none, {pass: onnx_export}]
      - [none, {pass: ort_quantize_dynamic, per_channel: true}, {pass: ort_quantize_dynamic, per_channel: false}]
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from optimizers.artifacts import ModelArtifact
from optimizers.errors import InferOptError, RecipeError
from optimizers.evaluation import evaluator_for
from optimizers.gates import default_rules, evaluate_gate
from optimizers.pareto import pareto_front
from optimizers.recipe import BenchmarkSettings, EvaluationSettings, GateRule, Recipe, Step
from optimizers.report import VariantReport
from optimizers.resolve import resolve_model

Status = Literal["done", "skipped", "failed", "not_run"]


class SearchSpace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    task: str | None = None
    dataset: str | None = None
    axes: list[list[Any]]
    budget_s: float = Field(900.0, gt=0, le=7 * 24 * 3600)
    gate: list[GateRule] | None = None
    benchmark: BenchmarkSettings = Field(default_factory=lambda: BenchmarkSettings(batch_sizes=[1]))
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)

    @classmethod
    def from_yaml(cls, text: str) -> SearchSpace:
        try:
            return cls.model_validate(yaml.safe_load(text))
        except (yaml.YAMLError, ValueError) as error:
            raise RecipeError(f"invalid search space: {error}") from None


class Candidate(BaseModel):
    steps: list[dict[str, Any]]
    status: Status
    reason: str = ""
    variant: VariantReport | None = None
    gate_outcome: str | None = None
    on_pareto_front: bool = False


class SearchReport(BaseModel):
    model: str
    task: str
    budget_s: float
    elapsed_s: float
    objectives: dict[str, str]
    baseline: VariantReport
    candidates: list[Candidate]
    best_passing: int | None = None  # index into candidates
    near_misses: list[int] = Field(default_factory=list)


def _option_steps(option: Any) -> list[dict[str, Any]]:
    if option in (None, "none", []):
        return []
    options = option if isinstance(option, list) else [option]
    return [Step.from_raw(step).to_raw() for step in options]


def enumerate_candidates(space: SearchSpace, input_format: str) -> tuple[list[list[dict]], list[Candidate]]:
    """(valid step lists, cheapest first; skipped candidates with reasons), duplicates removed."""
    valid: list[list[dict]] = []
    skipped: list[Candidate] = []
    seen: set[str] = set()
    for combination in itertools.product(*space.axes):
        steps = [step for option in combination for step in _option_steps(option)]
        key = repr(steps)
        if key in seen or not steps:
            continue
        seen.add(key)
        try:
            Recipe.parse({"model": space.model, "steps": steps}, input_format=input_format)
        except RecipeError as error:
            skipped.append(Candidate(steps=steps, status="skipped", reason=str(error)))
            continue
        valid.append(steps)
    valid.sort(key=len)  # stable: fewest steps first, then the order the axes list them
    return valid, skipped


def run_search(
    space: SearchSpace,
    out_dir: Path,
    *,
    on_log: Callable[[str], None] | None = None,
    on_progress: Callable[[Any], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    quick: bool = False,
    cache_dir: Path | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SearchReport:
    """Run the search (see module docstring) and write ``out_dir/search.json``.

    ``on_progress(ProgressEvent)`` gets stage ``baseline``, then ``search`` with percent =
    the larger of candidates tried / to try and time spent / ``budget_s`` (below 100 until done).
    """
    from optimizers.benchmark.isolated import benchmark_isolated
    from optimizers.pipeline import ProgressEvent, _Reporter, _run_step, _variant_report

    def progress(stage: str, fraction: float, message: str) -> None:
        if on_progress is not None:
            on_progress(
                ProgressEvent(stage=stage, percent=round(100 * max(0.0, min(0.99, fraction)), 1), message=message)
            )

    started = clock()
    reporter = _Reporter(None, on_log, should_cancel)
    out_dir = Path(out_dir)
    cache_dir = cache_dir or out_dir / "cache"
    baseline = resolve_model(space.model, task=space.task, work_dir=out_dir / "input")
    valid, skipped = enumerate_candidates(space, baseline.format)
    reporter.log(f"{len(valid)} candidates to try, {len(skipped)} impossible combinations skipped")
    evaluator = evaluator_for(
        baseline.task,
        dataset=space.dataset,
        max_samples=space.evaluation.max_samples,
        batch_size=space.evaluation.batch_size,
    )
    settings = space.benchmark.quick() if quick else space.benchmark
    rules = space.gate if space.gate is not None else default_rules(baseline.task)

    def measure(artifact: ModelArtifact) -> VariantReport:
        metrics = evaluator.evaluate(artifact)
        stats, info = benchmark_isolated(artifact, settings)
        return _variant_report(artifact, metrics, stats, info)

    progress("baseline", 0.0, "evaluating and benchmarking the baseline")
    baseline_report = measure(baseline)
    built: dict[str, ModelArtifact] = {}
    candidates: list[Candidate] = []
    for number, steps in enumerate(valid, start=1):
        elapsed = clock() - started
        if elapsed >= space.budget_s:
            candidates.append(Candidate(steps=steps, status="not_run", reason="time budget spent"))
            continue
        reporter.check_cancelled()
        progress("search", max((number - 1) / len(valid), elapsed / space.budget_s), f"candidate {number}/{len(valid)}")
        reporter.log(f"candidate {number}/{len(valid)}: {' → '.join(step['pass'] for step in steps)}")
        try:
            artifact = baseline
            for index, step in enumerate(steps):
                prefix = repr(steps[: index + 1])
                if prefix not in built:
                    config = {key: value for key, value in step.items() if key != "pass"}
                    folder = out_dir / "candidates" / f"{number}-{index + 1}-{step['pass']}"
                    built[prefix] = _run_step(step["pass"], config, artifact, folder, reporter, 0.0, 0.0, cache_dir)
                artifact = built[prefix]
            variant = measure(artifact)
        except InferOptError as error:
            candidates.append(Candidate(steps=steps, status="failed", reason=str(error)))
            continue
        variant.gate = evaluate_gate(rules, baseline_report, variant)
        candidates.append(Candidate(steps=steps, status="done", variant=variant, gate_outcome=variant.gate.outcome))
    candidates.extend(skipped)

    quality = rules[0].metric if rules else "cosine"
    objectives = {"latency_ms": "min", "size_bytes": "min", quality: "max"}
    first_batch = str(settings.batch_sizes[0])
    done = [index for index, candidate in enumerate(candidates) if candidate.status == "done"]
    points = [_point(candidates[index].variant, first_batch, quality) for index in done]
    for position in pareto_front(points, objectives):
        candidates[done[position]].on_pareto_front = True
    passing = [index for index in done if candidates[index].gate_outcome == "pass"]
    best = min(passing, key=lambda index: points[done.index(index)]["latency_ms"], default=None)
    report = SearchReport(
        model=space.model,
        task=baseline.task,
        budget_s=space.budget_s,
        elapsed_s=clock() - started,
        objectives=objectives,
        baseline=baseline_report,
        candidates=candidates,
        best_passing=best,
        near_misses=[index for index in done if candidates[index].gate_outcome == "needs_approval"],
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "search.json").write_text(report.model_dump_json(indent=2))
    return report


def _point(variant: VariantReport, batch: str, quality: str) -> dict[str, float | None]:
    stats = variant.benchmark.get(batch)
    return {
        "latency_ms": stats.p50_ms if stats else None,
        "size_bytes": float(variant.size_bytes),
        quality: variant.metrics.get(quality),
    }
