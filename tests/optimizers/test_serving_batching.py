"""Dynamic batching: the batcher's behaviour on a fake clock, the sweep's structure, the recommendation."""

from __future__ import annotations

import numpy as np
import pytest

from optimizers.serving.batching import (
    BatchingCell,
    SweepSettings,
    curves,
    poisson_arrivals,
    recommend_setting,
    run_cell,
    sweep_artifact,
    sweep_isolated,
)


class FakeClock:
    """Time that only moves when the batcher sleeps or the model runs (1 ms per batch)."""

    def __init__(self, service_s: float = 0.001) -> None:
        self.now = 0.0
        self.service_s = service_s
        self.batches: list[int] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)

    def infer(self, size: int) -> None:
        self.batches.append(size)
        self.now += self.service_s


def test_batcher_waits_for_a_full_batch_or_the_queue_delay():
    fake = FakeClock()
    arrivals = np.array([0.0, 0.001, 0.002, 0.010])
    cell = run_cell(
        fake.infer,
        arrivals,
        max_batch_size=2,
        max_queue_delay_s=0.005,
        offered_rate_per_s=400,
        clock=fake.clock,
        sleep=fake.sleep,
    )
    # 1st batch fills at 1 ms (done at 2 ms); the 3rd request waits its 5 ms delay alone (done at 8 ms);
    # the 4th arrives at 10 ms and, with nobody behind it, also waits out the delay (done at 16 ms).
    assert fake.batches == [2, 1, 1]
    assert (cell.completed, cell.batches, cell.mean_batch_size) == (4, 3, 4 / 3)
    assert cell.p50_ms == pytest.approx(np.percentile([2, 1, 6, 6], 50))
    assert cell.throughput_per_s == pytest.approx(4 / 0.016)


def test_zero_delay_takes_whatever_has_queued_and_requests_wait_while_the_model_runs():
    fake = FakeClock(service_s=0.004)
    arrivals = np.array([0.0, 0.001, 0.002, 0.003])
    cell = run_cell(
        fake.infer, arrivals, max_batch_size=8, max_queue_delay_s=0.0, offered_rate_per_s=1000,
        clock=fake.clock, sleep=fake.sleep,
    )  # fmt: skip
    assert fake.batches == [1, 3]  # three requests queued during the first 4 ms batch
    assert cell.p99_ms == pytest.approx(np.percentile([4, 7, 6, 5], 99))
    assert cell.saturated  # 4 requests in 8 ms is half the offered 1000/s


def test_a_cell_stops_at_its_time_limit_and_counts_the_rest_as_not_completed():
    fake = FakeClock(service_s=0.010)
    cell = run_cell(
        fake.infer, np.zeros(10), max_batch_size=1, max_queue_delay_s=0.0, offered_rate_per_s=100,
        max_seconds=0.025, clock=fake.clock, sleep=fake.sleep,
    )  # fmt: skip
    assert cell.completed == 3 and cell.requests == 10 and cell.saturated


def test_poisson_arrivals_are_seeded_and_ascending():
    first = poisson_arrivals(100.0, 50, seed=3)
    assert first[0] == 0 and np.all(np.diff(first) >= 0)
    assert np.array_equal(first, poisson_arrivals(100.0, 50, seed=3))
    assert not np.array_equal(first, poisson_arrivals(100.0, 50, seed=4))


def _cell(batch, delay, rate, throughput, p95, saturated=False) -> BatchingCell:
    return BatchingCell(
        max_batch_size=batch, max_queue_delay_ms=delay, offered_rate_per_s=rate, requests=100, completed=100,
        duration_s=1.0, throughput_per_s=throughput, p50_ms=p95 / 2, p95_ms=p95, p99_ms=p95 * 1.2,
        mean_ms=p95 / 2, batches=50, mean_batch_size=2.0, saturated=saturated,
    )  # fmt: skip


CELLS = [
    _cell(1, 0.0, 100, 100, 4.0),
    _cell(1, 0.0, 400, 210, 90.0, saturated=True),
    _cell(8, 2.0, 400, 395, 9.0),
    _cell(8, 2.0, 800, 790, 14.0),
    _cell(16, 10.0, 800, 795, 30.0),
    _cell(16, 10.0, 1600, 1500, 25.0, saturated=True),  # fast but its queue grows: never chosen
]


def test_recommendation_maximizes_throughput_under_the_p95_budget():
    pick = recommend_setting(CELLS, p95_budget_ms=15.0)
    assert (pick.max_batch_size, pick.max_queue_delay_ms, pick.preferred_batch_sizes) == (8, 2.0, [8])
    assert pick.throughput_per_s == 790 and pick.p95_ms == 14.0 and "15 ms budget" in pick.reason
    assert recommend_setting(CELLS, p95_budget_ms=50.0).max_batch_size == 16
    assert recommend_setting(CELLS, p95_budget_ms=5.0).max_batch_size == 1
    assert recommend_setting(CELLS, p95_budget_ms=1.0) is None


def test_recommendation_ties_go_to_lower_p95_then_smaller_settings():
    tied = [_cell(16, 5.0, 500, 500, 8.0), _cell(4, 5.0, 500, 500, 8.0), _cell(8, 1.0, 500, 500, 7.0)]
    assert recommend_setting(tied, p95_budget_ms=10).max_batch_size == 8
    assert recommend_setting(tied[:2], p95_budget_ms=10).max_batch_size == 4


TINY_GRID = SweepSettings(
    max_batch_sizes=[1, 4], max_queue_delays_ms=[0, 1], rates_per_s=[50, 200], requests_per_cell=12,
    max_cell_seconds=5,
)  # fmt: skip


def _check_structure(sweep, settings):
    assert [(c.max_batch_size, c.max_queue_delay_ms, c.offered_rate_per_s) for c in sweep.cells] == [
        (b, d, r) for b in settings.max_batch_sizes for d in settings.max_queue_delays_ms for r in settings.rates_per_s
    ]
    for cell in sweep.cells:
        assert cell.requests == 12 and 1 <= cell.completed <= 12
        assert 1 <= cell.mean_batch_size <= cell.max_batch_size
        assert 0 < cell.p50_ms <= cell.p95_ms <= cell.p99_ms
        assert cell.throughput_per_s > 0
    assert sweep.batch1_latency_ms > 0 and sweep.rates_per_s == [50, 200]
    lines = curves(sweep)
    assert len(lines) == 4 and all(len(line["points"]) == 2 for line in lines)


def test_sweep_over_the_digits_cnn_has_one_cell_per_setting_and_rate(digits_cnn):
    sweep = sweep_artifact(digits_cnn, TINY_GRID)
    assert sweep.device == "cpu" and sweep.model == digits_cnn.name
    _check_structure(sweep, TINY_GRID)


def test_isolated_sweep_returns_the_same_structure(digits_cnn):
    settings = TINY_GRID.model_copy(update={"max_batch_sizes": [2], "max_queue_delays_ms": [0.5]})
    sweep = sweep_isolated(digits_cnn, settings, timeout_s=300)
    assert len(sweep.cells) == 2 and sweep.settings == settings
