"""Review queues: what pages and the API both ask of the latest label audit.

One definition of each label-audit queue ("likely label errors", "unlabeled movies", "model
unsure") for the review pages, the catalog filter (?audit=), the movies API (?audit=) and
the label-issues API (?queue=), plus the review actions that work them. The earlier
in-sample queues (the production model judging the labels it was trained on) are gone:
``REPLACED_QUEUES`` maps their names to the audit queues that replace them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Exists, OuterRef, QuerySet

from base import events
from catalog.export import LabelExport
from ml.models import Evaluation, ModelVersion


class UnknownQueue(ValueError):
    """Not one of AUDIT_QUEUES."""


def headline_evaluation(version: ModelVersion, split: str | None = None) -> Evaluation | None:
    """The evaluation a report shows: the requested split, else test, else validation."""
    evaluations = {e.split: e for e in version.evaluations.all()}
    for candidate in ([split] if split else []) + ["test", "val", "train"]:
        if candidate in evaluations:
            return evaluations[candidate]
    return None


# --- Label-audit queues (out of fold) -----------------------------------------------------
#
# Read the latest succeeded AuditRun. One definition of each queue's membership serves the
# review pages, the catalog filter and the API, so their counts agree at every moment.

AUDIT_QUEUES = {
    "errors": "Likely label errors",
    "unlabeled": "Unlabeled movies",
    "uncertain": "Model unsure",
}
# The removed in-sample queues (the production model judging the labels it was trained on;
# also the removed ``?model=`` filter's values) and the audit queue that replaces each: old
# bookmarks redirect there, and the API's refusal of the old filters names it.
REPLACED_QUEUES = {"disagrees": "errors", "unsure": "uncertain"}


def unsure_limits(scored: int) -> tuple[int, float]:
    """The "model unsure" queue's cut-off for an audit that scored ``scored`` movies: (at most
    this many movies, each expecting at least this many wrong genre decisions).

    Active learning asks a person where an answer teaches the model most, and a team can
    answer a batch, not a fifth of the catalog: the queue is one batch per audit, the
    GENREWEB_UNSURE_BATCH movies (default 100, and at most GENREWEB_UNSURE_SHARE of the
    audited movies, default 5 %) whose audit scores expect the most wrong genre decisions.
    The floor (GENREWEB_UNSURE_MIN_EXPECTED_ERRORS, default 1) keeps out movies where the
    model expects its thresholded genre set to be right as it stands: on a catalog the model
    already knows well the batch is smaller, down to empty. Reviewed movies leave the batch
    and are not replaced, so it has a finish line; the next audit (trained on the answers)
    draws the next batch."""
    cap = min(settings.GENREWEB_UNSURE_BATCH, math.ceil(settings.GENREWEB_UNSURE_SHARE * scored))
    return max(cap, 0), settings.GENREWEB_UNSURE_MIN_EXPECTED_ERRORS


def unsure_cut(audit) -> tuple[int, float]:
    """unsure_limits for ``audit`` (the movies it scored)."""
    from ml.models import AuditScore

    scored = (audit.counts or {}).get("movies") or AuditScore.objects.filter(audit=audit).count()
    return unsure_limits(scored)


def _latest_audit():
    from .audit import latest_audit

    return latest_audit()


def queue_issues(queue: str, audit) -> QuerySet:
    """The open issues a queue shows as suggestions (all movies)."""
    from ml.models import LabelIssue

    issues = LabelIssue.objects.filter(audit=audit, resolution="")
    if queue == "errors":
        return issues.filter(queued=True)
    return issues


def audit_queue_movies(queue: str, audit=None) -> QuerySet:
    """Movies in an audit queue, in queue order; none before the first audit."""
    from django.db.models import Max

    from catalog.models import Movie
    from ml.models import AuditScore, LabelIssue, LabelReview

    if queue not in AUDIT_QUEUES:
        raise UnknownQueue(queue)
    audit = audit or _latest_audit()
    if audit is None:
        return Movie.objects.none()
    if queue == "errors":
        open_issues = LabelIssue.objects.filter(audit=audit, queued=True, resolution="", movie=OuterRef("pk"))
        return (
            Movie.objects.filter(Exists(open_issues))
            .annotate(flagged=Exists(open_issues.filter(flagged=True)))
            .annotate(
                worst=Max(
                    "label_issues__margin",
                    filter=models_q(label_issues__audit=audit, label_issues__queued=True, label_issues__resolution=""),
                )
            )
            .order_by("-flagged", "-worst", "pk")
        )
    if queue == "unlabeled":
        open_issues = LabelIssue.objects.filter(audit=audit, resolution="", movie=OuterRef("pk"))
        unlabeled = AuditScore.objects.filter(audit=audit, labeled=False, movie=OuterRef("pk"))
        return (
            Movie.objects.filter(Exists(unlabeled), Exists(open_issues))
            .annotate(
                best=Max(
                    "label_issues__probability",
                    filter=models_q(label_issues__audit=audit, label_issues__resolution=""),
                )
            )
            .order_by("-best", "pk")
        )
    # "model unsure": one batch per audit (unsure_limits), drawn from the movies nobody had
    # reviewed when the audit started; a movie reviewed since leaves it (and is not replaced).
    closing = LabelReview.objects.exclude(verdict=LabelReview.Verdict.SKIPPED)
    limit, floor = unsure_cut(audit)
    if limit == 0:
        return Movie.objects.none()
    batch = (
        AuditScore.objects.filter(audit=audit, uncertainty__gte=floor)
        .exclude(Exists(closing.filter(movie=OuterRef("movie_id"), created_at__lt=audit.created_at)))
        .order_by("-uncertainty", "movie_id")
        .values("movie_id")[:limit]
    )
    return (
        Movie.objects.filter(pk__in=batch)
        .exclude(Exists(closing.filter(movie=OuterRef("pk"))))
        .annotate(
            uncertainty=Max("audit_scores__uncertainty", filter=models_q(audit_scores__audit=audit)),
        )
        .order_by("-uncertainty", "pk")
    )


def models_q(**kwargs):
    from django.db.models import Q

    return Q(**kwargs)


def filter_movies_by_queue(movies: QuerySet, queue: str) -> QuerySet:
    """``movies`` narrowed to an audit queue's members (the catalog's "label issues" filter)."""
    if not queue:
        return movies
    return movies.filter(pk__in=audit_queue_movies(queue).values("pk"))


def labels_changed(movie_ids) -> None:
    """After labels of these movies changed (a relabel, a batch of a bulk change or its undo):
    the production predictions' disagreements and the latest audit's issues follow them."""
    from .audit import refresh_issues
    from .inference import refresh_disagreements

    movie_ids = list(movie_ids)
    refresh_disagreements(movie_ids)
    refresh_issues(movie_ids)


def audit_queue_counts(audit=None) -> dict[str, int]:
    audit = audit or _latest_audit()
    return {queue: audit_queue_movies(queue, audit).count() for queue in AUDIT_QUEUES}


# --- Review actions ------------------------------------------------------------------------

REVIEW_ACTIONS = ("accept_all", "accept", "reject", "edit", "confirm", "skip")


class ReviewRefused(ValueError):
    """The action does not apply (no such suggestion, unknown genre, ...); nothing was written."""


@dataclass
class ReviewOutcome:
    action: str
    added: list[str]
    removed: list[str]
    review: object | None  # the LabelReview written, if the action closed the item
    label_version: int

    @property
    def summary(self) -> str:
        change = ", ".join([f"+{g}" for g in self.added] + [f"−{g}" for g in self.removed])
        if self.review is not None:
            verdict = self.review.get_verdict_display()
            return f"{change}; {verdict}" if change else verdict
        return change or "nothing to change"


def _check_version(movie, expected: int):
    """Lock the movie and refuse (StaleLabels) if its labels moved on since ``expected``."""
    from catalog.labels import StaleLabels
    from catalog.models import Movie, MovieGenre

    locked = Movie.objects.select_for_update().get(pk=movie.pk)
    if locked.label_version != expected:
        labels = sorted(MovieGenre.objects.filter(movie=locked).select_related("genre"), key=lambda mg: mg.genre.name)
        raise StaleLabels(locked, labels, locked.label_version, expected)
    return locked


def _close_item(movie, user, audit, verdict: str):
    """Write the LabelReview and resolve every remaining open issue of the movie as reviewed."""
    from django.utils import timezone

    from catalog.models import Movie, MovieGenre
    from ml.models import LabelIssue, LabelReview

    current = Movie.objects.get(pk=movie.pk)
    labels = sorted(MovieGenre.objects.filter(movie=current).values_list("genre__name", flat=True))
    review = LabelReview.objects.create(
        movie=current, user=user, audit=audit, label_version=current.label_version, labels=labels, verdict=verdict
    )
    if verdict != LabelReview.Verdict.SKIPPED and audit is not None:
        LabelIssue.objects.filter(audit=audit, movie=current, resolution="").update(
            resolution=LabelIssue.Resolution.REVIEWED, resolved_by=user, resolved_at=timezone.now()
        )
    if verdict != LabelReview.Verdict.SKIPPED:  # sent once this commits (base.events)
        events.review_finished(
            review_id=review.pk,
            movie_id=current.pk,
            outcome=verdict,
            user=user,
            label_version=current.label_version,
            genres=labels,
            audit=audit.pk if audit is not None else None,
        )
    return review


class ReviewedLabelExport(LabelExport):
    """The catalog's label export with its "reviewed" column filled: a movie's current labels
    count as reviewed when a person confirmed or fixed exactly this label version."""

    def reviewed(self, movie_ids: list[int]) -> dict[int, bool]:
        from catalog.models import Movie
        from ml.models import LabelReview

        versions = dict(Movie.objects.filter(pk__in=movie_ids).values_list("pk", "label_version"))
        seen = set(
            LabelReview.objects.filter(movie_id__in=movie_ids)
            .exclude(verdict=LabelReview.Verdict.SKIPPED)
            .values_list("movie_id", "label_version")
        )
        return {pk: (pk, version) in seen for pk, version in versions.items()}


def apply_review(
    movie,
    user,
    action: str,
    *,
    label_version: int | None,
    queue: str = "errors",
    genre: str = "",
    genres=None,
) -> ReviewOutcome:
    """One review action on a queue item, atomically. Label changes go through
    catalog.labels.write_labels with ``label_version`` (StaleLabels if it moved on); every
    action but skip checks the version too, so nobody confirms a set they did not see.

    accept_all / accept (one ``genre``) apply the queue's open suggestions; reject keeps the
    label as it is for one suggestion; edit replaces the set with ``genres`` (Genre objects);
    confirm says the labels are right; skip records that the item was passed over. Closing
    actions (accept_all, edit, confirm, and accept/reject of the last open suggestion) write
    a LabelReview and resolve the movie's remaining issues."""
    from django.db import transaction
    from django.utils import timezone

    from catalog.labels import write_labels
    from catalog.models import Genre
    from ml.models import LabelIssue, LabelReview

    from .audit import refresh_issues

    if action not in REVIEW_ACTIONS:
        raise ReviewRefused(f"unknown action {action!r}; choose one of {', '.join(REVIEW_ACTIONS)}")
    if queue not in AUDIT_QUEUES:
        raise UnknownQueue(queue)
    audit = _latest_audit()
    added: list[str] = []
    removed: list[str] = []
    review = None
    with transaction.atomic():
        if action == "skip":
            review = _close_item(movie, user, audit, LabelReview.Verdict.SKIPPED)
            return ReviewOutcome(action, [], [], review, movie.label_version)
        if label_version is None:
            raise ReviewRefused("label_version is required: the label version the reviewer saw")
        _check_version(movie, label_version)
        shown = list(queue_issues(queue, audit).filter(movie=movie).select_related("genre")) if audit else []
        if action in ("accept", "reject"):
            picked = [i for i in shown if i.genre.name == genre]
            if not picked:
                raise ReviewRefused(f"“{genre}” is not an open suggestion for this movie")
        if action in ("accept_all", "accept"):
            chosen = shown if action == "accept_all" else picked
            if not chosen:
                raise ReviewRefused("no open suggestions to accept")
            diff = write_labels(
                movie,
                add=[i.genre for i in chosen if i.kind == LabelIssue.Kind.MISSING],
                remove=[i.genre for i in chosen if i.kind == LabelIssue.Kind.WRONG],
                origin="suggestion",
                user=user,
                reason=f"accepted label-audit suggestion (audit {audit.pk})",
                expected_version=label_version,
            )
            added, removed = diff.added, diff.removed
            refresh_issues([movie.pk])
            LabelIssue.objects.filter(pk__in=[i.pk for i in chosen], resolution="").update(
                resolution=LabelIssue.Resolution.RELABELED, resolved_by=user, resolved_at=timezone.now()
            )
            LabelIssue.objects.filter(pk__in=[i.pk for i in chosen]).update(resolved_by=user)
        elif action == "reject":
            LabelIssue.objects.filter(pk__in=[i.pk for i in picked]).update(
                resolution=LabelIssue.Resolution.REJECTED, resolved_by=user, resolved_at=timezone.now()
            )
        elif action == "edit":
            if genres is None:
                raise ReviewRefused("edit needs the new set of genres")
            genres = list(genres)
            if any(not isinstance(g, Genre) for g in genres):
                raise ReviewRefused("edit needs Genre objects")
            diff = write_labels(
                movie,
                replace=genres,
                user=user,
                reason=f"edited in review (audit {audit.pk})" if audit else "edited in review",
                expected_version=label_version,
            )
            added, removed = diff.added, diff.removed
            refresh_issues([movie.pk])
        # confirm: nothing to write before closing
        still_open = queue_issues(queue, audit).filter(movie=movie).exists() if audit else False
        if action in ("accept_all", "edit", "confirm") or not still_open:
            fixed = bool(added or removed) or (
                audit is not None
                and LabelIssue.objects.filter(
                    audit=audit, movie=movie, resolution=LabelIssue.Resolution.RELABELED
                ).exists()
            )
            verdict = LabelReview.Verdict.FIXED if fixed else LabelReview.Verdict.CONFIRMED
            review = _close_item(movie, user, audit, verdict)
    movie.refresh_from_db(fields=["label_version", "label_source", "missing_genres"])
    return ReviewOutcome(action, added, removed, review, movie.label_version)


def review_progress(days: int = 30) -> dict:
    """The review progress page: reviews and fixes per day and per person, open items per
    queue, and agreement where two people reviewed the same movie (same label set)."""
    from django.db.models import Count, Q
    from django.db.models.functions import TruncDate

    from ml.models import LabelReview

    closing = LabelReview.objects.exclude(verdict=LabelReview.Verdict.SKIPPED)
    per_day = list(
        closing.annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(reviewed=Count("id"), fixed=Count("id", filter=Q(verdict=LabelReview.Verdict.FIXED)))
        .order_by("-day")[:days]
    )
    per_person = list(
        closing.values("user__username")
        .annotate(reviewed=Count("id"), fixed=Count("id", filter=Q(verdict=LabelReview.Verdict.FIXED)))
        .order_by("-reviewed", "user__username")
    )
    latest: dict[int, dict[int, tuple]] = {}
    for movie_id, user_id, labels in closing.order_by("created_at", "id").values_list("movie_id", "user_id", "labels"):
        latest.setdefault(movie_id, {})[user_id] = tuple(sorted(labels))
    pairs = agreeing = 0
    for by_user in latest.values():
        sets = list(by_user.values())
        for i in range(len(sets)):
            for j in range(i + 1, len(sets)):
                pairs += 1
                agreeing += sets[i] == sets[j]
    return {
        "per_day": per_day,
        "per_person": per_person,
        "open": {AUDIT_QUEUES[q]: n for q, n in audit_queue_counts().items()},
        "pairs": pairs,
        "agreement": agreeing / pairs if pairs else None,
        "movies_reviewed_twice": sum(1 for by_user in latest.values() if len(by_user) > 1),
    }
