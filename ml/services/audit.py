"""The label audit service: cross-fit the frozen-feature head, find label issues, store them.

``frozen_features`` is the ONE place the audit gets its vectors: the engine's frozen
encoders through the shared embedding store (ml.services.embeddings), so once
``embed_catalog`` has run, an audit encodes nothing. The cross-fit and confident
learning are the pure ``ml.engine.audit.audit``; this module loads the catalog, stores an
AuditRun with its AuditScores and LabelIssues, and keeps issues in step with relabels.
"""

from __future__ import annotations

import hashlib
import time
import traceback
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from base.progress import Progress, report, scaled
from ml.models import AuditRun, AuditScore, LabelIssue, LabelReview
from ml.services.params import AUDIT_DEFAULT_CONFIG, AUDIT_DEFAULT_FOLDS


def default_cache_dir() -> str:
    return str(Path(settings.GENREWEB_ML_CACHE_DIR) / "features")


def frozen_features(
    config, examples, *, cache_dir: str | None = None, progress: Progress | None = None
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """([n, d] features of ``examples`` under ``config``'s frozen encoders: text vector, poster
    vector (zeros without a poster) and a has-poster flag, concatenated; the (start, stop)
    columns of the text and the poster vector, which the audit's kNN member compares
    separately)."""
    from ml.engine.train import select_device
    from ml.engine.trained import InputParts

    from .data import engine_image_limits

    if config.train_mode != "frozen":
        raise ValueError(f"the audit needs a frozen-encoder preset; {config.name} trains its encoders end to end")
    if config.has_text and config.text_encoder in ("tfidf",):
        raise ValueError(f"the audit needs pretrained frozen encoders; {config.name} fits TF-IDF on its training texts")
    from .embeddings import embedding_store

    # The shared embedding store (ml.services.embeddings) unless a folder cache is asked for
    # (the devset benchmark, which runs outside any database).
    parts = InputParts(
        config,
        None,
        select_device(None),
        cache_dir=cache_dir,
        image_limits=engine_image_limits(),
        store=None if cache_dir else embedding_store(),
    )
    arrays = parts.frozen_arrays(examples, progress=progress)
    columns, views, width = [], [], 0
    if "text_feat" in arrays:
        columns.append(arrays["text_feat"])
        views.append((width, width + arrays["text_feat"].shape[1]))
        width += arrays["text_feat"].shape[1]
    if "image_feat" in arrays:
        has = arrays["has_image"].astype(np.float32)[:, None]
        columns += [arrays["image_feat"] * has, has]
        views.append((width, width + arrays["image_feat"].shape[1]))
    return np.concatenate(columns, axis=1).astype(np.float32), views


# --- the audit run ------------------------------------------------------------------

DEFAULT_CONFIG = AUDIT_DEFAULT_CONFIG
DEFAULT_FOLDS = AUDIT_DEFAULT_FOLDS
# A movie whose label set a person reviewed comes back to "likely label errors" only when a
# later audit contradicts that set with high confidence: a queued genre with a margin of at
# least this, and stronger by REVIEWED_RETURN_GAIN than the evidence the reviewer saw (an
# audit that repeats what was dismissed agrees with the review). 0.95: the odds 20x
# against the reviewed label (the queue itself starts at 10x).
REVIEWED_RETURN_MIN_MARGIN = 0.95
REVIEWED_RETURN_GAIN = 0.05
# A flagged (movie, genre) with at least this margin is in "likely label errors"
# (ml.engine.audit.QUEUE_MIN_MARGIN, repeated here so this module imports no PyTorch; a
# test checks they agree; chosen so the devset queue holds under 10 %).
QUEUE_MIN_MARGIN = 0.9
BATCH = 1000


def audit_params(params: dict) -> dict:
    """The audit_labels job's parameters, checked: config (a frozen preset), folds, seed."""
    from ml.engine.registry import get_config

    unknown = set(params) - {"config", "folds", "seed"}
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(sorted(unknown))}; allowed: config, folds, seed")
    config = params.get("config") or DEFAULT_CONFIG
    from ml.engine.identity import missing_encoder_packages

    model_config = get_config(config)  # ValueError on an unknown preset
    if model_config.train_mode != "frozen" or model_config.text_encoder == "tfidf":
        raise ValueError(f"config {model_config.name!r} is not a frozen pretrained-encoder preset")
    for missing in missing_encoder_packages(model_config):
        raise ValueError(f"{model_config.name}: {missing}")
    folds = params.get("folds", DEFAULT_FOLDS)
    if not isinstance(folds, int) or isinstance(folds, bool) or not 2 <= folds <= 20:
        raise ValueError("folds must be a whole number from 2 to 20")
    seed = params.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError("seed must be a whole number")
    return {"config": config, "folds": folds, "seed": seed}


def audit_param_errors(params: dict, errors: dict) -> None:
    """The job kind's check: cleans ``params`` in place, records ``errors[field]``."""
    try:
        params.update(audit_params(params))
    except ValueError as exc:
        message = str(exc)
        field = next((f for f in ("folds", "seed", "config") if message.startswith(f)), "config")
        errors["params" if message.startswith("unknown") else field] = message


def _catalog(progress=None):
    """Movie ids, examples, label matrix, label versions and genre names of every movie the
    audit judges: all movies not excluded from training (duplicates are excluded there)."""
    from catalog.models import Genre, Movie, MovieGenre

    from .data import movie_examples

    movies = list(Movie.objects.filter(excluded_from_training=False).order_by("pk").values_list("pk", "label_version"))
    ids = [pk for pk, _ in movies]
    labels: dict[int, list[int]] = {pk: [] for pk in ids}
    for movie_id, genre_id in MovieGenre.objects.filter(movie__excluded_from_training=False).values_list(
        "movie_id", "genre_id"
    ):
        if movie_id in labels:
            labels[movie_id].append(genre_id)
    used = sorted({g for gs in labels.values() for g in gs})
    genres = list(Genre.objects.filter(pk__in=used).order_by("name"))
    column = {g.pk: j for j, g in enumerate(genres)}
    y = np.zeros((len(ids), len(genres)), dtype=bool)
    for i, pk in enumerate(ids):
        for g in labels[pk]:
            y[i, column[g]] = True
    examples = []
    for start in range(0, len(ids), BATCH):
        examples += movie_examples(ids[start : start + BATCH])
        report(
            progress, f"loaded {min(start + BATCH, len(ids))} of {len(ids)} movies", (start + BATCH) / max(len(ids), 1)
        )
    versions = dict(movies)
    return ids, examples, y, versions, genres


def _data_hash(ids, y, versions) -> str:
    digest = hashlib.sha256()
    for i, pk in enumerate(ids):
        digest.update(f"{pk}:{versions[pk]}:{np.flatnonzero(y[i]).tolist()};".encode())
    return digest.hexdigest()


def run_audit(
    config: str = DEFAULT_CONFIG, folds: int = DEFAULT_FOLDS, seed: int = 0, *, user=None, progress=None
) -> AuditRun:
    """Audit every movie's labels out of fold and store the issues; returns the AuditRun
    (succeeded, or failed/cancelled with the error, which is re-raised)."""
    from ml.engine.audit import audit, queue_issues
    from ml.engine.registry import get_config

    params = audit_params({"config": config, "folds": folds, "seed": seed})
    model_config = get_config(params["config"])
    run = AuditRun.objects.create(
        config_name=model_config.name,
        config=model_config.to_dict(),
        folds=params["folds"],
        seed=params["seed"],
        status=AuditRun.Status.RUNNING,
        created_by=user,
    )
    started = time.perf_counter()
    timings: dict[str, float] = {}
    try:
        report(progress, "loading the catalog", 0.0)
        ids, examples, y, versions, genres = _catalog(scaled(progress, 0.0, 0.05))
        if len(ids) < params["folds"] or y.any(axis=1).sum() < params["folds"]:
            raise ValueError(f"an audit with {params['folds']} folds needs at least that many labeled movies")
        run.data_hash = _data_hash(ids, y, versions)
        timings["load_s"] = round(time.perf_counter() - started, 3)
        mark = time.perf_counter()
        x, views = frozen_features(model_config, examples, progress=scaled(progress, 0.05, 0.4))
        timings["features_s"] = round(time.perf_counter() - mark, 3)
        mark = time.perf_counter()
        names = [g.name for g in genres]
        result = audit(
            x,
            y,
            y.any(axis=1),
            names,
            folds=params["folds"],
            seed=params["seed"],
            views=views,
            progress=scaled(progress, 0.4, 0.9),
        )
        timings["audit_s"] = round(time.perf_counter() - mark, 3)
        mark = time.perf_counter()
        report(progress, "storing issues", 0.9)
        counts = _store(run, ids, versions, genres, y, result, queue_issues(result, QUEUE_MIN_MARGIN))
        timings["store_s"] = round(time.perf_counter() - mark, 3)
        run.counts = {**counts, "l2": result.l2}
        run.genres = names
        run.thresholds = [round(float(t), 4) for t in result.thresholds]
        run.status = AuditRun.Status.SUCCEEDED
    except BaseException as exc:
        run.status = (
            AuditRun.Status.FAILED if isinstance(exc, Exception) and not _is_cancel(exc) else AuditRun.Status.CANCELLED
        )
        run.error = "".join(traceback.format_exception(exc))[-20000:]
        _finish(run, started, timings)
        raise
    _finish(run, started, timings)
    report(progress, f"audit {run.pk}: {run.counts.get('queued_movies', 0)} movies in likely label errors", 1.0)
    return run


def _is_cancel(exc: BaseException) -> bool:
    from base.runs import Cancelled

    return isinstance(exc, Cancelled) or type(exc).__name__ == "JobCancelled"


def _finish(run: AuditRun, started: float, timings: dict) -> None:
    run.duration_s = round(time.perf_counter() - started, 3)
    timings["total_s"] = run.duration_s
    run.timings = timings
    run.finished_at = timezone.now()
    run.save()


def _covering_reviews(ids, versions) -> dict[int, LabelReview]:
    """Per movie, its latest non-skip review if it covers the current label set."""
    latest: dict[int, LabelReview] = {}
    for review in (
        LabelReview.objects.filter(movie_id__in=ids)
        .exclude(verdict=LabelReview.Verdict.SKIPPED)
        .order_by("movie_id", "-created_at", "-id")
    ):
        latest.setdefault(review.movie_id, review)
    return {pk: r for pk, r in latest.items() if r.label_version == versions.get(pk)}


def _store(run, ids, versions, genres, y, result, queued) -> dict:
    decisions = result.probs >= result.thresholds[None, :]
    covered = _covering_reviews(ids, versions)
    seen = {  # the evidence each covering review was made against
        (i.movie_id, i.genre_id, i.kind): i.margin
        for i in LabelIssue.objects.filter(
            movie_id__in=list(covered), audit_id__in={r.audit_id for r in covered.values() if r.audit_id}
        ).only("movie_id", "genre_id", "kind", "margin", "audit_id")
        if covered[i.movie_id].audit_id == i.audit_id
    }
    now = timezone.now()
    scores, issues = [], []
    per_genre: dict[str, int] = {}
    for i, pk in enumerate(ids):
        row = result.probs[i]
        scores.append(
            AuditScore(
                audit=run,
                movie_id=pk,
                scores={g.name: round(float(p), 5) for g, p in zip(genres, row, strict=True)},
                labeled=bool(result.labeled[i]),
                label_version=versions[pk],
                uncertainty=float(result.uncertainty[i]),
            )
        )
        for j in np.flatnonzero(decisions[i] != y[i]):
            kind = LabelIssue.Kind.WRONG if y[i, j] else LabelIssue.Kind.MISSING
            in_queue = bool(queued[i, j])
            review = covered.get(pk)
            margin = float(result.margin[i, j])
            contradicts = (
                in_queue
                and margin >= REVIEWED_RETURN_MIN_MARGIN
                and margin >= seen.get((pk, genres[j].pk, kind), -1.0) + REVIEWED_RETURN_GAIN
            )
            resolved = review is not None and not contradicts
            if in_queue:
                per_genre[genres[j].name] = per_genre.get(genres[j].name, 0) + 1
            issues.append(
                LabelIssue(
                    audit=run,
                    movie_id=pk,
                    genre=genres[j],
                    kind=kind,
                    flagged=bool(result.flagged[i, j]),
                    queued=in_queue,
                    quality=float(result.quality[i, j]),
                    margin=float(result.margin[i, j]),
                    probability=float(row[j]),
                    threshold=float(result.thresholds[j]),
                    resolution=LabelIssue.Resolution.REVIEWED if resolved else "",
                    resolved_by=review.user if resolved else None,
                    resolved_at=now if resolved else None,
                )
            )
    with transaction.atomic():
        AuditScore.objects.bulk_create(scores, batch_size=BATCH)
        LabelIssue.objects.bulk_create(issues, batch_size=BATCH)
    flagged = [x for x in issues if x.flagged]
    queued_rows = [x for x in issues if x.queued]
    return {
        "movies": len(ids),
        "labeled": int(result.labeled.sum()),
        "unlabeled": int((~result.labeled).sum()),
        "suggestions": len(issues),
        "flagged": len(flagged),
        "queued": len(queued_rows),
        "queued_movies": len({x.movie_id for x in queued_rows if not x.resolution}),
        "missing": sum(1 for x in queued_rows if x.kind == LabelIssue.Kind.MISSING),
        "wrong": sum(1 for x in queued_rows if x.kind == LabelIssue.Kind.WRONG),
        "kept_reviewed": sum(1 for x in issues if x.resolution),
        "per_genre": per_genre,
    }


def latest_audit() -> AuditRun | None:
    """The audit the queues read: the latest that succeeded."""
    return AuditRun.objects.filter(status=AuditRun.Status.SUCCEEDED).order_by("-finished_at", "-id").first()


def refresh_issues(movie_ids) -> int:
    """After a label change: resolve the latest audit's issues of these movies whose genre
    now agrees (a missing genre added, a wrong one removed), and reopen ones a later change
    undid. Returns how many issues changed state."""
    from catalog.models import MovieGenre

    audit = latest_audit()
    if audit is None:
        return 0
    movie_ids = list(movie_ids)
    have = set(MovieGenre.objects.filter(movie_id__in=movie_ids).values_list("movie_id", "genre_id"))
    changed = 0
    now = timezone.now()
    for issue in LabelIssue.objects.filter(audit=audit, movie_id__in=movie_ids).exclude(
        resolution__in=[LabelIssue.Resolution.REVIEWED, LabelIssue.Resolution.REJECTED]
    ):
        labeled = (issue.movie_id, issue.genre_id) in have
        agrees = labeled if issue.kind == LabelIssue.Kind.MISSING else not labeled
        if agrees and not issue.resolution:
            issue.resolution, issue.resolved_at = LabelIssue.Resolution.RELABELED, now
        elif not agrees and issue.resolution == LabelIssue.Resolution.RELABELED:
            issue.resolution, issue.resolved_at, issue.resolved_by = "", None, None
        else:
            continue
        issue.save(update_fields=["resolution", "resolved_at", "resolved_by"])
        changed += 1
    return changed
