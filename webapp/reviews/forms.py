from django import forms

from webapp.reviews.models import AuditEntry


class AuditFilterForm(forms.Form):
    """Filters of the team audit page (GET); every field is optional."""

    team = forms.ChoiceField(required=False)
    action = forms.ChoiceField(required=False, choices=[("", "any action"), *AuditEntry.Action.choices])
    user = forms.CharField(required=False, max_length=150, label="User")
    job = forms.IntegerField(required=False, min_value=1, label="Job #")

    def __init__(self, *args, teams=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].choices = [("", "all my teams"), *[(team.name, team.name) for team in teams]]
