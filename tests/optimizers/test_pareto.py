"""optimizers.pareto: fronts on fixed points, ties, missing values."""

from __future__ import annotations

import math

import pytest

from optimizers.pareto import dominates, pareto_front

LATENCY_QUALITY = {"latency": "min", "quality": "max"}


def test_front_of_latency_vs_quality():
    points = [
        {"latency": 10.0, "quality": 0.90},  # 0: on the front
        {"latency": 5.0, "quality": 0.80},  # 1: fastest → on the front
        {"latency": 12.0, "quality": 0.85},  # 2: slower and worse than 0
        {"latency": 20.0, "quality": 0.95},  # 3: best quality → on the front
        {"latency": 6.0, "quality": 0.79},  # 4: slower and worse than 1
    ]
    assert pareto_front(points, LATENCY_QUALITY) == [0, 1, 3]


def test_equal_points_are_both_kept():
    points = [{"latency": 5.0, "quality": 0.9}, {"latency": 5.0, "quality": 0.9}, {"latency": 6.0, "quality": 0.8}]
    assert pareto_front(points, LATENCY_QUALITY) == [0, 1]


def test_a_tie_on_one_objective_is_broken_by_the_other():
    points = [{"latency": 5.0, "quality": 0.9}, {"latency": 5.0, "quality": 0.8}]
    assert pareto_front(points, LATENCY_QUALITY) == [0]
    assert dominates(points[0], points[1], LATENCY_QUALITY)
    assert not dominates(points[0], points[0], LATENCY_QUALITY)


def test_equal_points_both_leave_when_a_third_dominates_them():
    points = [{"latency": 5.0, "quality": 0.8}, {"latency": 5.0, "quality": 0.8}, {"latency": 4.0, "quality": 0.9}]
    assert pareto_front(points, LATENCY_QUALITY) == [2]


@pytest.mark.parametrize("missing", [None, math.nan])
def test_points_with_missing_values_are_never_on_the_front_and_dominate_nothing(missing):
    points = [{"latency": missing, "quality": 1.0}, {"latency": 50.0, "quality": 0.5}, {"quality": 0.99}]
    assert pareto_front(points, LATENCY_QUALITY) == [1]


def test_four_objectives_latency_size_cost_quality():
    objectives = {"latency": "min", "size": "min", "cost": "min", "quality": "max"}
    points = [
        {"latency": 38, "size": 90, "cost": 25, "quality": 1.0},  # baseline: smaller than the export
        {"latency": 34, "size": 91, "cost": 20, "quality": 1.0},  # export: faster and cheaper than the baseline
        {"latency": 20, "size": 23, "cost": 10, "quality": 0.99},  # int8: fastest, smallest, cheapest
        {"latency": 21, "size": 24, "cost": 11, "quality": 0.98},  # worse than int8 everywhere
        {"latency": 40, "size": 92, "cost": 26, "quality": 1.0},  # worse than the baseline, equal quality
    ]
    assert pareto_front(points, objectives) == [0, 1, 2]


def test_single_objective_front_is_the_best_points():
    points = [{"cost": 3.0}, {"cost": 1.0}, {"cost": 1.0}, {"cost": 2.0}]
    assert pareto_front(points, {"cost": "min"}) == [1, 2]


def test_empty_input_and_bad_objectives():
    assert pareto_front([], LATENCY_QUALITY) == []
    with pytest.raises(ValueError):
        pareto_front([{"a": 1.0}], {})
    with pytest.raises(ValueError, match="direction"):
        pareto_front([{"a": 1.0}], {"a": "lowest"})  # type: ignore[dict-item]
