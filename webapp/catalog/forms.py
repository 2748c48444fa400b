from __future__ import annotations

from django import forms

from webapp.accounts.services import teams_of


class TeamScopedForm(forms.Form):
    """A form whose ``team`` choices are the requesting user's teams."""

    team = forms.ModelChoiceField(queryset=None, empty_label=None)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = teams_of(user)


class ModelUploadForm(TeamScopedForm):
    name = forms.CharField(max_length=200)
    file = forms.FileField(
        label="Model folder (.zip)",
        help_text="A Hugging Face model folder saved with save_pretrained (safetensors weights), zipped. "
        "Needs config.json and *.safetensors; pickle weights and custom code are refused.",
        widget=forms.ClearableFileInput(attrs={"accept": ".zip,application/zip"}),
    )


class DatasetUploadForm(TeamScopedForm):
    name = forms.CharField(max_length=200)
    file = forms.FileField(
        label="Dataset (.jsonl)",
        help_text='One JSON object per line: {"text": ...} or {"query": ..., "passage": ...}.',
        widget=forms.ClearableFileInput(attrs={"accept": ".jsonl,.json,text/plain"}),
    )
