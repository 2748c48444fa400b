"""The comparison page's rows: every variant of the chosen jobs with quality, latency, size and cost.

Jobs are compared only when they optimize the same model (their baselines are
the same model, so their variants are alternatives to one another).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from optimizers import cost
from optimizers.gates import LOWER_IS_BETTER
from optimizers.pareto import Direction, pareto_front
from optimizers.report import Report
from webapp.costs.reports import PricedReport, priced_report
from webapp.jobs.models import Artifact, Job

MIB = 1024**2
#: Preferred default quality metric, first present wins.
PREFERRED_METRICS = ("cosine", "accuracy", "f1", "top1_agreement", "recall_at_1", "perplexity", "kl_divergence")
#: Objectives of the four-way front (the table's "all four" column).
FRONTS = ("latency", "size", "cost")


def metric_direction(metric: str) -> Direction:
    return "min" if metric in LOWER_IS_BETTER else "max"


def quality_metrics(reports: list[Report]) -> list[str]:
    """Metric names (no ``_ci_low``/``_ci_high`` companions) found in any variant, in first-seen order."""
    names: dict[str, None] = {}
    for report in reports:
        for variant in report.variants:
            for name in variant.metrics:
                if name.endswith(("_ci_low", "_ci_high")):
                    continue
                names.setdefault(name, None)
    return list(names)


def default_metric(metrics: list[str]) -> str | None:
    return next((m for m in PREFERRED_METRICS if m in metrics), metrics[0] if metrics else None)


@dataclass
class CompareRow:
    job: Job
    variant: str
    format: str
    is_baseline: bool
    quality: float | None
    latency_ms: float | None
    size_bytes: int
    cost: cost.CostFigure | None
    gate: str | None
    hardware: cost.HardwareCheck
    artifact: Artifact | None = None
    pareto: dict[str, bool] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"#{self.job.pk} {self.variant}"

    @property
    def size_mib(self) -> float:
        return self.size_bytes / MIB

    @property
    def on_any_front(self) -> bool:
        return any(self.pareto.values())


def reports_of(jobs: list[Job]) -> list[tuple[Job, PricedReport]]:
    """The jobs that have a readable report (a recipe run's or a search's), with it."""
    pairs = []
    for job in jobs:
        priced = priced_report(job.report)
        if priced is not None:
            pairs.append((job, priced))
    return pairs


def build_rows(
    pairs: list[tuple[Job, PricedReport]], *, metric: str | None, batch_size: int, instance: cost.InstanceType
) -> list[CompareRow]:
    """One row per variant of every job, in job then variant order, with Pareto flags set."""
    rows: list[CompareRow] = []
    for job, priced_job in pairs:
        report = priced_job.report
        artifacts = {artifact.order: artifact for artifact in job.artifacts.all()}
        breakdown = cost.cost_breakdown(report, instance, batch_size=batch_size)
        for index, (variant, priced) in enumerate(zip(report.variants, breakdown.variants, strict=True)):
            order = priced_job.artifact_orders[index]
            stats = variant.benchmark.get(str(batch_size))
            rows.append(
                CompareRow(
                    job=job,
                    variant=variant.name,
                    format=variant.format,
                    is_baseline=index == 0,
                    quality=variant.metrics.get(metric) if metric else None,
                    latency_ms=stats.p50_ms if stats is not None else None,
                    size_bytes=variant.size_bytes,
                    cost=priced.cost_per_million,
                    gate=variant.gate.outcome if variant.gate else None,
                    hardware=priced.hardware,
                    artifact=artifacts.get(order) if order is not None else None,
                )
            )
    if metric:
        mark_pareto(rows, metric_direction(metric))
    return rows


def mark_pareto(rows: list[CompareRow], direction: Direction) -> None:
    """Set ``row.pareto[<x>]`` for each two-way front (x vs quality) and ``row.pareto["all"]`` (all four)."""
    points = [
        {
            "latency": row.latency_ms,
            "size": float(row.size_bytes),
            "cost": row.cost.value if row.cost else None,
            "quality": row.quality,
        }
        for row in rows
    ]
    for name in FRONTS:
        front = set(pareto_front(points, {name: "min", "quality": direction}))
        for index, row in enumerate(rows):
            row.pareto[name] = index in front
    front = set(pareto_front(points, {"latency": "min", "size": "min", "cost": "min", "quality": direction}))
    for index, row in enumerate(rows):
        row.pareto["all"] = index in front
