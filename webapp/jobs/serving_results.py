"""A serving job's page: recommendation, throughput-vs-p95 chart, KV-cache table, rooflines, Triton config,
and for causal LMs the static-vs-continuous batching estimate with the measured points it rests on.

A serving job's ``report`` is ``optimizers.serving.analysis.ServingReport`` as JSON with
``"kind": "serving"`` (``workers/tasks.py``, without the worker-local ``triton_zip`` path; the
zip itself is the job's ``triton`` artifact). ``build_serving_results`` gives None for any
other report, and for a serving report that does not validate (the page then offers the JSON).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from optimizers.serving.analysis import SERVING_MODE, ServingReport, serving_figure
from optimizers.serving.batching import BatchingRecommendation
from optimizers.serving.continuous import ContinuousBatchingReport, PolicyResult, StepPoint, continuous_figure
from optimizers.serving.kv_cache import BandwidthProbe, DecodeRoofline

#: Element id of the throughput-vs-p95 chart (its JSON sits in ``<script id="chart-serving-data">``).
SERVING_CHART_ID = "chart-serving"
#: Element id of the static-vs-continuous batching chart (causal LMs).
CONTINUOUS_CHART_ID = "chart-continuous"


def is_serving_report(raw: Any) -> bool:
    return isinstance(raw, dict) and raw.get("kind") == SERVING_MODE


@dataclass
class KVVariantRow:
    """One attention variant (MHA, the model's GQA, MQA): bytes per token and the cache at each context length."""

    kind: str
    num_kv_heads: int
    dtype: str
    bytes_per_token: float
    #: (context length, cache bytes for the whole batch), in ``ServingResults.context_lens`` order.
    cache: list[tuple[int, float]]
    ratio_to_mha: float
    #: The model's own configuration (the other rows are what-ifs).
    actual: bool


@dataclass
class ContinuousSection:
    """The continuous-batching estimate: its rows, chart, and the measured grid pivoted (batch × context)."""

    report: ContinuousBatchingReport
    #: Static then continuous at each offered rate, then both with every request at t = 0.
    table: list[PolicyResult]
    figure: dict[str, Any]
    chart_id: str
    context_lens: list[int]
    #: (batch size, the points at each of ``context_lens``; None where not measured).
    step_grid: list[tuple[int, list[StepPoint | None]]]


def continuous_section(report: ContinuousBatchingReport | None) -> ContinuousSection | None:
    if report is None:
        return None
    contexts = sorted({point.context_len for point in report.measurement.steps})
    batches = sorted({point.batch_size for point in report.measurement.steps})
    points = {(point.batch_size, point.context_len): point for point in report.measurement.steps}
    return ContinuousSection(
        report=report,
        table=[*report.results, *report.offline],
        figure=continuous_figure(report),
        chart_id=CONTINUOUS_CHART_ID,
        context_lens=contexts,
        step_grid=[(batch, [points.get((batch, context)) for context in contexts]) for batch in batches],
    )


@dataclass
class ServingResults:
    report: ServingReport
    recommendation: BatchingRecommendation | None
    #: Plotly figure of the sweep (None for causal LMs: nothing was swept).
    figure: dict[str, Any] | None
    chart_id: str
    #: Cells of the sweep, and how many stayed within the budget without saturating.
    cells: int
    cells_within_budget: int
    context_lens: list[int] = field(default_factory=list)
    kv_batch_size: int | None = None
    kv_rows: list[KVVariantRow] = field(default_factory=list)
    bandwidth: BandwidthProbe | None = None
    rooflines: list[DecodeRoofline] = field(default_factory=list)
    continuous: ContinuousSection | None = None

    @property
    def continuous_figure(self) -> dict[str, Any] | None:
        return self.continuous.figure if self.continuous else None

    @property
    def swept(self) -> bool:
        return self.report.sweep is not None

    @property
    def has_kv_cache(self) -> bool:
        return bool(self.kv_rows)


def kv_variant_rows(report: ServingReport) -> tuple[list[int], list[KVVariantRow]]:
    """The calculator's flat rows (variant × context length) pivoted to one row per variant."""
    context_lens = list(dict.fromkeys(row.context_len for row in report.kv_cache))
    variants: dict[tuple[str, int], KVVariantRow] = {}
    sizes: dict[tuple[str, int], dict[int, float]] = {}
    for row in report.kv_cache:
        key = (row.kind, row.num_kv_heads)
        if key not in variants:
            variants[key] = KVVariantRow(
                kind=row.kind,
                num_kv_heads=row.num_kv_heads,
                dtype=row.dtype,
                bytes_per_token=row.bytes_per_token,
                cache=[],
                ratio_to_mha=row.ratio_to_mha,
                actual=row.actual,
            )
        sizes.setdefault(key, {})[row.context_len] = row.cache_bytes
    for key, variant in variants.items():
        variant.cache = [(context, sizes[key].get(context, 0.0)) for context in context_lens]
    return context_lens, list(variants.values())


def build_serving_results(raw: Any) -> ServingResults | None:
    """The serving section's content from a stored report; None when ``raw`` is not a valid serving report."""
    if not is_serving_report(raw):
        return None
    try:
        report = ServingReport.model_validate(raw)
    except ValidationError:
        return None
    cells = report.sweep.cells if report.sweep else []
    within = [cell for cell in cells if not cell.saturated and cell.p95_ms <= report.p95_budget_ms]
    context_lens, kv_rows = kv_variant_rows(report)
    return ServingResults(
        report=report,
        recommendation=report.recommendation,
        figure=serving_figure(report),
        chart_id=SERVING_CHART_ID,
        cells=len(cells),
        cells_within_budget=len(within),
        context_lens=context_lens,
        kv_batch_size=report.kv_cache[0].batch_size if report.kv_cache else None,
        kv_rows=kv_rows,
        bandwidth=report.bandwidth,
        rooflines=list(report.rooflines),
        continuous=continuous_section(report.continuous),
    )
