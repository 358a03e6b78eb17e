"""Shared fixtures (a plugin loaded by tests/conftest.py): users per role and their clients,
a tiny catalog with a promoted model version, its evaluation and predictions, and jobs run in
this process (eager Celery). Everything is generated here (no real data)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.factories import api_client_for, image_bytes, make_movie, make_poster, make_user


@pytest.fixture
def eager_celery():
    """Tasks run in-process when sent (no broker, no worker): for fast unit tests."""
    from genreweb.celery import app

    old = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, False
    yield app
    app.conf.task_always_eager, app.conf.task_eager_propagates = old


@pytest.fixture
def jobs_at_commit(eager_celery, django_capture_on_commit_callbacks):
    """``with jobs_at_commit(): client.post(...)``: the jobs the block queues are sent when it
    ends (the request has answered), and run here through their Celery task (eager)."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def labeler(db):
    return make_user("lena")


@pytest.fixture
def staff(db):
    return make_user("sam", staff=True)


@pytest.fixture
def labeler_client(labeler):
    from django.test import Client

    client = Client()  # its own session, so a test can use a labeler and a staff client together
    client.force_login(labeler)
    return client


@pytest.fixture
def staff_client(staff):
    from django.test import Client

    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def api_clients(labeler, staff):
    """{"anonymous": ..., "labeler": ..., "staff": ...} token-authenticated API clients."""
    return {"anonymous": api_client_for(None), "labeler": api_client_for(labeler), "staff": api_client_for(staff)}


GENRE_NAMES = ["Action", "Comedy", "Drama", "Horror", "Romance"]
# title, year, labels, model scores (in GENRE_NAMES order)
MOVIES = [
    ("Laugh Track", 1999, ["Comedy"], [0.05, 0.92, 0.20, 0.02, 0.70]),  # model: add Romance
    ("Night Shift", 2005, ["Horror", "Comedy"], [0.10, 0.08, 0.15, 0.95, 0.05]),  # model: remove Comedy
    ("Long Road", 2012, ["Drama"], [0.04, 0.05, 0.97, 0.03, 0.06]),  # agrees, sure
    ("Edge Case", 2018, ["Action"], [0.52, 0.04, 0.48, 0.03, 0.05]),  # agrees, unsure (near threshold)
    ("Quiet Years", 1987, ["Drama", "Romance"], [0.03, 0.04, 0.91, 0.02, 0.88]),  # agrees
]


@pytest.fixture
def world(db, staff):
    """Genres, 5 movies with posters and imported labels, a promoted model version with a
    test-split evaluation, and one prediction per movie."""
    from catalog.models import Genre, Poster
    from ml.models import DatasetSnapshot, Evaluation, GenreMetric, ModelVersion, Prediction
    from ml.services.inference import prediction_fields
    from ml.services.registry import promote

    genres = {name: Genre.objects.create(name=name) for name in GENRE_NAMES}
    snapshot = DatasetSnapshot.objects.create(name="tiny", genres=GENRE_NAMES, content_hash="0" * 64, n_members=5)
    thresholds = np.array([0.5] * len(GENRE_NAMES))
    version = ModelVersion.objects.create(
        name="tiny v1",
        snapshot=snapshot,
        config_name="tfidf-linear",
        genres=GENRE_NAMES,
        thresholds=thresholds.tolist(),
        artifact_path="models/none",
        checksum="c" * 64,
    )
    evaluation = Evaluation.objects.create(
        model_version=version,
        snapshot=snapshot,
        split="test",
        n_examples=5,
        micro_f1=0.7,
        macro_f1=0.6,
        samples_f1=0.68,
        roc_auc_macro=0.9,
        metrics={"hamming_accuracy": 0.9, "ece": 0.05},
        curves={
            "pr_curves": {"Drama": {"precision": [1.0, 0.8, 0.5], "recall": [0.0, 0.5, 1.0]}},
            "calibration": {
                "mean_confidence": [0.1, 0.5, 0.9],
                "fraction_positive": [0.12, 0.45, 0.85],
                "count": [3, 2, 3],
                "ece": 0.05,
            },
        },
    )
    GenreMetric.objects.bulk_create(
        [
            GenreMetric(
                evaluation=evaluation,
                model_version=version,
                snapshot=snapshot,
                split="test",
                genre=name,
                threshold=0.5,
                f1=0.5 + i / 20,
                precision=0.6,
                recall=0.5,
                roc_auc=0.9,
                pr_auc=0.7,
                support=3,
                tp=2,
                fp=1,
                fn=1,
                tn=1,
            )
            for i, name in enumerate(GENRE_NAMES)
        ]
    )
    movies = []
    for i, (title, year, labels, scores) in enumerate(MOVIES):
        movie = make_movie(
            title=title,
            year=year,
            overview=f"The story of {title.lower()}.",
            popularity=10 - i,
            source_id=f"w{i}",
            genres=labels,
        )
        make_poster(
            movie, original=image_bytes(60, 90, colour=(40 * i, 90, 160)), status=Poster.Status.OK, width=60, height=90
        )
        probs = np.array(scores)
        Prediction.objects.create(
            movie=movie,
            model_version=version,
            **prediction_fields(GENRE_NAMES, thresholds, probs, probs >= thresholds, labels),
        )
        movies.append(movie)
    promote(version.pk, user=staff)
    return {"genres": genres, "movies": {m.title: m for m in movies}, "version": version, "evaluation": evaluation}


@pytest.fixture
def candidate_version(world):
    """A second model version, "tiny v2", beside the world's production one: not promoted,
    no evaluations (what compare and promote are tried on)."""
    from ml.models import ModelVersion

    production = world["version"]
    return ModelVersion.objects.create(
        name="tiny v2",
        snapshot=production.snapshot,
        config_name=production.config_name,
        genres=production.genres,
        thresholds=production.thresholds,
        artifact_path="models/none2",
        checksum="d" * 64,
    )


@pytest.fixture
def drama_catalog(db):
    """Three dramas (1970, 2012, 2019) and a horror film (2018), plus an unused Comedy genre:
    the bulk-change tests add Comedy to "genre=drama&year_min=2000" (two of them)."""
    from catalog.models import Genre

    Genre.objects.create(name="Comedy")
    return {
        "old": make_movie(title="Old Drama", source_id="a", genres=["Drama"], year=1970),
        "new": make_movie(title="New Drama", source_id="b", genres=["Drama"], year=2012),
        "newer": make_movie(title="Newer Drama", source_id="c", genres=["Drama"], year=2019),
        "horror": make_movie(title="Late Horror", source_id="d", genres=["Horror"], year=2018),
    }
