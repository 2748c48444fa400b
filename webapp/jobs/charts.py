"""Plotly figures for a job's results: pure functions from report.json to figure JSON.

Each function takes the report (a ``report.json`` dict or an
``optimizers.report.Report``) and returns a plain JSON-ready dict
``{"data": [...], "layout": {...}}`` that ``Plotly.newPlot`` draws.
"""

from __future__ import annotations

import json
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from optimizers.profiling import PROFILE_STAGES
from optimizers.report import Report

PERCENTILES = (("p50_ms", "p50"), ("p95_ms", "p95"), ("p99_ms", "p99"))
PERCENTILE_COLORS = ("#3559e0", "#f29e4c", "#c62828")
MIB = 1024**2
CHART_IDS = ("chart-latency", "chart-throughput", "chart-size")
_LAYOUT = {
    "template": "plotly_white",
    "margin": {"l": 60, "r": 20, "t": 50, "b": 60},
    "legend": {"orientation": "h", "y": -0.2},
    "height": 380,
}


def _as_report(report: Report | dict[str, Any]) -> Report:
    return report if isinstance(report, Report) else Report.model_validate(report)


def _batch_sizes(report: Report) -> list[int]:
    return sorted({int(batch) for variant in report.variants for batch in variant.benchmark})


def _figure_json(figure: go.Figure) -> dict[str, Any]:
    return json.loads(figure.to_json())


def latency_figure(report: Report | dict[str, Any]) -> dict[str, Any]:
    """Grouped bars per batch size (one panel each): p50/p95/p99 latency of every variant."""
    report = _as_report(report)
    batches = _batch_sizes(report)
    figure = make_subplots(rows=1, cols=max(len(batches), 1), subplot_titles=[f"batch {b}" for b in batches])
    for column, batch in enumerate(batches, start=1):
        measured = [(v.name, v.benchmark[str(batch)]) for v in report.variants if str(batch) in v.benchmark]
        for (key, label), color in zip(PERCENTILES, PERCENTILE_COLORS, strict=True):
            figure.add_trace(
                go.Bar(
                    name=label,
                    legendgroup=label,
                    showlegend=column == 1,
                    marker_color=color,
                    x=[name for name, _ in measured],
                    y=[getattr(stats, key) for _, stats in measured],
                ),
                row=1,
                col=column,
            )
    figure.update_layout(**_LAYOUT, title={"text": "Latency percentiles (lower is better)"}, barmode="group")
    figure.update_yaxes(title_text="milliseconds per batch", row=1, col=1)
    return _figure_json(figure)


def throughput_figure(report: Report | dict[str, Any]) -> dict[str, Any]:
    """Grouped bars: items per second of each variant at each batch size."""
    report = _as_report(report)
    batches = _batch_sizes(report)
    traces = []
    for variant in report.variants:
        points = [
            (f"batch {batch}", variant.benchmark[str(batch)]) for batch in batches if str(batch) in variant.benchmark
        ]
        traces.append(
            go.Bar(name=variant.name, x=[label for label, _ in points], y=[s.throughput_per_s for _, s in points])
        )
    figure = go.Figure(
        data=traces,
        layout={**_LAYOUT, "title": {"text": "Throughput (higher is better)"}, "barmode": "group"},
    )
    figure.update_yaxes(title_text="items per second")
    return _figure_json(figure)


def size_figure(report: Report | dict[str, Any]) -> dict[str, Any]:
    """Bars: artifact size of each variant in MiB (the unit the tables show as "MB")."""
    report = _as_report(report)
    sizes = [variant.size_bytes / MIB for variant in report.variants]
    figure = go.Figure(
        data=[
            go.Bar(
                x=[variant.name for variant in report.variants],
                y=sizes,
                text=[f"{size:.1f} MiB" for size in sizes],
                textposition="auto",
                name="size",
            )
        ],
        layout={**_LAYOUT, "title": {"text": "Model size"}, "showlegend": False},
    )
    figure.update_yaxes(title_text="MiB")
    return _figure_json(figure)


def _stage_rank(stage: str) -> tuple[int, str]:
    """Pipeline order, unknown stages last: a stored report's key order does not survive PostgreSQL's jsonb."""
    return (PROFILE_STAGES.index(stage) if stage in PROFILE_STAGES else len(PROFILE_STAGES), stage)


def profile_figure(profile: dict[str, Any]) -> dict[str, Any]:
    """The baseline profile: pre/model/post split (pie) and the top operators (bars, ms per call)."""
    figure = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.35, 0.65],
        specs=[[{"type": "domain"}, {"type": "xy"}]],
        subplot_titles=("end-to-end split", "top operators (self time per model call)"),
    )
    shares = profile.get("shares", {})
    stages = sorted(shares, key=_stage_rank)
    figure.add_trace(
        go.Pie(labels=stages, values=[shares[stage] * 100 for stage in stages], hole=0.4, sort=False),
        row=1,
        col=1,
    )
    ops = list(reversed(profile.get("top_ops", [])[:10]))
    figure.add_trace(
        go.Bar(
            x=[op["self_ms"] for op in ops],
            y=[op["op"] for op in ops],
            orientation="h",
            text=[f"{op['share']:.0%}" for op in ops],
            textposition="auto",
            showlegend=False,
        ),
        row=1,
        col=2,
    )
    figure.update_xaxes(title_text="ms", row=1, col=2)
    title = (
        f"Where the time goes: baseline on {profile.get('runtime', '?')}, "
        f"batch {profile.get('batch_size')} × seq {profile.get('seq_len')}"
    )
    figure.update_layout(**{**_LAYOUT, "title": {"text": title}, "height": 420, "margin": {"l": 180, "r": 20}})
    return _figure_json(figure)


#: Quality metric plotted against size, by preference (the first one the report has).
QUALITY_AXES = (
    ("perplexity", "perplexity (lower is better)"),
    ("accuracy", "accuracy on the eval set"),
    ("cosine", "cosine to baseline"),
)


def _quality_axis(report: Report) -> tuple[str, str]:
    """The first metric of ``QUALITY_AXES`` that some variant has (perplexity, accuracy, cosine)."""
    return next(
        ((name, text) for name, text in QUALITY_AXES if any(name in v.metrics for v in report.variants)),
        QUALITY_AXES[0],
    )


def generation_figure(report: Report | dict[str, Any]) -> dict[str, Any]:
    """Causal LMs: decode tokens/s (bars, left axis) and size in MiB (markers, right axis) per variant."""
    report = _as_report(report)
    measured = [variant for variant in report.variants if variant.generation is not None]
    names = [variant.name for variant in measured]
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    figure.add_trace(
        go.Bar(
            x=names,
            y=[variant.generation.decode_tokens_per_s for variant in measured],
            text=[f"{variant.generation.decode_tokens_per_s:.0f}" for variant in measured],
            textposition="auto",
            name="decode tokens/s",
            marker_color="#3559e0",
        ),
        secondary_y=False,
    )
    figure.add_trace(
        go.Scatter(
            x=names,
            y=[variant.size_bytes / MIB for variant in measured],
            mode="markers+lines",
            name="size (MiB)",
            marker={"size": 10, "color": "#f29e4c"},
        ),
        secondary_y=True,
    )
    prompt = measured[0].generation.prompt_tokens if measured else 0
    new = measured[0].generation.new_tokens if measured else 0
    title = f"Decode speed and size (batch 1, {new} new tokens after a {prompt}-token prompt)"
    figure.update_layout(**_LAYOUT, title={"text": title})
    figure.update_yaxes(title_text="decode tokens per second", secondary_y=False)
    figure.update_yaxes(title_text="MiB", secondary_y=True, rangemode="tozero")
    return _figure_json(figure)


def quality_size_figure(report: Report | dict[str, Any]) -> dict[str, Any]:
    """Scatter: each variant's size (MiB) against its main quality metric (perplexity for LLMs)."""
    report = _as_report(report)
    metric, label = _quality_axis(report)
    points = [variant for variant in report.variants if metric in variant.metrics]
    figure = go.Figure(
        data=[
            go.Scatter(
                x=[variant.size_bytes / MIB for variant in points],
                y=[variant.metrics[metric] for variant in points],
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [
                        v.metrics.get(f"{metric}_ci_high", v.metrics[metric]) - v.metrics[metric] for v in points
                    ],
                    "arrayminus": [
                        v.metrics[metric] - v.metrics.get(f"{metric}_ci_low", v.metrics[metric]) for v in points
                    ],
                },
                mode="markers+text",
                text=[variant.name for variant in points],
                textposition="top center",
                marker={"size": 12},
                name=metric,
            )
        ],
        layout={**_LAYOUT, "title": {"text": "Quality vs size (95% CI)"}, "showlegend": False},
    )
    figure.update_xaxes(title_text="size (MiB)", rangemode="tozero")
    figure.update_yaxes(title_text=label)
    return _figure_json(figure)


def tradeoff_figure(report: Report | dict[str, Any]) -> dict[str, Any]:
    """Two scatters across variants: quality vs size (MiB) and quality vs p50 latency at the
    smallest benchmarked batch — where each technique (or stack) lands on both trade-offs."""
    report = _as_report(report)
    metric, label = _quality_axis(report)
    batches = _batch_sizes(report)
    batch = str(batches[0]) if batches else None
    figure = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        subplot_titles=("quality vs size", f"quality vs p50 latency (batch {batch})" if batch else "no latency"),
    )
    points = [variant for variant in report.variants if metric in variant.metrics]
    figure.add_trace(
        go.Scatter(
            x=[v.size_bytes / MIB for v in points],
            y=[v.metrics[metric] for v in points],
            mode="markers+text",
            text=[v.name for v in points],
            textposition="top center",
            marker={"size": 11},
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    timed = [v for v in points if batch and batch in v.benchmark]
    figure.add_trace(
        go.Scatter(
            x=[v.benchmark[batch].p50_ms for v in timed],
            y=[v.metrics[metric] for v in timed],
            mode="markers+text",
            text=[v.name for v in timed],
            textposition="top center",
            marker={"size": 11, "color": "#f29e4c"},
            showlegend=False,
        ),
        row=1,
        col=2,
    )
    figure.update_layout(**{**_LAYOUT, "title": {"text": "Trade-offs across variants"}})
    figure.update_xaxes(title_text="size (MiB)", rangemode="tozero", row=1, col=1)
    figure.update_xaxes(title_text="p50 ms", rangemode="tozero", row=1, col=2)
    figure.update_yaxes(title_text=label, row=1, col=1)
    return _figure_json(figure)


def sensitivity_figure(variant_name: str, sensitivity: list[dict[str, Any]]) -> dict[str, Any]:
    """Structured pruning's sensitivity analysis: metric drop when each unit group is removed alone,
    most sensitive first; pruned units in a second colour."""
    rows = sorted(sensitivity, key=lambda row: float(row.get("drop", 0.0)), reverse=True)
    pruned = [bool(row.get("pruned")) for row in rows]
    figure = go.Figure(
        data=[
            go.Bar(
                x=[str(row.get("unit")) for row in rows],
                y=[float(row.get("drop", 0.0)) for row in rows],
                marker_color=["#c62828" if flag else "#3559e0" for flag in pruned],
                text=["pruned" if flag else "" for flag in pruned],
                textposition="outside",
                name="metric drop",
            )
        ],
        layout={
            **_LAYOUT,
            "title": {"text": f"Sensitivity analysis ({variant_name}): metric drop per unit removed alone"},
            "showlegend": False,
        },
    )
    figure.update_yaxes(title_text="metric drop (higher = more sensitive)")
    return _figure_json(figure)


def training_figure(report: Report | dict[str, Any]) -> dict[str, Any]:
    """Training-loss curves of every variant whose pass trained (QAT, distillation, fine-tuning)."""
    report = _as_report(report)
    traces = []
    for variant in report.variants:
        curve = variant.details.get("training_curve") or []
        traces.append(
            go.Scatter(
                x=[point["step"] for point in curve],
                y=[point["loss"] for point in curve],
                mode="lines",
                name=variant.name,
            )
        )
    figure = go.Figure(
        data=[trace for trace in traces if len(trace.x)],
        layout={**_LAYOUT, "title": {"text": "Training loss"}},
    )
    figure.update_xaxes(title_text="step")
    figure.update_yaxes(title_text="loss")
    return _figure_json(figure)


def report_figures(report: Report | dict[str, Any]) -> dict[str, dict[str, Any]]:
    """All result charts keyed by their element id (``chart-latency``, ``chart-throughput``,
    ``chart-size``, ``chart-profile`` when the baseline was profiled, and for causal LMs
    ``chart-generation`` (decode tokens/s and size) and ``chart-quality-size``; with candidates,
    ``chart-tradeoff``; ``chart-training`` when a pass trained; ``chart-sensitivity-<n>`` for the
    n-th variant when structured pruning analysed sensitivity)."""
    report = _as_report(report)
    figures = {
        "chart-latency": latency_figure(report),
        "chart-throughput": throughput_figure(report),
        "chart-size": size_figure(report),
    }
    if report.profile:
        figures["chart-profile"] = profile_figure(report.profile)
    if any(variant.generation is not None for variant in report.variants):
        figures["chart-generation"] = generation_figure(report)
        figures["chart-quality-size"] = quality_size_figure(report)
    elif len(report.variants) > 1:
        figures["chart-tradeoff"] = tradeoff_figure(report)
    if any(variant.details.get("training_curve") for variant in report.variants):
        figures["chart-training"] = training_figure(report)
    for index, variant in enumerate(report.variants):
        if variant.details.get("sensitivity"):
            figures[f"chart-sensitivity-{index}"] = sensitivity_figure(variant.name, variant.details["sensitivity"])
    return figures
