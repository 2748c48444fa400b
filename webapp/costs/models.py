"""The instance-type price list: global rows (seeded, staff-edited) and each team's own rows."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q, QuerySet

from optimizers import cost
from webapp.accounts.models import Team


class InstanceTypeQuerySet(models.QuerySet):
    def visible_to(self, user) -> QuerySet[InstanceType]:
        """Global rows and the rows of ``user``'s teams."""
        from webapp.accounts.services import teams_of

        return self.filter(Q(team__isnull=True) | Q(team__in=teams_of(user)))

    def for_teams(self, teams) -> QuerySet[InstanceType]:
        """Global rows and the rows of ``teams`` (the teams that own the jobs being priced)."""
        return self.filter(Q(team__isnull=True) | Q(team__in=teams))


class InstanceType(models.Model):
    """A machine one can rent, its hourly price and the device that would run the model.

    ``team`` null: a global row (the seed list), editable by staff only; else the
    team's own row, editable by the team's admins. ``device`` is compared with
    benchmark device strings (see ``optimizers.cost.hardware_check``).
    """

    class Kind(models.TextChoices):
        CPU = "cpu", "CPU"
        GPU = "gpu", "GPU"

    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="instance_types")
    name = models.CharField(max_length=100)
    hourly_price = models.DecimalField(
        "hourly price (USD)", max_digits=10, decimal_places=4, validators=[MinValueValidator(0)]
    )
    device = models.CharField(
        max_length=200,
        help_text="the CPU or GPU model as benchmarks name it, e.g. “NVIDIA L4”, “Intel Xeon Platinum 8488C”",
    )
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.CPU)
    notes = models.CharField(max_length=500, blank=True, help_text="where the price comes from, region, sizes")
    price_date = models.DateField(help_text="the date the price was read")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    updated_at = models.DateTimeField(auto_now=True)

    objects = InstanceTypeQuerySet.as_manager()

    class Meta:
        ordering = [models.F("team_id").asc(nulls_first=True), "kind", "hourly_price", "name"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="unique_team_instance_name"),
            models.UniqueConstraint(
                fields=["name"], condition=Q(team__isnull=True), name="unique_global_instance_name"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} (${self.price_display}/h)"

    @property
    def price_display(self) -> str:
        """The hourly price with at least two decimals and no trailing zeros beyond: ``0.18``, ``0.0525``."""
        text = f"{self.hourly_price.normalize():f}"
        whole, _, cents = text.partition(".")
        return f"{whole}.{cents.ljust(2, '0')}"

    @property
    def is_global(self) -> bool:
        return self.team_id is None

    def as_instance(self) -> cost.InstanceType:
        """The pure ``optimizers.cost.InstanceType`` the formulas take."""
        return cost.InstanceType(
            name=self.name,
            hourly_price=float(self.hourly_price),
            device=self.device,
            kind=self.kind,  # type: ignore[arg-type]
            notes=self.notes,
            price_date=self.price_date,
        )
