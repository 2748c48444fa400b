"""What a variant costs to serve, what the optimization cost, and when it pays for itself.

All money is US dollars, all prices are per instance-hour. The formulas (each
function's docstring repeats its own):

- cost per 1M requests = hourly price ÷ (throughput per second × 3600) × 1,000,000
  (per 1M *tokens* for LLMs, whose throughput is tokens per second);
- optimization cost = wall seconds ÷ 3600 × the worker's hourly price;
- break-even volume = optimization cost ÷ (baseline cost per 1M − candidate cost per 1M) × 1,000,000
  requests, after which the cheaper candidate has paid back the job that made it;
- monthly cost = requests per month ÷ 1,000,000 × cost per 1M.

Throughput is what the benchmark measured at one batch size: the cost assumes
the instance is kept busy with batches of that size. It is only as true as the
hardware match: a figure computed from a benchmark that ran on other hardware
than the instance is flagged (``hardware_check``), never silently used.

``SEED_CATALOGUE`` lists a few common instances at approximate, dated list
prices; the dashboard copies them into an editable table.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from optimizers.report import Report, VariantReport

SECONDS_PER_HOUR = 3600
MILLION = 1_000_000

DeviceKind = Literal["cpu", "gpu"]


@dataclass(frozen=True)
class InstanceType:
    """One rentable machine: a name, an hourly price and the device that would run the model.

    ``device`` names the processor or GPU the way benchmark device strings do
    (``Intel Xeon Platinum 8488C``, ``NVIDIA A10G``), so ``hardware_check`` can
    compare them; ``kind`` says which of the two it is.
    """

    name: str
    hourly_price: float
    device: str
    kind: DeviceKind
    notes: str = ""
    price_date: datetime.date | None = None


# List prices as of June 2024, on-demand, Linux, rounded to the cent. They are
# approximate and change: each row says where it came from; check your provider.
PRICE_DATE = datetime.date(2024, 6, 1)
_PRICE_NOTE = "approximate list price as of June 2024, on-demand, {region} — check your provider"
SEED_CATALOGUE: tuple[InstanceType, ...] = (
    InstanceType(
        "AWS c7i.xlarge",
        0.18,
        "Intel Xeon Platinum 8488C",
        "cpu",
        "4 vCPU (Sapphire Rapids), 8 GiB; " + _PRICE_NOTE.format(region="us-east-1"),
        PRICE_DATE,
    ),
    InstanceType(
        "AWS c7i.2xlarge",
        0.36,
        "Intel Xeon Platinum 8488C",
        "cpu",
        "8 vCPU (Sapphire Rapids), 16 GiB; " + _PRICE_NOTE.format(region="us-east-1"),
        PRICE_DATE,
    ),
    InstanceType(
        "AWS g5.xlarge",
        1.01,
        "NVIDIA A10G",
        "gpu",
        "1× A10G 24 GB, 4 vCPU, 16 GiB; " + _PRICE_NOTE.format(region="us-east-1"),
        PRICE_DATE,
    ),
    InstanceType(
        "AWS g6.xlarge",
        0.80,
        "NVIDIA L4",
        "gpu",
        "1× L4 24 GB, 4 vCPU, 16 GiB; " + _PRICE_NOTE.format(region="us-east-1"),
        PRICE_DATE,
    ),
    InstanceType(
        "AWS p5.48xlarge ÷ 8 (one H100)",
        12.29,
        "NVIDIA H100",
        "gpu",
        "one eighth of p5.48xlarge (8× H100 80 GB, about $98.32/h); AWS has repriced this family since — "
        + _PRICE_NOTE.format(region="us-east-1"),
        PRICE_DATE,
    ),
    InstanceType(
        "GCP g2-standard-4",
        0.71,
        "NVIDIA L4",
        "gpu",
        "1× L4 24 GB, 4 vCPU, 16 GB; " + _PRICE_NOTE.format(region="us-central1"),
        PRICE_DATE,
    ),
    InstanceType(
        "Azure NC4as T4 v3",
        0.53,
        "NVIDIA T4",
        "gpu",
        "1× T4 16 GB, 4 vCPU, 28 GiB; " + _PRICE_NOTE.format(region="East US"),
        PRICE_DATE,
    ),
)


# --- formulas ---------------------------------------------------------------------------------


def cost_per_million(price_per_hour: float, throughput_per_s: float) -> float:
    """Cost of 1M requests (or tokens) = price_per_hour ÷ (throughput_per_s × 3600) × 1,000,000.

    Raises ``ValueError`` for a negative price or a throughput that is not positive.
    """
    if price_per_hour < 0:
        raise ValueError(f"price per hour must not be negative, got {price_per_hour}")
    if not throughput_per_s > 0:
        raise ValueError(f"throughput must be positive, got {throughput_per_s}")
    return price_per_hour / (throughput_per_s * SECONDS_PER_HOUR) * MILLION


def optimization_cost(wall_seconds: float, price_per_hour: float) -> float:
    """Cost of the optimization job = wall_seconds ÷ 3600 × price_per_hour (the worker's instance)."""
    if wall_seconds < 0 or price_per_hour < 0:
        raise ValueError("wall time and price must not be negative")
    return wall_seconds / SECONDS_PER_HOUR * price_per_hour


def break_even_requests(
    baseline_cost_per_million: float, candidate_cost_per_million: float, optimization_cost: float
) -> float | None:
    """Requests after which the optimization has paid for itself, or None if it never does.

    break-even = optimization_cost ÷ (baseline_cost_per_million − candidate_cost_per_million) × 1,000,000.
    None when the candidate is not cheaper per request than the baseline (equal
    costs included); 0 when the optimization cost nothing.
    """
    saving = baseline_cost_per_million - candidate_cost_per_million
    if saving <= 0:
        return None
    return optimization_cost / saving * MILLION


def monthly_cost(requests_per_month: float, cost_per_million: float) -> float:
    """Monthly serving cost = requests_per_month ÷ 1,000,000 × cost_per_million."""
    if requests_per_month < 0:
        raise ValueError(f"requests per month must not be negative, got {requests_per_month}")
    return requests_per_month / MILLION * cost_per_million


def unit_for_task(task: str) -> str:
    """What one unit of throughput is: ``tokens`` for LLMs (``causal-lm``), else ``requests``."""
    return "tokens" if task == "causal-lm" else "requests"


# --- hardware match ---------------------------------------------------------------------------

_TRADEMARKS = re.compile(r"\((?:r|tm)\)|[®™]", re.IGNORECASE)
#: Words that say what kind of device it is, not which one.
_GENERIC_WORDS = frozenset({"cpu", "gpu", "cuda", "processor", "logical", "cores", "core", "with"})


def _tokens(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", _TRADEMARKS.sub(" ", text.lower())))


def device_kind(benchmark_device: str) -> DeviceKind | None:
    """``cpu`` for ``cpu: …`` device strings, ``gpu`` for ``cuda…``/``gpu…``/NVIDIA/AMD Instinct; else None."""
    text = benchmark_device.strip().lower()
    if text.startswith("cpu"):
        return "cpu"
    if text.startswith(("cuda", "gpu", "rocm", "nvidia")) or "instinct" in text:
        return "gpu"
    return None


@dataclass(frozen=True)
class HardwareCheck:
    """Whether a benchmark ran on the instance's device; ``reason`` explains a mismatch."""

    matches: bool
    reason: str = ""


def hardware_check(benchmark_device: str | None, instance: InstanceType) -> HardwareCheck:
    """Does ``benchmark_device`` (report ``benchmark_info.device``) describe ``instance``'s device?

    It matches when the device kinds agree and every word of the instance's
    ``device`` (ignoring ``(R)``, ``(TM)``, case and generic words such as
    "CPU") appears in the benchmark's device string: ``Intel Xeon Platinum
    8488C`` matches ``cpu: Intel(R) Xeon(R) Platinum 8488C (2 logical cores)``,
    ``NVIDIA L4`` does not match ``NVIDIA L40S``. Core and thread counts are not
    compared, so a match still measures one machine size, not every size.
    """
    if not benchmark_device:
        return HardwareCheck(False, "the benchmark did not record its device, so the match cannot be checked")
    kind = device_kind(benchmark_device)
    if kind is not None and kind != instance.kind:
        return HardwareCheck(
            False,
            f"measured on {kind.upper()} ({benchmark_device}) but {instance.name} serves on "
            f"{instance.kind.upper()} ({instance.device}): expect very different throughput",
        )
    wanted = _tokens(instance.device) - _GENERIC_WORDS
    if wanted and wanted <= _tokens(benchmark_device):
        return HardwareCheck(True)
    return HardwareCheck(
        False,
        f"measured on {benchmark_device}, not on {instance.device} ({instance.name}): "
        "throughput on the chosen instance will differ",
    )


# --- formatting -------------------------------------------------------------------------------


def format_usd(amount: float | None) -> str:
    """``$1,234``, ``$12.34``, ``$0.50``, ``$0.0061``: whole dollars from $100, cents from 10¢, else 2 digits."""
    if amount is None or math.isnan(amount):
        return "—"
    if amount < 0:
        return f"−{format_usd(-amount)}"
    if amount >= 100:
        return f"${amount:,.0f}"
    if amount >= 0.1 or amount == 0:
        return f"${amount:,.2f}"
    return f"${amount:.2g}" if amount >= 1e-4 else f"${amount:.1e}"


def format_count(count: float | None) -> str:
    """``950``, ``12.3 k``, ``4.56 M``, ``7.8 B``: three significant digits."""
    if count is None or math.isnan(count):
        return "—"
    for scale, suffix in ((1e9, " B"), (1e6, " M"), (1e3, " k")):
        if abs(count) >= scale:
            return f"{count / scale:.3g}{suffix}"
    return f"{count:.3g}"


def format_duration(months: float) -> str:
    """``2.5 months``, ``12 days``, ``5.2 hours``, ``under an hour`` (a month is 30.44 days)."""
    if months >= 1:
        return f"{months:.2g} months"
    days = months * 30.44
    if days >= 1:
        return f"{days:.2g} days"
    hours = days * 24
    return f"{hours:.2g} hours" if hours >= 1 else "under an hour"


def _number(value: float) -> str:
    return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"


# --- a job's breakdown ------------------------------------------------------------------------


@dataclass(frozen=True)
class CostFigure:
    """One computed figure with the formula and the inputs that produced it."""

    label: str
    value: float | None
    display: str
    formula: str
    inputs: str


@dataclass(frozen=True)
class VariantCost:
    """Serving cost of one variant on one instance at one batch size.

    ``cost_per_million`` is None (with ``note`` saying why) when the variant was
    not measured at ``batch_size``. ``break_even`` and ``monthly_saving`` are
    against the baseline and None for the baseline itself.
    """

    variant: str
    is_baseline: bool
    batch_size: int
    unit: str
    throughput_per_s: float | None
    cost_per_million: CostFigure | None
    monthly: CostFigure | None
    monthly_saving: CostFigure | None
    break_even: CostFigure | None
    hardware: HardwareCheck
    note: str = ""


@dataclass(frozen=True)
class CostBreakdown:
    instance: InstanceType
    batch_size: int
    unit: str
    requests_per_month: float | None
    worker_instance: InstanceType | None
    optimization: CostFigure | None
    variants: list[VariantCost] = field(default_factory=list)

    @property
    def hardware_warnings(self) -> list[str]:
        """Distinct mismatch reasons across variants (usually one: a job benchmarks on one machine)."""
        return list(dict.fromkeys(v.hardware.reason for v in self.variants if not v.hardware.matches))


def cost_figure(instance: InstanceType, throughput_per_s: float, unit: str) -> CostFigure:
    value = cost_per_million(instance.hourly_price, throughput_per_s)
    return CostFigure(
        label=f"cost per 1M {unit}",
        value=value,
        display=format_usd(value),
        formula=f"hourly price ÷ (throughput × 3600 s/h) × 1,000,000 {unit}",
        inputs=(
            f"{format_usd(instance.hourly_price)}/h ÷ ({_number(throughput_per_s)} {unit}/s × 3600) × 1,000,000"
            f" = {format_usd(value)}"
        ),
    )


def optimization_figure(wall_seconds: float, worker: InstanceType) -> CostFigure:
    value = optimization_cost(wall_seconds, worker.hourly_price)
    return CostFigure(
        label="optimization job",
        value=value,
        display=format_usd(value),
        formula="wall time ÷ 3600 s/h × worker's hourly price",
        inputs=(
            f"{_number(wall_seconds)} s ÷ 3600 × {format_usd(worker.hourly_price)}/h ({worker.name})"
            f" = {format_usd(value)}"
        ),
    )


def monthly_figure(requests_per_month: float, per_million: CostFigure, unit: str) -> CostFigure:
    assert per_million.value is not None
    value = monthly_cost(requests_per_month, per_million.value)
    return CostFigure(
        label="monthly cost",
        value=value,
        display=format_usd(value),
        formula=f"{unit} per month ÷ 1,000,000 × cost per 1M {unit}",
        inputs=f"{format_count(requests_per_month)} ÷ 1,000,000 × {per_million.display} = {format_usd(value)}",
    )


def break_even_figure(
    baseline: CostFigure, candidate: CostFigure, optimization: CostFigure, unit: str, per_month: float | None
) -> CostFigure:
    assert baseline.value is not None and candidate.value is not None and optimization.value is not None
    value = break_even_requests(baseline.value, candidate.value, optimization.value)
    if value is None:
        display = "never (not cheaper than the baseline)"
    else:
        display = f"{format_count(value)} {unit}"
        if per_month:
            display += f" (≈ {format_duration(value / per_month)} at {format_count(per_month)}/month)"
    return CostFigure(
        label="break-even volume",
        value=value,
        display=display,
        formula=f"optimization cost ÷ (baseline − this variant's cost per 1M {unit}) × 1,000,000",
        inputs=(
            f"{optimization.display} ÷ ({baseline.display} − {candidate.display}) × 1,000,000 = {display}"
            if value is not None
            else f"{candidate.display} per 1M ≥ baseline's {baseline.display} per 1M: it never pays back"
        ),
    )


def _throughput(variant: VariantReport, batch_size: int) -> float | None:
    stats = variant.benchmark.get(str(batch_size))
    return stats.throughput_per_s if stats is not None and stats.throughput_per_s > 0 else None


def cost_breakdown(
    report: Report,
    instance: InstanceType,
    *,
    batch_size: int,
    requests_per_month: float | None = None,
    optimization_seconds: float | None = None,
    worker_instance: InstanceType | None = None,
) -> CostBreakdown:
    """Every variant's cost on ``instance`` at ``batch_size``, with formulas and inputs.

    The optimization cost needs ``optimization_seconds`` and ``worker_instance``;
    break-even volumes need it as well and a baseline measured at ``batch_size``.
    """
    unit = unit_for_task(report.task)
    optimization = (
        optimization_figure(optimization_seconds, worker_instance)
        if optimization_seconds is not None and worker_instance is not None
        else None
    )
    rows: list[VariantCost] = []
    baseline_figure: CostFigure | None = None
    for index, variant in enumerate(report.variants):
        throughput = _throughput(variant, batch_size)
        device = variant.benchmark_info.device if variant.benchmark_info else None
        hardware = hardware_check(device, instance)
        if throughput is None:
            rows.append(
                VariantCost(
                    variant.name, index == 0, batch_size, unit, None, None, None, None, None, hardware,
                    note=f"not measured at batch {batch_size}",
                )
            )  # fmt: skip
            continue
        per_million = cost_figure(instance, throughput, unit)
        if index == 0:
            baseline_figure = per_million
        monthly = monthly_figure(requests_per_month, per_million, unit) if requests_per_month else None
        saving = break_even = None
        if index > 0 and baseline_figure is not None:
            if optimization is not None:
                break_even = break_even_figure(baseline_figure, per_million, optimization, unit, requests_per_month)
            if monthly is not None:
                assert baseline_figure.value is not None and monthly.value is not None
                baseline_monthly = monthly_cost(requests_per_month or 0, baseline_figure.value)
                value = baseline_monthly - monthly.value
                saving = CostFigure(
                    label="monthly saving",
                    value=value,
                    display=format_usd(value) if value >= 0 else f"{format_usd(value)} (costs more)",
                    formula="baseline's monthly cost − this variant's monthly cost",
                    inputs=f"{format_usd(baseline_monthly)} − {monthly.display}",
                )
        rows.append(
            VariantCost(
                variant.name, index == 0, batch_size, unit, throughput, per_million, monthly, saving, break_even,
                hardware,
            )
        )  # fmt: skip
    return CostBreakdown(instance, batch_size, unit, requests_per_month, worker_instance, optimization, rows)


def measured_batch_sizes(report: Report) -> list[int]:
    """Batch sizes at which at least one variant was benchmarked, ascending."""
    return sorted({int(batch) for variant in report.variants for batch in variant.benchmark})


def matching_instances(report: Report, catalogue: Sequence[InstanceType]) -> list[InstanceType]:
    """Instances whose device matches the device the report's baseline was benchmarked on."""
    if not report.variants or report.variants[0].benchmark_info is None:
        return []
    device = report.variants[0].benchmark_info.device
    return [instance for instance in catalogue if hardware_check(device, instance).matches]
