"""Batch prediction fan-out, in-process (eager Celery) with a real tiny model version."""

from __future__ import annotations

from unittest import mock

import pytest

from ml.models import Prediction
from ml.services.inference import predict_movies
from tests.factories import make_movies
from workers.jobs import cancel, enqueue, retry
from workers.models import Job

# Shards predict through the public ml service; tests watch it there (workers import it per call).
PREDICT_MOVIES = "ml.services.inference.predict_movies"

# tiny_model trains a real TF-IDF model for every test: full suite only.
pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def run_now(eager_celery, django_capture_on_commit_callbacks):
    """Run a job operation (enqueue, retry) and every task it sends in this process."""

    def run(operation, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            job = operation(*args, **kwargs)
        job.refresh_from_db()
        return job

    return run


def test_batch_predict_shards_the_movies_and_writes_one_prediction_each(tiny_model, run_now):
    version_id, movie_ids = tiny_model
    job = run_now(enqueue, "predict", {"model_version_id": version_id, "shard_size": 10})
    assert job.status == "succeeded", (job.error, job.log)
    shards = list(job.shards.order_by("index"))
    assert [len(s.movie_ids) for s in shards] == [10, 10, 10, 2]
    assert sorted(i for s in shards for i in s.movie_ids) == sorted(movie_ids)
    assert all(s.status == "succeeded" and s.attempts == 1 for s in shards)
    assert Prediction.objects.filter(model_version_id=version_id).count() == 32
    assert job.result["predictions_written"] == 32 and job.result["movies_predicted"] == 32
    assert job.result["shards_total"] == 4 and job.result["shards_failed"] == []
    assert job.progress == 100.0 and job.result["movies_per_s"] > 0


def test_a_second_run_upserts_instead_of_duplicating(tiny_model, run_now):
    version_id, movie_ids = tiny_model
    run_now(enqueue, "predict", {"model_version_id": version_id, "movie_ids": movie_ids[:5]})
    again = run_now(enqueue, "predict", {"model_version_id": version_id, "movie_ids": movie_ids[:5] + [999999]})
    assert again.status == "succeeded"
    assert again.result["unknown_movie_ids"] == 1
    assert Prediction.objects.filter(model_version_id=version_id).count() == 5


def test_a_failing_shard_fails_the_job_keeps_the_rest_and_retry_finishes(tiny_model, run_now):
    version_id, movie_ids = tiny_model
    third_shard = set(sorted(movie_ids)[16:24])

    def fail_the_third_shard(model_version_id, ids, progress=None, **kwargs):
        if set(ids) == third_shard:
            raise RuntimeError("injected failure")
        return predict_movies(model_version_id, ids, progress=progress, **kwargs)

    with mock.patch(PREDICT_MOVIES, side_effect=fail_the_third_shard):
        job = run_now(enqueue, "predict", {"model_version_id": version_id, "shard_size": 8})
    assert job.status == "failed"
    assert "shard 2" in job.error and "injected failure" in job.error
    assert job.result["shards_failed"][0]["index"] == 2
    failed = job.shards.get(index=2)
    assert failed.status == "failed" and "Traceback" in failed.error
    assert Prediction.objects.filter(model_version_id=version_id).count() == 24  # the other 3 shards stayed

    with mock.patch(PREDICT_MOVIES, wraps=predict_movies) as predictions:
        again = run_now(retry, job)
    assert again.status == "succeeded", (again.error, again.log)
    assert predictions.call_count == 1  # only the failed shard ran again
    assert again.retry_of_id == job.pk and again.params == job.params
    assert again.result["shards_reused"] == 3 and again.result["predictions_written"] == 32
    assert list(again.shards.filter(reused=False).values_list("index", flat=True)) == [2]
    assert Prediction.objects.filter(model_version_id=version_id).count() == 32


def test_cancelling_a_running_batch_predict_stops_the_remaining_shards(tiny_model, run_now):
    version_id, _ = tiny_model
    calls = []

    def predict_then_cancel(model_version_id, movie_ids, **kwargs):
        calls.append(movie_ids)
        written = predict_movies(model_version_id, movie_ids, **kwargs)
        if len(calls) == 1:
            cancel(Job.objects.get(kind="predict"))
        return written

    with mock.patch(PREDICT_MOVIES, side_effect=predict_then_cancel):
        job = run_now(enqueue, "predict", {"model_version_id": version_id, "shard_size": 8})
    assert job.status == "cancelled", (job.error, job.log)
    assert len(calls) == 1
    assert job.result["shards_succeeded"] == 1 and job.result["shards_cancelled"] == 3
    assert Prediction.objects.filter(model_version_id=version_id).count() == 8


def test_an_empty_catalog_finishes_at_once(run_now, tiny_model):
    from catalog.models import Movie

    version_id, _ = tiny_model
    Movie.objects.all().delete()
    job = run_now(enqueue, "predict", {"model_version_id": version_id})
    assert job.status == "succeeded" and job.result["shards_total"] == 0


def test_retrain_chains_snapshot_train_evaluate_and_predict_all(tiny_model, run_now):
    version_id, movie_ids = tiny_model
    job = run_now(
        enqueue, "retrain", {"config": "tfidf-linear", "snapshot": {"min_genre_count": 2, "seed": 3}, "shard_size": 16}
    )
    assert job.status == "succeeded", (job.error, job.log)
    new_version = job.result["model_version_id"]
    assert new_version != version_id
    child = Job.objects.get(pk=job.result["predict_job_id"])
    assert child.parent_id == job.pk and child.status == "succeeded" and child.kind == "predict"
    assert job.result["predict"]["predictions_written"] == len(movie_ids)
    assert Prediction.objects.filter(model_version_id=new_version).count() == len(movie_ids)
    assert job.progress == 100.0


def test_ml_chooses_the_movies_to_predict(db):
    from ml.services.inference import movies_to_predict

    ids = make_movies(5)
    assert movies_to_predict() == (sorted(ids), 0)
    assert movies_to_predict([ids[3], ids[1], 999999]) == (sorted([ids[1], ids[3]]), 1)
