"""optimizers.cost: the formulas on fixed inputs, the hardware match and a job's breakdown."""

from __future__ import annotations

import datetime

import pytest

from optimizers.cost import (
    SEED_CATALOGUE,
    InstanceType,
    break_even_requests,
    cost_breakdown,
    cost_per_million,
    format_count,
    format_duration,
    format_usd,
    hardware_check,
    matching_instances,
    measured_batch_sizes,
    monthly_cost,
    optimization_cost,
    unit_for_task,
)
from optimizers.report import Report
from tests.optimizers.reports import fixed_report

XEON = InstanceType("c7i.xlarge", 0.18, "Intel Xeon Platinum 8488C", "cpu")
A10G = InstanceType("g5.xlarge", 1.0, "NVIDIA A10G", "gpu")


def test_cost_per_million_is_price_over_hourly_throughput():
    # $3.60/h at 100 requests/s = 360,000 requests/h → $10 per 1M.
    assert cost_per_million(3.60, 100.0) == pytest.approx(10.0)
    assert cost_per_million(0.18, 50.0) == pytest.approx(0.18 / 180_000 * 1e6)  # $1.00
    assert cost_per_million(0.0, 10.0) == 0.0


@pytest.mark.parametrize("price, throughput", [(1.0, 0.0), (1.0, -5.0), (-1.0, 10.0)])
def test_cost_per_million_refuses_impossible_inputs(price, throughput):
    with pytest.raises(ValueError):
        cost_per_million(price, throughput)


def test_optimization_cost_is_wall_hours_times_price():
    assert optimization_cost(1800, 0.36) == pytest.approx(0.18)
    assert optimization_cost(0, 12.0) == 0.0
    with pytest.raises(ValueError):
        optimization_cost(-1, 1.0)


def test_break_even_is_job_cost_over_saving_per_request():
    # Saving $0.50 per 1M requests; the job cost $2 → 4M requests to pay back.
    assert break_even_requests(1.50, 1.00, 2.0) == pytest.approx(4_000_000)
    assert break_even_requests(1.50, 1.00, 0.0) == 0.0


@pytest.mark.parametrize("candidate", [1.50, 2.00])
def test_break_even_is_none_when_the_candidate_is_not_cheaper(candidate):
    assert break_even_requests(1.50, candidate, 2.0) is None


def test_monthly_cost_scales_cost_per_million_by_traffic():
    assert monthly_cost(30_000_000, 0.5) == pytest.approx(15.0)
    assert monthly_cost(0, 0.5) == 0.0
    with pytest.raises(ValueError):
        monthly_cost(-1, 0.5)


def test_llms_are_priced_per_token():
    assert unit_for_task("causal-lm") == "tokens"
    assert unit_for_task("feature-extraction") == "requests"


@pytest.mark.parametrize(
    "amount, text",
    [(1234.4, "$1,234"), (12.345, "$12.35"), (0.5, "$0.50"), (0.0061, "$0.0061"), (0, "$0.00"), (-2.5, "−$2.50"),
     (None, "—")],
)  # fmt: skip
def test_money_is_shown_without_false_precision(amount, text):
    assert format_usd(amount) == text


def test_break_even_times_are_shown_in_months_days_or_hours():
    assert [format_duration(m) for m in (2.5, 0.1, 0.005, 0.0001)] == [
        "2.5 months", "3 days", "3.7 hours", "under an hour",
    ]  # fmt: skip


def test_counts_are_shown_with_three_significant_digits():
    assert [format_count(n) for n in (950, 12_300, 4_560_000, 7.8e9)] == ["950", "12.3 k", "4.56 M", "7.8 B"]


@pytest.mark.parametrize(
    "device, instance, matches",
    [
        ("cpu: Intel(R) Xeon(R) Platinum 8488C (2 logical cores)", XEON, True),
        ("cpu: AMD EPYC 7R13 Processor (4 logical cores)", XEON, False),
        ("cpu: Intel(R) Xeon(R) Platinum 8488C (2 logical cores)", A10G, False),
        ("cuda: NVIDIA A10G", A10G, True),
        ("cuda: NVIDIA L40S", InstanceType("l4", 1, "NVIDIA L4", "gpu"), False),
        ("cuda:0", A10G, False),
        ("", XEON, False),
        (None, XEON, False),
    ],
)
def test_hardware_check_compares_device_kind_and_model(device, instance, matches):
    check = hardware_check(device, instance)
    assert check.matches is matches
    assert bool(check.reason) is not matches


def test_cpu_benchmark_against_gpu_instance_says_so():
    reason = hardware_check("cpu: Intel(R) Xeon(R) Platinum 8488C", A10G).reason
    assert "measured on CPU" in reason and "GPU" in reason and "g5.xlarge" in reason


def test_seed_catalogue_is_dated_approximate_and_has_cpu_and_gpu():
    assert {instance.kind for instance in SEED_CATALOGUE} == {"cpu", "gpu"}
    assert {instance.name.split()[0] for instance in SEED_CATALOGUE} >= {"AWS", "GCP", "Azure"}
    for instance in SEED_CATALOGUE:
        assert instance.price_date == datetime.date(2024, 6, 1)
        assert "approximate list price as of June 2024, on-demand" in instance.notes
        assert "check your provider" in instance.notes
        assert round(instance.hourly_price, 2) == instance.hourly_price > 0


def test_breakdown_on_fixed_report():
    report = Report.model_validate(fixed_report())
    instance = InstanceType("box", 3.60, "Intel Xeon Platinum 8488C", "cpu")
    worker = InstanceType("worker", 0.36, "Intel Xeon Platinum 8488C", "cpu")
    breakdown = cost_breakdown(
        report, instance, batch_size=8, requests_per_month=10_000_000, optimization_seconds=3600,
        worker_instance=worker,
    )  # fmt: skip
    assert breakdown.unit == "requests"
    assert breakdown.hardware_warnings == []
    assert breakdown.optimization.value == pytest.approx(0.36)
    assert "3,600 s ÷ 3600 × $0.36/h (worker) = $0.36" in breakdown.optimization.inputs
    baseline, export, int8 = breakdown.variants
    # Throughput at batch 8: 40, 50, 100 items/s → $25, $20, $10 per 1M at $3.60/h.
    assert [row.cost_per_million.value for row in breakdown.variants] == pytest.approx([25.0, 20.0, 10.0])
    assert int8.cost_per_million.inputs == "$3.60/h ÷ (100 requests/s × 3600) × 1,000,000 = $10.00"
    assert "hourly price ÷ (throughput × 3600 s/h)" in int8.cost_per_million.formula
    assert int8.monthly.value == pytest.approx(100.0)
    assert int8.monthly_saving.value == pytest.approx(250.0 - 100.0)
    # $0.36 ÷ ($25 − $10) × 1M = 24,000 requests.
    assert int8.break_even.value == pytest.approx(24_000)
    assert int8.break_even.display.startswith("24 k requests")
    assert baseline.break_even is None and baseline.monthly_saving is None
    assert export.break_even.value == pytest.approx(0.36 / 5 * 1e6)


def test_breakdown_flags_other_hardware_and_unmeasured_batches():
    report = Report.model_validate(fixed_report())
    breakdown = cost_breakdown(report, A10G, batch_size=4)
    assert all(row.cost_per_million is None for row in breakdown.variants)
    assert breakdown.variants[0].note == "not measured at batch 4"
    assert len(breakdown.hardware_warnings) == 1 and "GPU" in breakdown.hardware_warnings[0]
    assert breakdown.optimization is None


def test_candidate_that_is_not_cheaper_never_breaks_even():
    raw = fixed_report()
    raw["variants"][2]["benchmark"]["8"]["throughput_per_s"] = 20.0  # slower than the baseline's 40/s
    report = Report.model_validate(raw)
    breakdown = cost_breakdown(report, XEON, batch_size=8, optimization_seconds=60, worker_instance=XEON,
                               requests_per_month=1e6)  # fmt: skip
    int8 = breakdown.variants[2]
    assert int8.break_even.value is None
    assert int8.break_even.display.startswith("never")
    assert int8.monthly_saving.value < 0 and "costs more" in int8.monthly_saving.display


def test_measured_batches_and_matching_instances():
    report = Report.model_validate(fixed_report())
    assert measured_batch_sizes(report) == [1, 8]
    assert [i.name for i in matching_instances(report, SEED_CATALOGUE)] == ["AWS c7i.xlarge", "AWS c7i.2xlarge"]
