"""Review queues and the model-opinion filter: what pages and the API both ask of predictions.

One definition of "the model disagrees" / "the model is unsure" for the browse page, the
movies API, the predictions API and the review queues.
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, QuerySet

from catalog.models import LabelChange, LabelOrigin
from ml.models import Evaluation, ModelVersion, Prediction

# A prediction counts as "unsure" from this uncertainty on (1 = a genre sits exactly on its
# threshold, 0 = every genre far from it); the review queue ranks everything above it.
UNSURE_MIN = 0.8
QUEUES = {
    "disagrees": "Model disagrees with the label",
    "unsure": "Model unsure",
}
# The model-opinion filters a movie list accepts (?model=...): the queue names.
OPINIONS = tuple(QUEUES)


class UnknownQueue(ValueError):
    """Not one of QUEUES."""


def filter_movies_by_opinion(movies: QuerySet, opinion: str, version: ModelVersion | None) -> QuerySet:
    """Movies on which ``version`` holds ``opinion`` ("disagrees" or "unsure"); none without a
    version. An empty opinion filters nothing."""
    if not opinion:
        return movies
    if opinion not in OPINIONS:
        raise UnknownQueue(opinion)
    if version is None:
        return movies.none()
    if opinion == "disagrees":
        return movies.filter(predictions__model_version=version, predictions__disagrees=True)
    return movies.filter(predictions__model_version=version, predictions__uncertainty__gte=UNSURE_MIN)


def filter_predictions_by_opinion(predictions: QuerySet, opinion: str) -> QuerySet:
    """Predictions holding ``opinion``; an empty opinion filters nothing."""
    if not opinion:
        return predictions
    if opinion not in OPINIONS:
        raise UnknownQueue(opinion)
    if opinion == "disagrees":
        return predictions.filter(disagrees=True)
    return predictions.filter(uncertainty__gte=UNSURE_MIN)


def is_unsure(prediction: Prediction) -> bool:
    return prediction.uncertainty >= UNSURE_MIN


def queue_predictions(queue: str, version: ModelVersion) -> QuerySet:
    """Predictions of ``version`` in a review queue, best first, minus movies whose labels a
    person changed after the prediction was made (those have been reviewed)."""
    predictions = filter_predictions_by_opinion(Prediction.objects.filter(model_version=version), queue)
    if queue == "disagrees":
        predictions = predictions.order_by("-disagreement", "id")
    else:
        predictions = predictions.order_by("-uncertainty", "id")
    reviewed = LabelChange.objects.filter(movie=OuterRef("movie_id"), created_at__gte=OuterRef("updated_at")).exclude(
        origin=LabelOrigin.IMPORTED
    )
    return predictions.exclude(Exists(reviewed))


def headline_evaluation(version: ModelVersion, split: str | None = None) -> Evaluation | None:
    """The evaluation a report shows: the requested split, else test, else validation."""
    evaluations = {e.split: e for e in version.evaluations.all()}
    for candidate in ([split] if split else []) + ["test", "val", "train"]:
        if candidate in evaluations:
            return evaluations[candidate]
    return None
