"""Inference: cached predictors per process, bulk idempotent Prediction upserts, ad-hoc predictions."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from django.conf import settings
from django.db import transaction

from base.progress import Progress, report
from catalog.models import Movie, MovieGenre
from ml.engine.contracts import Example
from ml.models import ModelVersion, Prediction

from .data import engine_image_limits, movie_examples
from .embeddings import embedding_store
from .registry import local_artifact_dir, require_production_version

logger = logging.getLogger(__name__)

# How many loaded models a process keeps; a model is a few MB to a few hundred MB.
PREDICTOR_CACHE_SIZE = getattr(settings, "GENREWEB_ML_PREDICTOR_CACHE_SIZE", 2)
UPDATE_FIELDS = [
    "scores",
    "predicted",
    "top_genre",
    "top_score",
    "uncertainty",
    "disagrees",
    "disagreement",
    "suggested_add",
    "suggested_remove",
    "labels_at_prediction",
    "inputs",
    "updated_at",
]

_predictors: OrderedDict[int, object] = OrderedDict()
_predictors_lock = threading.Lock()


def get_predictor(model_version_id: int):
    """The loaded ``TrainedModel`` of a model version, loaded once per process and cached.

    The engine picks CUDA when present. The artifact's checksum is verified on load.
    """
    # Keyed by id and artifact checksum: a version's artifact never changes, and an id that
    # comes back (a deleted row, a rolled-back test) can never serve another model.
    checksum = ModelVersion.objects.filter(pk=model_version_id).values_list("checksum", flat=True).first()
    if checksum is None:
        raise ModelVersion.DoesNotExist(f"model version {model_version_id} does not exist")
    key = (model_version_id, checksum)
    with _predictors_lock:
        model = _predictors.get(key)
        if model is not None:
            _predictors.move_to_end(key)
            return model
        from ml.engine.artifact import load_model  # torch import only when a model is needed

        version = ModelVersion.objects.get(pk=model_version_id)
        # Frozen features come from the shared embedding store first: a warm store runs no encoder.
        model = load_model(
            str(local_artifact_dir(version)),
            device=None,
            image_limits=engine_image_limits(),
            store=embedding_store(),
        )
        _predictors[key] = model
        while len(_predictors) > max(1, PREDICTOR_CACHE_SIZE):
            _predictors.popitem(last=False)
        logger.info("loaded model version %s on %s", model_version_id, getattr(model, "device", "?"))
        return model


def clear_predictor_cache() -> None:
    with _predictors_lock:
        _predictors.clear()


def _uncertainty(probs: np.ndarray, thresholds: np.ndarray) -> float:
    """1 when some genre's score sits exactly on its threshold, 0 when all are at 0 or 1."""
    span = np.where(probs < thresholds, thresholds, 1.0 - thresholds)
    closeness = 1.0 - np.abs(probs - thresholds) / np.maximum(span, 1e-6)
    return float(np.clip(closeness, 0.0, 1.0).max()) if len(probs) else 0.0


def prediction_fields(
    genres: Sequence[str], thresholds: np.ndarray, probs: np.ndarray, decisions: np.ndarray, labels: Sequence[str]
) -> dict:
    """The stored fields of one Prediction, from one row of scores and decisions.

    The comparison with ``labels`` only considers genres the model knows.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    order = np.argsort(-probs, kind="stable")
    predicted = [genres[j] for j in order if decisions[j]]
    known_labels = sorted(set(labels) & set(genres))
    index = {g: j for j, g in enumerate(genres)}
    add = sorted(set(predicted) - set(known_labels), key=lambda g: -probs[index[g]])
    remove = sorted(set(known_labels) - set(predicted), key=lambda g: probs[index[g]])
    # How far past its threshold the most confident disagreeing genre is (0..1).
    confidence = [(probs[index[g]] - thresholds[index[g]]) / max(1 - thresholds[index[g]], 1e-6) for g in add]
    confidence += [(thresholds[index[g]] - probs[index[g]]) / max(thresholds[index[g]], 1e-6) for g in remove]
    top = int(order[0]) if len(order) else None
    return {
        "scores": {g: round(float(p), 6) for g, p in zip(genres, probs, strict=False)},
        "predicted": predicted,
        "top_genre": genres[top] if top is not None else "",
        "top_score": float(probs[top]) if top is not None else 0.0,
        "uncertainty": _uncertainty(probs, thresholds),
        "disagrees": bool(add or remove),
        "disagreement": float(np.clip(max(confidence), 0.0, 1.0)) if confidence else 0.0,
        "suggested_add": add,
        "suggested_remove": remove,
        "labels_at_prediction": known_labels,
    }


def _current_labels(movie_ids: Sequence[int]) -> dict[int, list[str]]:
    labels: dict[int, list[str]] = {movie_id: [] for movie_id in movie_ids}
    for movie_id, name in MovieGenre.objects.filter(movie_id__in=movie_ids).values_list("movie_id", "genre__name"):
        labels[movie_id].append(name)
    return labels


def _upsert(version: ModelVersion, model, examples: list[Example], probs, decisions) -> int:
    """Upsert the batch's predictions; each row's fields use the thresholds of the input set
    the model had for that movie (``model.last_input_sets``, from the ``predict`` just run)."""
    ids = [int(e.key) for e in examples]
    labels = _current_labels(ids)
    genres = list(model.genres)
    sets = list(model.last_input_sets)
    rows = [
        Prediction(
            movie_id=movie_id,
            model_version=version,
            inputs=sets[i],
            **prediction_fields(genres, model.thresholds_for(sets[i]), probs[i], decisions[i], labels[movie_id]),
        )
        for i, movie_id in enumerate(ids)
    ]
    # One lock order for every writer: a retried shard upserting the same movies at the
    # same time as the original cannot deadlock with it.
    rows.sort(key=lambda row: row.movie_id)
    with transaction.atomic():
        Prediction.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["movie", "model_version"], update_fields=UPDATE_FIELDS
        )
    return len(rows)


def movies_to_predict(movie_ids: Sequence[int] | None = None) -> tuple[list[int], int]:
    """Which movies a batch prediction covers: ``movie_ids`` that exist (all movies when None),
    in id order, and how many requested ids name no movie."""
    movies = Movie.objects.order_by("pk")
    if movie_ids:
        movies = movies.filter(pk__in=movie_ids)
    found = list(movies.values_list("pk", flat=True))
    return found, (len(set(movie_ids)) - len(found) if movie_ids else 0)


def predict_movies(
    model_version_id: int, movie_ids: Sequence[int], *, batch_size: int = 64, progress: Progress | None = None
) -> int:
    """Predict and upsert one Prediction row per (movie, model version); returns rows written.

    Each batch commits on its own, so a cancelled or crashed run keeps finished batches
    and a re-run overwrites rather than duplicates. Ids of deleted movies are skipped.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    version = ModelVersion.objects.get(pk=model_version_id)
    model = get_predictor(model_version_id)
    movie_ids = list(dict.fromkeys(int(m) for m in movie_ids))
    written = 0
    report(progress, f"Predicting {len(movie_ids)} movies with model version {version.pk}", 0.0)
    for start in range(0, len(movie_ids), batch_size):
        examples = movie_examples(movie_ids[start : start + batch_size])
        if examples:
            probs, decisions = model.predict(examples)
            written += _upsert(version, model, examples, probs, decisions)
        done = min(start + batch_size, len(movie_ids))
        report(progress, f"Predicted {done} of {len(movie_ids)} movies", done / max(len(movie_ids), 1))
    return written


def refresh_disagreements(movie_ids: Sequence[int]) -> int:
    """Recompute the disagreement fields of existing predictions after labels changed.

    Call after relabelling so the stored comparison reflects the new labels without
    re-running the model; each prediction is judged against the thresholds of the input
    set it was made with. Returns the number of prediction rows updated.
    """
    movie_ids = list(movie_ids)
    labels = _current_labels(movie_ids)
    predictions = list(Prediction.objects.filter(movie_id__in=movie_ids).select_related("model_version"))
    for prediction in predictions:
        genres = list(prediction.model_version.genres)
        thresholds = np.asarray(prediction.model_version.thresholds_for(prediction.inputs), dtype=np.float64)
        probs = np.array([prediction.scores.get(g, 0.0) for g in genres])
        decided = set(prediction.predicted)
        decisions = np.array([g in decided for g in genres])
        for name, value in prediction_fields(genres, thresholds, probs, decisions, labels[prediction.movie_id]).items():
            setattr(prediction, name, value)
    with transaction.atomic():
        Prediction.objects.bulk_update(
            predictions, ["disagrees", "disagreement", "suggested_add", "suggested_remove", "labels_at_prediction"]
        )
    return len(predictions)


def _poster_derivative(poster: bytes) -> bytes:
    """Decode an uploaded poster safely and resize it the way training posters were."""
    from catalog.images import decode_image
    from catalog.poster_processing import build_derivative, derivative_mode

    decoded = decode_image(poster)  # raises catalog.images.ImageRejected with a readable reason
    mode = derivative_mode(
        original_mode=decoded.mode, is_grayscale=decoded.is_grayscale, policy=settings.GENREWEB_GRAYSCALE_POLICY
    )
    return build_derivative(decoded.image, size=settings.GENREWEB_POSTER_DERIVATIVE_SIZE, mode=mode)


def predict_raw(
    overview: str,
    poster: bytes | None,
    model_version: ModelVersion | int | None = None,
    *,
    title: str = "",
    year: int | None = None,
) -> dict:
    """Genres for an overview and/or poster that are not in the catalog.

    Uses the production model unless a version (or its id) is given. A poster that is
    not a usable image raises ``catalog.images.ImageRejected``. The result says which
    inputs the model used (``used_text``, ``used_poster``, ``inputs``: "all", or "text" /
    "image" when a fused model had only that one) and which given inputs it cannot read
    (``ignored``, e.g. a poster sent to a text-only model).
    """
    from ml.engine.inputs import compose_text

    overview = (overview or "").strip()
    title = (title or "").strip()
    if not overview and not poster and not title:
        raise ValueError("give an overview, a poster, or both")
    if model_version is None:
        version = require_production_version()
    elif isinstance(model_version, ModelVersion):
        version = model_version
    else:
        version = ModelVersion.objects.get(pk=model_version)
    image = _poster_derivative(poster) if poster else None
    model = get_predictor(version.pk)
    example = Example(key="raw", text=overview, image=image, title=title, year=year)
    probs, decisions = model.predict([example])
    inputs = model.input_sets([example])[0]
    config = model.config
    used_text = config.has_text and bool(compose_text(example, config.text_fields).strip())
    used_poster = config.has_image and image is not None
    ignored = [
        name
        for name, given, read in (
            ("overview", bool(overview), config.has_text and "overview" in config.text_fields),
            ("title", bool(title), config.has_text and "title" in config.text_fields),
            ("year", year is not None, config.has_text and "year" in config.text_fields),
            ("poster", image is not None, config.has_image),
        )
        if given and not read
    ]
    genres = list(model.genres)
    thresholds = np.asarray(model.thresholds_for(inputs), dtype=np.float64)
    fields = prediction_fields(genres, thresholds, probs[0], decisions[0], [])
    ranked = sorted(genres, key=lambda g: -fields["scores"][g])
    return {
        "model_version": version.pk,
        "model_name": str(version),
        "genres": fields["predicted"],
        "scores": [
            {
                "genre": g,
                "score": fields["scores"][g],
                "threshold": float(thresholds[genres.index(g)]),
                "predicted": g in fields["predicted"],
            }
            for g in ranked
        ],
        "uncertainty": fields["uncertainty"],
        "used_text": used_text,
        "used_poster": used_poster,
        "inputs": inputs,
        "ignored": ignored,
        "calibrated": bool(getattr(model, "calibration", None))
        and any(c.get("method", "none") != "none" for c in model.calibration.values()),
    }
