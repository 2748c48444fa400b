"""Forms: an instance-type row (admins), the cost panel's choices and the comparison's options."""

from __future__ import annotations

from django import forms

from optimizers.report import Report
from webapp.costs import services
from webapp.costs.models import InstanceType

MAX_REQUESTS_PER_MONTH = 1e15


class InstanceTypeForm(forms.ModelForm):
    """Add or edit a price row. New rows go to a team the user administers (staff may leave it global)."""

    class Meta:
        model = InstanceType
        fields = ["team", "name", "hourly_price", "device", "kind", "notes", "price_date"]
        widgets = {"price_date": forms.DateInput(attrs={"type": "date"})}

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        team = self.fields["team"]
        team.queryset = services.admin_teams(user)
        staff = bool(getattr(user, "is_staff", False))
        team.required = not staff
        team.empty_label = "— global (all teams; staff only) —" if staff else None
        if self.instance.pk:
            # A row stays where it is: moving prices between teams would hide them from one.
            team.disabled = True
            team.required = False
            team.help_text = "a row cannot move to another team"


class CostForm(forms.Form):
    """The cost panel's GET form (prefix ``cost``): instance, batch size, traffic, worker instance."""

    instance = forms.ModelChoiceField(queryset=InstanceType.objects.none(), empty_label=None, label="Serve on")
    batch = forms.TypedChoiceField(coerce=int, label="Batch size")
    traffic = forms.FloatField(
        required=False,
        min_value=0,
        max_value=MAX_REQUESTS_PER_MONTH,
        label="Traffic per month",
        widget=forms.NumberInput(attrs={"placeholder": "e.g. 10000000", "step": "any"}),
    )
    worker = forms.ModelChoiceField(
        queryset=InstanceType.objects.none(), required=False, empty_label=None, label="Worker ran on"
    )

    def __init__(self, data, *, instances, batch_sizes: list[int], report: Report | None, unit: str):
        bound = data is not None and any(key.startswith("cost-") for key in data)
        super().__init__(data if bound else None, prefix="cost")
        ids = [row.pk for row in instances]
        self.fields["instance"].queryset = InstanceType.objects.filter(pk__in=ids)
        self.fields["worker"].queryset = InstanceType.objects.filter(pk__in=ids)
        self.fields["batch"].choices = [(b, str(b)) for b in batch_sizes]
        self.fields["traffic"].label = f"{unit.capitalize()} per month"
        self.defaults = services.CostChoice(
            instance=services.default_instance(instances, report),  # type: ignore[arg-type]
            batch_size=batch_sizes[-1] if batch_sizes else 1,
            requests_per_month=None,
            worker_instance=services.default_worker_instance(instances),
        )
        self.initial = {
            "instance": self.defaults.instance.pk if self.defaults.instance else None,
            "batch": self.defaults.batch_size,
            "worker": self.defaults.worker_instance.pk if self.defaults.worker_instance else None,
        }

    def choice(self) -> services.CostChoice | None:
        """The user's choice when the form is bound and valid, else the defaults (None without any price row)."""
        if self.defaults.instance is None:
            return None
        if not self.is_bound or not self.is_valid():
            return self.defaults
        data = self.cleaned_data
        return services.CostChoice(
            instance=data["instance"],
            batch_size=data["batch"],
            requests_per_month=data.get("traffic"),
            worker_instance=data.get("worker") or self.defaults.worker_instance,
        )
