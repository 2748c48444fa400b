"""Pareto fronts: the points no other point beats on every objective at once.

A point *dominates* another when it is at least as good on every objective
and strictly better on at least one. The front is the set of points no other
point dominates.

Ties: two points equal on every objective do not dominate each other, so both
stay on the front (or both leave it, if a third point dominates them). A point
that ties another on one objective and is better on the rest dominates it.

Missing values: a point whose value for any objective is None or NaN cannot
be compared; it is never on the front and dominates nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

Direction = Literal["min", "max"]


def _usable(point: Mapping[str, float | None], objectives: Mapping[str, Direction]) -> bool:
    for name in objectives:
        value = point.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
    return True


def _check(objectives: Mapping[str, Direction]) -> None:
    if not objectives:
        raise ValueError("at least one objective is needed")
    for name, direction in objectives.items():
        if direction not in ("min", "max"):
            raise ValueError(f"objective {name!r}: direction must be 'min' or 'max', got {direction!r}")


def dominates(
    a: Mapping[str, float | None], b: Mapping[str, float | None], objectives: Mapping[str, Direction]
) -> bool:
    """True when ``a`` is at least as good as ``b`` on every objective and better on one.

    ``objectives`` maps a key of the points to ``min`` (lower is better: latency,
    size, cost) or ``max`` (higher is better: quality). False when either point
    lacks a value.
    """
    _check(objectives)
    if not (_usable(a, objectives) and _usable(b, objectives)):
        return False
    strictly_better = False
    for name, direction in objectives.items():
        left, right = float(a[name]), float(b[name])  # type: ignore[arg-type]
        if direction == "max":
            left, right = -left, -right
        if left > right:
            return False
        if left < right:
            strictly_better = True
    return strictly_better


def pareto_front(points: Sequence[Mapping[str, float | None]], objectives: Mapping[str, Direction]) -> list[int]:
    """Indices (ascending) of the points on the Pareto front for ``objectives``.

    ``pareto_front([{"ms": 10, "q": 0.9}, {"ms": 5, "q": 0.8}, {"ms": 12, "q": 0.85}],
    {"ms": "min", "q": "max"})`` is ``[0, 1]``: the third is slower and worse
    than the first. See the module docstring for ties and missing values.
    Raises ``ValueError`` for no objectives or an unknown direction.
    """
    _check(objectives)
    usable = [index for index, point in enumerate(points) if _usable(point, objectives)]
    return [
        index
        for index in usable
        if not any(dominates(points[other], points[index], objectives) for other in usable if other != index)
    ]
