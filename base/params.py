"""Checks for job and service parameters (JSON objects from forms, the API and commands).

Each helper cleans ``params[name]`` in place and records a message in ``errors[name]`` when the
value does not fit, so a service's ``*_param_errors(params, errors)`` reads as a list of fields
and every bad field is named at once.
"""

from __future__ import annotations


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
