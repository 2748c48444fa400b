"""Who may edit prices, which prices apply to a job, and the cost of a job's variants."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import QuerySet

from optimizers import cost
from optimizers.report import Report
from webapp.accounts.models import Membership, Team
from webapp.costs.models import InstanceType


def admin_teams(user) -> QuerySet[Team]:
    """Teams in which ``user`` has the ``admin`` role."""
    if not getattr(user, "is_authenticated", False):
        return Team.objects.none()
    return Team.objects.filter(memberships__user=user, memberships__role=Membership.Role.ADMIN).order_by("name")


def can_edit(user, instance: InstanceType) -> bool:
    """Staff edit global rows; a team's admins edit the team's rows. Nobody else edits anything."""
    if instance.team_id is None:
        return bool(getattr(user, "is_staff", False))
    return admin_teams(user).filter(pk=instance.team_id).exists()


def can_add(user) -> bool:
    return bool(getattr(user, "is_staff", False)) or admin_teams(user).exists()


def instances_for(teams: Iterable[Team]) -> list[InstanceType]:
    """The price rows that apply to jobs of ``teams``: global ones and those teams' own."""
    return list(InstanceType.objects.for_teams(list(teams)).select_related("team"))


def default_instance(instances: list[InstanceType], report: Report | None) -> InstanceType | None:
    """The row to price on when the user chose none.

    The cheapest whose device matches the baseline's benchmark device (so the
    figure rests on the hardware it describes), else the cheapest CPU row, else
    the first row.
    """
    if not instances:
        return None
    by_price = sorted(instances, key=lambda row: (row.hourly_price, row.name))
    if report is not None and report.variants and report.variants[0].benchmark_info is not None:
        device = report.variants[0].benchmark_info.device
        for row in by_price:
            if cost.hardware_check(device, row.as_instance()).matches:
                return row
    return next((row for row in by_price if row.kind == InstanceType.Kind.CPU), by_price[0])


def default_worker_instance(instances: list[InstanceType]) -> InstanceType | None:
    """The worker's instance when the user chose none: the cheapest CPU row (jobs run on the ``cpu`` queue)."""
    cpus = sorted(
        (row for row in instances if row.kind == InstanceType.Kind.CPU), key=lambda r: (r.hourly_price, r.name)
    )
    return cpus[0] if cpus else (instances[0] if instances else None)


@dataclass
class CostChoice:
    """What a cost figure is computed with (the panel form's cleaned values or the defaults)."""

    instance: InstanceType
    batch_size: int
    requests_per_month: float | None
    worker_instance: InstanceType | None


def breakdown_for(report: Report, choice: CostChoice, optimization_seconds: float | None) -> cost.CostBreakdown:
    return cost.cost_breakdown(
        report,
        choice.instance.as_instance(),
        batch_size=choice.batch_size,
        requests_per_month=choice.requests_per_month,
        optimization_seconds=optimization_seconds,
        worker_instance=choice.worker_instance.as_instance() if choice.worker_instance else None,
    )
