"""The queue-job form, built from the kinds table: one section per kind, one field per parameter
its schema declares (``base.params.Param``: type, limits, default, help). A new kind's options
appear here with no form code; a kind without a schema gets one JSON object field.

The form only collects values: ``params()`` turns the chosen kind's fields into the JSON
parameters, and ``workers.jobs.enqueue`` validates them with the same schema as the API, so
every error comes back from one place and is shown next to its field (``add_param_errors``).
"""

from __future__ import annotations

import json

from django import forms

from base.params import Param

from . import kinds

SEPARATOR = "-"  # field name: "<kind>-<param>", nested "<kind>-<param>.<option>"


def field_name(kind: str, path: str) -> str:
    return f"{kind}{SEPARATOR}{path}"


def _flatten(params: list[Param], prefix: str = "", label: str = ""):
    """(dotted path, label, param) for every field, the options of an ``object`` parameter inlined."""
    for param in params:
        if param.type == "object":
            yield from _flatten(param.schema.fields(), f"{prefix}{param.name}.", f"{label}{param.name} ")
        else:
            yield f"{prefix}{param.name}", f"{label}{param.title}", param


def form_field(param: Param, label: str) -> forms.Field:
    """The widget for a parameter. Values stay text: the schema checks them (one set of rules
    and messages for the form and the API); limits only become the widget's min/max."""
    common = {"required": False, "label": label, "help_text": param.help}
    initial = param.initial()
    if param.type in ("int", "float"):
        attrs = {"step": "1" if param.type == "int" else "any"}
        attrs.update(
            {key: f"{value:g}" for key, value in (("min", param.minimum), ("max", param.maximum)) if value is not None}
        )
        return forms.CharField(initial=initial, widget=forms.NumberInput(attrs=attrs), **common)
    if param.type == "bool":
        return forms.BooleanField(initial=bool(initial), **common)
    if param.type in ("choice", "ref"):
        choices = param.choice_list()
        if param.type == "ref" and initial is not None and str(initial) not in {value for value, _ in choices}:
            from django.apps import apps  # a default older than the newest rows offered (the production model)

            row = apps.get_model(param.model).objects.filter(pk=initial).first()
            choices = [*choices, (str(initial), str(row))] if row else choices
        if param.type == "ref" or not param.required or initial is None:
            choices = [("", param.blank_label or "—"), *choices]
        return forms.ChoiceField(choices=choices, initial="" if initial is None else str(initial), **common)
    if param.type == "date":
        return forms.CharField(initial=initial, widget=forms.DateInput(attrs={"type": "date"}), **common)
    if param.type == "json":
        return forms.JSONField(initial=initial, widget=forms.Textarea(attrs={"rows": 3}), **common)
    if param.type == "ids":
        return forms.CharField(
            initial=initial, widget=forms.TextInput(attrs={"placeholder": "e.g. 12, 40, 41"}), **common
        )
    widget = forms.PasswordInput(render_value=True) if param.type == "secret" else None
    max_length = int(param.maximum) if param.type in ("text", "secret") and param.maximum else None
    return forms.CharField(initial=initial, max_length=max_length, widget=widget, strip=True, **common)


def _value(param: Param, value):
    """The form's cleaned value as the JSON parameter (None: leave the parameter out)."""
    if param.type == "bool":
        return bool(value)
    if value in (None, ""):
        return None
    if param.type == "ref":
        return int(value)
    if param.type == "ids":
        parts = value.replace(",", " ").split()
        return [int(part) for part in parts] if all(p.isdigit() for p in parts) else value  # else: the schema names it
    return value


class QueueJobForm(forms.Form):
    kind = forms.ChoiceField(choices=kinds.kind_choices)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = kinds.kind_choices()
        self.sections: list[dict] = []
        self._params: dict[str, tuple[str, str, Param | None]] = {}  # field name -> (kind, path, param)
        for kind in kinds.KINDS.values():
            schema = kind.schema()
            section = {"kind": kind.name, "label": kind.label, "description": kind.description, "fields": []}
            if schema is None:  # a kind that declares no parameters: its JSON object, checked by validate
                name = field_name(kind.name, "params")
                self.fields[name] = forms.JSONField(
                    required=False,
                    label="parameters (JSON object)",
                    initial={},
                    widget=forms.Textarea(attrs={"rows": 4}),
                    help_text=kind.description,
                )
                self._params[name] = (kind.name, "", None)
                section["fields"].append({"name": name})
            else:
                for path, label, param in _flatten(schema.fields()):
                    name = field_name(kind.name, path)
                    self.fields[name] = form_field(param, label)
                    self._params[name] = (kind.name, path, param)
                    entry = {"name": name, "required": param.required}
                    if param.when:
                        other, values = param.when
                        parent = path.rpartition(".")[0]
                        entry["when_field"] = field_name(kind.name, f"{parent}.{other}" if parent else other)
                        entry["when_values"] = json.dumps([str(v) for v in values])
                    section["fields"].append(entry)
            self.sections.append(section)

    def section_fields(self):
        """Sections with their bound fields, for the template."""
        return [
            {**section, "fields": [{**entry, "field": self[entry["name"]]} for entry in section["fields"]]}
            for section in self.sections
        ]

    def chosen(self) -> str | None:
        return self.data.get("kind") if self.is_bound else self.initial.get("kind")

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind")
        # Only the chosen kind's fields count: the others' values (and errors) are not sent.
        for name in list(self._errors or {}):
            if name in self._params and self._params[name][0] != kind:
                del self._errors[name]
        return cleaned

    def params(self) -> dict:
        """The chosen kind's parameters as workers.jobs takes them (empty fields left out)."""
        kind = self.cleaned_data["kind"]
        params: dict = {}
        for name, (owner, path, param) in self._params.items():
            if owner != kind:
                continue
            value = self.cleaned_data.get(name)
            if param is None:  # the JSON object of a kind without a schema
                return value if isinstance(value, dict) else ({} if value in (None, "") else value)
            value = _value(param, value)
            if value is None:
                continue
            *parents, leaf = path.split(".")
            target = params
            for parent in parents:
                target = target.setdefault(parent, {})
            target[leaf] = value
        return _drop_inapplicable(params, self._schema_fields(kind))

    def _schema_fields(self, kind: str) -> list[Param]:
        schema = kinds.get(kind).schema()
        return schema.fields() if schema is not None else []

    def add_param_errors(self, errors: dict[str, str]) -> None:
        """Show the schema's errors (``{"path": message}``) next to their fields."""
        kind = self.cleaned_data.get("kind")
        for path, message in errors.items():
            name = field_name(kind, path)
            if name in self.fields:
                self.add_error(name, message)
            elif field_name(kind, "params") in self.fields:  # a kind without a schema
                self.add_error(field_name(kind, "params"), f"{path}: {message}")
            else:
                self.add_error(None, f"{path}: {message}")


def _drop_inapplicable(params: dict, fields: list[Param]) -> dict:
    """Leave out what the other values make irrelevant (``when``), e.g. a path for a TMDB import."""
    for param in fields:
        if param.name in params and not param.applies(params):
            del params[param.name]
        elif param.type == "object" and isinstance(params.get(param.name), dict):
            params[param.name] = _drop_inapplicable(params[param.name], param.schema.fields())
    return params
