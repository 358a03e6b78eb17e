"""Checks for job and service parameters (JSON objects from forms, the API and commands).

Each helper cleans ``params[name]`` in place and records a message in ``errors[name]`` when the
value does not fit, so a service's ``*_param_errors(params, errors)`` reads as a list of fields
and every bad field is named at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def int_field(
    params: dict,
    name: str,
    errors: dict,
    *,
    required: bool = False,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int | None:
    if params.get(name) in (None, ""):
        if required:
            errors[name] = "This field is required."
        params.pop(name, None)
        return None
    value = params[name]
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().lstrip("-").isdigit():
        errors[name] = f"Must be a whole number, got {value!r}."
        return None
    value = int(value)
    if minimum is not None and value < minimum:
        errors[name] = f"Must be at least {minimum}."
    elif maximum is not None and value > maximum:
        errors[name] = f"Must be at most {maximum}."
    params[name] = value
    return value


def bool_field(params: dict, name: str, errors: dict) -> None:
    if name in params and not isinstance(params[name], bool):
        errors[name] = "Must be true or false."


def id_list_field(params: dict, name: str, errors: dict) -> list[int] | None:
    value = params.get(name)
    if value is None:
        params.pop(name, None)
        return None
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        errors[name] = "Must be a list of integer ids."
        return None
    if not value:
        errors[name] = "Must not be empty (leave it out to mean all movies)."
        return None
    params[name] = sorted(set(value))
    return params[name]


def must_exist(model, pk: int | None, name: str, errors: dict) -> None:
    """Record an error when ``pk`` (already checked as a number) names no ``model`` row."""
    if pk is None or name in errors:
        return
    if not model.objects.filter(pk=pk).exists():
        errors[name] = f"No {model._meta.verbose_name} with id {pk}."


def float_list_field(params: dict, name: str, errors: dict, *, length: int | None = None, minimum=None) -> None:
    value = params.get(name)
    if value is None:
        params.pop(name, None)
        return
    if isinstance(value, str):  # "0.7 0.15 0.15" or "0.7, 0.15, 0.15" from a form
        try:
            value = [float(part) for part in value.replace(",", " ").split()]
        except ValueError:
            errors[name] = f"Must be numbers separated by spaces, got {params[name]!r}."
            return
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        errors[name] = "Must be a list of numbers."
        return
    if length is not None and len(value) != length:
        errors[name] = f"Must be {length} numbers, got {len(value)}."
    elif minimum is not None and any(v < minimum for v in value):
        errors[name] = f"Every number must be at least {minimum}."
    else:
        params[name] = value


# --- declared parameters: one schema per service, read by validation and by the job form --------

TYPES = ("text", "secret", "int", "float", "bool", "choice", "date", "ids", "floats", "ref", "object", "json")


ACRONYMS = {"api": "API", "tmdb": "TMDB", "url": "URL", "id": "ID", "ids": "IDs", "imdb": "IMDb"}


def resolve(target):
    """A callable, or ``"module:name"`` imported when first needed (no import cycles, no torch)."""
    if target is None or callable(target) or not isinstance(target, str):
        return target
    import importlib

    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Param:
    """One parameter of a service (a job kind's options): its type, limits, default and help.

    ``validate`` below checks a JSON value against it; the queue-job form (workers.forms)
    builds its field from it, so a new kind's options appear in the form with no form code.

    - ``type``: one of TYPES. ``ref``: the id of a ``model`` row ("app_label.Model") that must
      exist (the form offers the newest rows). ``object``: a nested ``schema``. ``floats``: a
      list of ``length`` numbers. ``ids``: a list of integer ids. ``json``: any JSON object.
    - ``default``: what the form prefills (a value, or a callable run per form); the service's
      own default applies when the parameter is left out, so keep the two the same.
    - ``choices``: ((value, label), ...), or a callable / "module:function" returning them.
    - ``when``: (other param, values): the parameter is only taken when the other has one of
      those values (the form shows it only then; otherwise it is refused).
    - ``check``: "module:function" or callable ``(params, errors)`` replacing the type check
      (e.g. a model config: a preset name or an object).
    """

    name: str
    type: str = "text"
    label: str = ""
    help: str = ""
    default: Any = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: Any = ()
    model: str = ""
    length: int | None = None
    schema: ParamSchema | None = None
    when: tuple[str, tuple] | None = None
    check: Any = None
    blank_label: str = ""  # a select's empty choice, e.g. "— none —"

    def __post_init__(self):
        if self.type not in TYPES:
            raise ValueError(f"parameter {self.name}: unknown type {self.type!r}; one of {', '.join(TYPES)}")
        if self.type == "ref" and not self.model:
            raise ValueError(f"parameter {self.name}: a ref names its model ('app_label.Model')")
        if self.type == "object" and self.schema is None:
            raise ValueError(f"parameter {self.name}: an object has a schema")

    @property
    def title(self) -> str:
        if self.label:
            return self.label
        words = self.name.split("_")
        return " ".join(ACRONYMS.get(word, word) for word in words)

    def initial(self):
        return self.default() if callable(self.default) else self.default

    def choice_list(self) -> list[tuple[str, str]]:
        if self.type == "ref":
            from django.apps import apps

            model = apps.get_model(self.model)
            return [(str(row.pk), str(row)) for row in model.objects.all()[:100]]
        choices = resolve(self.choices)
        return list(choices() if callable(choices) else choices)

    def applies(self, params: dict) -> bool:
        if self.when is None:
            return True
        other, values = self.when
        return params.get(other) in values

    def validate(self, params: dict, errors: dict) -> None:
        """Clean ``params[self.name]`` in place, or record ``errors[self.name]``."""
        name = self.name
        if self.check is not None:
            resolve(self.check)(params, errors)
            return
        if params.get(name) in (None, ""):
            if self.required:
                errors[name] = "This field is required."
            params.pop(name, None)
            return
        if self.type in ("int", "ref"):
            value = int_field(params, name, errors, required=self.required, minimum=self.minimum, maximum=self.maximum)
            if self.type == "ref" and value is not None and name not in errors:
                from django.apps import apps

                must_exist(apps.get_model(self.model), value, name, errors)
        elif self.type == "float":
            value = params[name]
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    pass
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                errors[name] = f"Must be a number, got {params[name]!r}."
            elif self.minimum is not None and value < self.minimum:
                errors[name] = f"Must be at least {self.minimum}."
            elif self.maximum is not None and value > self.maximum:
                errors[name] = f"Must be at most {self.maximum}."
            else:
                params[name] = value
        elif self.type == "bool":
            bool_field(params, name, errors)
        elif self.type == "choice":
            allowed = [value for value, _ in self.choice_list()]
            if params[name] not in allowed:
                errors[name] = f"Must be one of {', '.join(map(str, allowed))}."
        elif self.type in ("text", "secret"):
            if not isinstance(params[name], str):
                errors[name] = "Must be text."
            elif self.maximum is not None and len(params[name]) > self.maximum:
                errors[name] = f"Must be at most {int(self.maximum)} characters."
        elif self.type == "date":
            import datetime

            try:
                datetime.date.fromisoformat(str(params[name]))
            except ValueError:
                errors[name] = f"Must be a date, YYYY-MM-DD, got {params[name]!r}."
        elif self.type == "ids":
            id_list_field(params, name, errors)
        elif self.type == "floats":
            float_list_field(params, name, errors, length=self.length, minimum=self.minimum)
        elif self.type == "object":
            if not isinstance(params[name], dict):
                errors[name] = "Must be an object of options."
                return
            nested: dict[str, str] = {}
            self.schema.clean(params[name], nested)
            errors.update({f"{name}.{key}": message for key, message in nested.items()})
        elif self.type == "json" and not isinstance(params[name], (dict, list)):
            errors[name] = "Must be a JSON object or list."


@dataclass(frozen=True)
class ParamSchema:
    """A service's parameters: each one checked by its ``Param``, then ``check(params, errors)``
    for what involves several (min <= max, a file that must exist). Parameters not declared are
    refused (deny by default). ``params`` may be a callable / "module:function" returning the
    list when it depends on a registry (the import sources)."""

    params: Any = ()
    check: Any = None
    strict: bool = True  # False: ``check`` refuses the undeclared ones itself (import sources)

    def fields(self) -> list[Param]:
        params = resolve(self.params)
        return list(params() if callable(params) else params)

    def clean(self, params: dict, errors: dict) -> None:
        fields = self.fields()
        known = {field.name: field for field in fields}
        for name in sorted(set(params) - set(known)) if self.strict else ():
            errors[name] = f"Unknown parameter {name}; known: {', '.join(known) or 'none'}."
        for field in fields:
            if field.name in params and not field.applies(params):
                other, values = field.when
                errors[field.name] = f"Only used when {other} is {' or '.join(map(str, values))}."
                continue
            if field.applies(params) and field.name not in errors:
                field.validate(params, errors)
        if self.check is not None and not errors:
            resolve(self.check)(params, errors)
