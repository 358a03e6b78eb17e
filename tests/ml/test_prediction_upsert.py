"""Prediction upserts: idempotent, and safe when two writers upsert the same movies at once."""

import threading

import numpy as np
import pytest
from django.db import connection

from ml.engine.contracts import Example
from ml.models import DatasetSnapshot, ModelVersion, Prediction
from ml.services.inference import _upsert


def _version():
    snapshot = DatasetSnapshot.objects.create(content_hash="c" * 64, genres=["Action", "Drama"])
    return ModelVersion.objects.create(
        snapshot=snapshot,
        genres=["Action", "Drama"],
        thresholds=[0.5, 0.5],
        artifact_path="models/t",
        artifact_files=[],
        checksum="d" * 64,
    )


def _batch(movies, seed):
    rng = np.random.default_rng(seed)
    probs = rng.random((len(movies), 2))
    return [Example(key=str(m.pk), text="") for m in movies], probs, probs >= 0.5


@pytest.mark.django_db
def test_upsert_twice_keeps_one_row_per_movie_and_latest_scores(make_movie):
    version = _version()
    movies = [make_movie(("Action",), poster=False) for _ in range(5)]
    examples, probs, decisions = _batch(movies, 1)
    _upsert(version, version.genres, np.array(version.thresholds), examples, probs, decisions)
    created = {p.movie_id: p.created_at for p in Prediction.objects.all()}
    examples, probs, decisions = _batch(movies, 2)
    _upsert(version, version.genres, np.array(version.thresholds), examples[::-1], probs[::-1], decisions[::-1])
    assert Prediction.objects.count() == 5
    latest = Prediction.objects.get(movie=movies[0])
    assert latest.scores["Action"] == pytest.approx(probs[0, 0], abs=1e-6)
    assert latest.created_at == created[movies[0].pk] and latest.updated_at >= latest.created_at


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_upserts_of_the_same_movies(make_movie):
    # Two writers upsert the same 3,000 movies in opposite orders (a retried shard racing
    # the original). Without a common lock order Postgres reports a deadlock here.
    version = _version()
    from catalog.models import Movie

    Movie.objects.bulk_create([Movie(title=f"m{i}", source="csv", source_id=f"bulk{i}") for i in range(3000)])
    movies = list(Movie.objects.order_by("id"))
    errors = []

    def writer(order, seed):
        try:
            for round_ in range(6):
                examples, probs, decisions = _batch(movies, seed + round_)
                _upsert(
                    version,
                    version.genres,
                    np.array(version.thresholds),
                    [examples[i] for i in order],
                    probs[order],
                    decisions[order],
                )
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    forward = np.arange(len(movies))
    threads = [
        threading.Thread(target=writer, args=(forward, 10)),
        threading.Thread(target=writer, args=(forward[::-1], 20)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert Prediction.objects.filter(model_version=version).count() == 3000
