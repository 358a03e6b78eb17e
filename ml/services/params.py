"""The JSON parameter checks of the ml services a job runs, one per service: snapshot options
(``snapshots.build_snapshot``), a training config (``training.train_model``), an evaluation
(``evaluation.evaluate_model``) and a batch prediction (``inference.predict_movies``).

Kept apart from the services themselves so that a web process validates a job without
loading PyTorch (the services import the engine). Each ``*_param_errors(params, errors)``
cleans ``params`` in place and names every bad field (``base.params``); workers' job kinds
table uses them.
"""

from __future__ import annotations

from django.conf import settings

from base.params import id_list_field, int_field, must_exist
from ml.models import DatasetSnapshot, ModelVersion


def snapshot_param_errors(params: dict, errors: dict) -> None:
    """Check ``build_snapshot`` options given as JSON (a job's parameters); see ``base.params``."""
    int_field(params, "seed", errors, minimum=0)
    int_field(params, "min_genre_count", errors, minimum=1)
    fractions = params.get("fractions")
    if fractions is not None and (
        not isinstance(fractions, list)
        or len(fractions) != 3
        or not all(isinstance(f, (int, float)) and not isinstance(f, bool) and f >= 0 for f in fractions)
    ):
        errors["fractions"] = "Must be three non-negative numbers: train, validation, test."
    if "keep_rare_genres" in params and not isinstance(params["keep_rare_genres"], bool):
        errors["keep_rare_genres"] = "Must be true or false."


def config_errors(params: dict, errors: dict, *, required: bool) -> None:
    """Check ``params["config"]``: a model config object or a preset name the engine knows.

    Left out (and not ``required``), it becomes the recommended preset
    (``ml.engine.registry.RECOMMENDED_PRESET``), written into ``params`` so the job records it.
    """
    from ml.engine.registry import RECOMMENDED_PRESET, get_config  # pure config code, no torch

    config = params.get("config")
    if config is None or config == "":
        if required:
            errors["config"] = "This field is required: a model config (object) or a preset name (string)."
        else:
            params["config"] = RECOMMENDED_PRESET
        return
    if not isinstance(config, (dict, str)) or (isinstance(config, str) and not config.strip()):
        errors["config"] = "Must be a model config object or a preset name."
        return
    try:
        model_config = get_config(config)
    except (ValueError, TypeError) as exc:  # unknown preset, bad field
        errors["config"] = str(exc)
        return
    for name in ("text_model_path", "image_model_path"):
        value = getattr(model_config, name)
        if value and not _under_encoder_roots(value):
            errors["config"] = (
                f"{name} {value} is outside the local encoder folders (GENREWEB_ENCODER_ROOTS: "
                f"{':'.join(map(str, settings.GENREWEB_ENCODER_ROOTS)) or 'none configured'})"
            )


def _under_encoder_roots(value: str) -> bool:
    from pathlib import Path

    resolved = Path(value).expanduser().resolve()
    return any(resolved == root or resolved.is_relative_to(root) for root in settings.GENREWEB_ENCODER_ROOTS)


def train_param_errors(params: dict, errors: dict) -> None:
    """Check ``train_model`` arguments given as JSON: ``snapshot_id`` and ``config`` (default:
    the recommended preset)."""
    snapshot_id = int_field(params, "snapshot_id", errors, required=True, minimum=1)
    must_exist(DatasetSnapshot, snapshot_id, "snapshot_id", errors)
    config_errors(params, errors, required=False)


def evaluate_param_errors(params: dict, errors: dict) -> None:
    """Check ``evaluate_model`` arguments given as JSON: ``model_version_id``, optional ``snapshot_id``."""
    version_id = int_field(params, "model_version_id", errors, required=True, minimum=1)
    must_exist(ModelVersion, version_id, "model_version_id", errors)
    snapshot_id = int_field(params, "snapshot_id", errors, minimum=1)
    must_exist(DatasetSnapshot, snapshot_id, "snapshot_id", errors)


def predict_param_errors(params: dict, errors: dict) -> None:
    """Check a batch prediction's JSON arguments: ``model_version_id``, optional ``movie_ids``."""
    version_id = int_field(params, "model_version_id", errors, required=True, minimum=1)
    must_exist(ModelVersion, version_id, "model_version_id", errors)
    id_list_field(params, "movie_ids", errors)
