"""A search job's page: the candidates table and the latency-vs-quality chart from its stored report.

A search job's ``report`` is ``optimizers.search.SearchReport`` as JSON with ``"kind": "search"``
(``workers/tasks.py``); ``build_search_results`` gives None for any other report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from optimizers.search import SearchReport


def is_search_report(raw: Any) -> bool:
    return isinstance(raw, dict) and raw.get("kind") == "search"


@dataclass
class CandidateRow:
    number: int
    label: str
    steps: list[dict[str, Any]]
    status: str
    reason: str
    gate_outcome: str | None
    p50_ms: float | None
    size_bytes: int | None
    quality: float | None
    on_pareto_front: bool
    is_best: bool
    is_near_miss: bool


@dataclass
class SearchResults:
    report: SearchReport
    quality_metric: str
    batch: str
    baseline_p50_ms: float | None
    baseline_quality: float | None
    rows: list[CandidateRow]
    counts: dict[str, int]
    figure: dict[str, Any] | None


def step_label(steps: list[dict[str, Any]]) -> str:
    parts = []
    for step in steps:
        config = ", ".join(f"{key}={value}" for key, value in step.items() if key != "pass")
        parts.append(f"{step['pass']}({config})" if config else step["pass"])
    return " → ".join(parts)


def build_search_results(raw: Any) -> SearchResults | None:
    if not is_search_report(raw):
        return None
    try:
        report = SearchReport.model_validate({key: value for key, value in raw.items() if key != "kind"})
    except ValidationError:
        return None
    quality = next((key for key in report.objectives if key not in ("latency_ms", "size_bytes")), "cosine")
    batch = next(iter(sorted(report.baseline.benchmark, key=int)), "1")
    rows = []
    for index, candidate in enumerate(report.candidates):
        variant = candidate.variant
        stats = variant.benchmark.get(batch) if variant else None
        rows.append(
            CandidateRow(
                number=index + 1,
                label=step_label(candidate.steps),
                steps=candidate.steps,
                status=candidate.status,
                reason=candidate.reason,
                gate_outcome=candidate.gate_outcome,
                p50_ms=stats.p50_ms if stats else None,
                size_bytes=variant.size_bytes if variant else None,
                quality=variant.metrics.get(quality) if variant else None,
                on_pareto_front=candidate.on_pareto_front,
                is_best=index == report.best_passing,
                is_near_miss=index in report.near_misses,
            )
        )
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    baseline_stats = report.baseline.benchmark.get(batch)
    return SearchResults(
        report=report,
        quality_metric=quality,
        batch=batch,
        baseline_p50_ms=baseline_stats.p50_ms if baseline_stats else None,
        baseline_quality=report.baseline.metrics.get(quality),
        rows=rows,
        counts=counts,
        figure=search_figure(rows, quality, batch, report.objectives.get(quality, "max")),
    )


def search_figure(rows: list[CandidateRow], quality: str, batch: str, direction: str) -> dict[str, Any] | None:
    """Latency vs quality of the candidates that ran, Pareto front highlighted (the comparison page's chart)."""
    from webapp.costs.charts import Point, tradeoff_figure

    points = [Point(f"#{row.number} {row.label}", row.p50_ms, row.quality) for row in rows if row.status == "done"]
    if not any(point.x is not None and point.y is not None for point in points):
        return None
    return tradeoff_figure(
        points,
        title=f"Search candidates: latency vs {quality}",
        x_title=f"p50 ms at batch {batch}",
        y_title=quality,
        y_direction="min" if direction == "min" else "max",
    )
