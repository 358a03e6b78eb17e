"""A job's result as rows a person reads: what it made (with links to the records) and its
counts, instead of the raw dict the task stored (which stays on the page, folded)."""

from __future__ import annotations

from django.apps import apps
from django.urls import NoReverseMatch, reverse

# Result keys that name a record, and how to link it:
# (label, model, URL name, staff-only admin page).
RECORD_KEYS = {
    "import_run_id": ("Import run", "catalog.ImportRun", "admin:catalog_importrun_change", True),
    "snapshot_id": ("Dataset snapshot", "ml.DatasetSnapshot", "admin:ml_datasetsnapshot_change", True),
    "model_version_id": ("Model version", "ml.ModelVersion", "ml:model", False),
    "predict_job_id": ("Batch-predict job", "workers.Job", "workers:job", False),
    "change_set_id": ("Change set", "catalog.ChangeSet", "catalog:change-set", False),
}
# Records inside a result, as workers.lifecycle.jsonable writes them ({"id", "model", "str", ...}).
RECORD_MODELS = {
    "catalog.ImportRun": ("admin:catalog_importrun_change", True),
    "ml.DatasetSnapshot": ("admin:ml_datasetsnapshot_change", True),
    "ml.TrainingRun": ("admin:ml_trainingrun_change", True),
    "ml.ModelVersion": ("ml:model", False),
}
MAX_ROWS = 40


def _label(key: str) -> str:
    return key.replace("_", " ").strip().capitalize()


def _link(url_name: str, pk, staff_only: bool, user) -> str | None:
    if staff_only and not (user is not None and user.is_staff):
        return None
    try:
        return reverse(url_name, args=[pk])
    except NoReverseMatch:
        return None


def _value(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list):
        if not value:
            return "none"
        if all(isinstance(v, (str, int, float)) for v in value) and len(value) <= 8:
            return ", ".join(_value(v) for v in value)
        return f"{len(value)} item{'s' if len(value) != 1 else ''}"
    return str(value)


def _rows(result: dict, user, prefix: str = "") -> list[dict]:
    rows: list[dict] = []
    for key, value in result.items():
        label = f"{prefix}{_label(key)}"
        if key in RECORD_KEYS and isinstance(value, int):
            name, model, url_name, staff_only = RECORD_KEYS[key]
            record = apps.get_model(model).objects.filter(pk=value).first()
            rows.append(
                {
                    "label": f"{prefix}{name}",
                    "value": f"#{value} {record}" if record else f"#{value} (deleted)",
                    "url": _link(url_name, value, staff_only, user) if record else None,
                }
            )
            if key == "model_version_id" and not prefix:
                rows.append({"label": "Its predictions", "value": "list (API)", "url": _predictions_url(value)})
        elif isinstance(value, dict) and "model" in value and "id" in value:  # a record
            url_name, staff_only = RECORD_MODELS.get(value["model"], (None, False))
            url = _link(url_name, value["id"], staff_only, user) if url_name else None
            if url is None and value.get("model_version_id"):  # e.g. an evaluation: its model's report
                url = _link("ml:model", value["model_version_id"], False, user)
            rows.append({"label": label, "value": value.get("str") or f"#{value['id']}", "url": url})
        elif isinstance(value, dict):
            if not prefix:  # one level deep, e.g. a preprocess summary or a child job's counts
                rows.extend(_rows(value, user, prefix=f"{label} · "))
            else:
                rows.append({"label": label, "value": f"{len(value)} entries", "url": None})
        elif value is None or value == "":
            continue
        else:
            rows.append({"label": label, "value": _value(value), "url": None})
    return rows


def _predictions_url(model_version_id: int) -> str | None:
    try:
        return f"{reverse('prediction-list')}?model_version={model_version_id}"
    except NoReverseMatch:
        return None


def result_summary(result: dict | None, user=None) -> list[dict]:
    """[{"label", "value", "url" or None}] for a job's stored result; admin links only for staff."""
    if not isinstance(result, dict):
        return []
    return _rows(result, user)[:MAX_ROWS]
