"""Trade-off charts for the comparison page: pure functions from points to plotly figure JSON.

Each chart puts one cost-like measure (latency, size, serving cost; lower is
better) on x against a quality metric on y and highlights the Pareto front:
the points no other point beats on both at once (``optimizers.pareto``).
Same style as ``webapp.jobs.charts``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import plotly.graph_objects as go

from optimizers.pareto import Direction, pareto_front
from webapp.jobs.charts import _LAYOUT, _figure_json

POINT_COLOR = "#98a2b3"
FRONT_COLOR = "#1a7f37"
CHART_IDS = ("chart-latency-quality", "chart-size-quality", "chart-cost-quality")


@dataclass(frozen=True)
class Point:
    label: str
    x: float | None
    y: float | None


def tradeoff_figure(
    points: Sequence[Point], *, title: str, x_title: str, y_title: str, y_direction: Direction = "max"
) -> dict:
    """Scatter of ``points`` (x lower is better; y per ``y_direction``) with the Pareto front highlighted.

    Two traces: ``other`` (grey, points off the front) and ``Pareto front``
    (green, bigger, joined in x order). Points missing x or y are left out.
    """
    usable = [p for p in points if p.x is not None and p.y is not None]
    front = set(pareto_front([{"x": p.x, "y": p.y} for p in usable], {"x": "min", "y": y_direction}))
    others = [p for i, p in enumerate(usable) if i not in front]
    best = sorted((p for i, p in enumerate(usable) if i in front), key=lambda p: (p.x, p.y))
    hover = "%{text}<br>" + x_title + ": %{x:.4g}<br>" + y_title + ": %{y:.4g}<extra></extra>"
    traces = [
        go.Scatter(
            name="other",
            x=[p.x for p in others],
            y=[p.y for p in others],
            text=[p.label for p in others],
            mode="markers",
            marker={"color": POINT_COLOR, "size": 10},
            hovertemplate=hover,
        ),
        go.Scatter(
            name="Pareto front",
            x=[p.x for p in best],
            y=[p.y for p in best],
            text=[p.label for p in best],
            mode="lines+markers",
            line={"color": FRONT_COLOR, "shape": "hv" if y_direction == "max" else "vh", "dash": "dot"},
            marker={"color": FRONT_COLOR, "size": 13, "symbol": "diamond"},
            hovertemplate=hover,
        ),
    ]
    figure = go.Figure(data=traces, layout={**_LAYOUT, "title": {"text": title}})
    figure.update_xaxes(title_text=f"{x_title} (lower is better)")
    figure.update_yaxes(title_text=f"{y_title} ({'higher' if y_direction == 'max' else 'lower'} is better)")
    return _figure_json(figure)


def compare_figures(
    labels: Sequence[str],
    *,
    quality: Sequence[float | None],
    latency_ms: Sequence[float | None],
    size_mib: Sequence[float | None],
    cost_per_million: Sequence[float | None],
    metric: str,
    direction: Direction,
    batch_size: int,
    cost_label: str,
) -> dict[str, dict]:
    """The three comparison charts keyed by element id (``CHART_IDS``)."""

    def points(xs: Sequence[float | None]) -> list[Point]:
        return [Point(label, x, y) for label, x, y in zip(labels, xs, quality, strict=True)]

    return {
        "chart-latency-quality": tradeoff_figure(
            points(latency_ms), title=f"Latency vs {metric}", x_title=f"p50 ms at batch {batch_size}",
            y_title=metric, y_direction=direction,
        ),
        "chart-size-quality": tradeoff_figure(
            points(size_mib), title=f"Size vs {metric}", x_title="size MiB", y_title=metric, y_direction=direction
        ),
        "chart-cost-quality": tradeoff_figure(
            points(cost_per_million), title=f"Cost vs {metric}", x_title=cost_label, y_title=metric,
            y_direction=direction,
        ),
    }  # fmt: skip
