from __future__ import annotations

from django import forms

from base.events import EVENTS, event_choices

from .models import Endpoint


class EndpointForm(forms.ModelForm):
    """The page's and the admin's form: URL checked by the model's validator (webhooks.targets)."""

    url = forms.URLField(max_length=1000, assume_scheme="https", label="URL")
    events = forms.MultipleChoiceField(
        choices=event_choices, widget=forms.CheckboxSelectMultiple, help_text="the events this URL receives"
    )

    class Meta:
        model = Endpoint
        fields = ["name", "url", "events", "active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["events"].help_text = "; ".join(f"{e.label}: {e.help}" for e in EVENTS.values())

    def clean_events(self):
        return sorted(set(self.cleaned_data["events"]))
