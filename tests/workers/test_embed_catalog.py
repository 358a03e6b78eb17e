"""The embed_catalog job kind: sharded like batch predict, resumable, staff only; progress moves
per batch inside a shard, with an ETA on the job page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from ml.models import Embedding
from tests.factories import genre_poster, make_movie, make_poster, make_user
from tests.ml.store_encoders import CONFIG, no_encoder_builds, registered_store_encoders
from workers import sharding
from workers.jobs import enqueue
from workers.kinds import InvalidJobParams, validate_params
from workers.models import Job, JobShard

pytestmark = pytest.mark.django_db


@pytest.fixture
def store_encoders(settings):
    settings.GENREWEB_EMBED_CONFIG = CONFIG
    with registered_store_encoders() as builds:
        yield builds


@pytest.fixture
def run_now(eager_celery, django_capture_on_commit_callbacks):
    def run(operation, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            job = operation(*args, **kwargs)
        job.refresh_from_db()
        return job

    return run


def _movies(n: int) -> list[int]:
    ids = []
    for i in range(n):
        movie = make_movie(title=f"M{i}", source_id=f"m{i}", genres=["Drama"], overview=f"Story {i} of grief.")
        make_poster(movie, derivative=genre_poster(["Drama"], seed=i), status="ok")
        ids.append(movie.pk)
    return ids


def test_embed_catalog_fills_the_store_over_shards_and_a_rerun_encodes_nothing(store_encoders, run_now):
    ids = _movies(7)
    job = run_now(enqueue, "embed_catalog", {"shard_size": 3})
    assert job.status == "succeeded", (job.error, job.log)
    assert [len(s.movie_ids) for s in job.shards.order_by("index")] == [3, 3, 1]
    assert job.result["movies_embedded"] == 7 and job.result["vectors_written"] == 14
    assert "model_version_id" not in job.result and job.progress == 100.0
    assert Embedding.objects.count() == 2 * len(ids)
    with no_encoder_builds():
        again = run_now(enqueue, "embed_catalog", {"shard_size": 3, "encoders": ["text", "image"]})
    assert again.status == "succeeded" and again.result["vectors_written"] == 0


def test_embed_catalog_parameters_are_checked():
    with pytest.raises(InvalidJobParams) as caught:
        validate_params("embed_catalog", {"encoders": ["audio"], "config": "tfidf-linear", "shard_size": 0})
    assert set(caught.value.errors) == {"encoders", "config", "shard_size"}
    assert validate_params("embed_catalog", {"encoders": ["image"]}) == {"encoders": ["image"]}


def test_only_staff_may_queue_it(client, store_encoders, eager_celery):
    client.force_login(make_user("reader"))
    assert client.post("/jobs/", {"kind": "embed_catalog"}).status_code == 403
    assert not Job.objects.filter(kind="embed_catalog").exists()
    client.force_login(make_user("boss", staff=True))
    assert client.post("/jobs/", {"kind": "embed_catalog"}).status_code == 302
    assert Job.objects.filter(kind="embed_catalog").count() == 1


def test_shard_progress_moves_the_job_per_batch_and_the_page_shows_an_eta(client):
    job = Job.objects.create(
        kind="embed_catalog", status=Job.Status.RUNNING, started_at=timezone.now() - timedelta(seconds=60)
    )
    done = JobShard.objects.create(job=job, index=0, movie_ids=list(range(100)), status=JobShard.Status.SUCCEEDED)
    running = JobShard.objects.create(job=job, index=1, movie_ids=list(range(100)), status=JobShard.Status.RUNNING)
    JobShard.objects.create(job=job, index=2, movie_ids=list(range(100)))
    progress = sharding.ShardProgress(job.pk, running.pk, min_interval=0)
    progress("image features", 0.5)
    job.refresh_from_db()
    running.refresh_from_db()
    assert running.progress == 0.5 and done.progress == 0.0
    assert job.progress == 50.0  # one shard done, one half done, of three
    assert "1/3 shards done" in job.step
    assert job.eta_s() == pytest.approx(60, rel=0.05)  # 60 s for 50 %: about 60 s more
    client.force_login(make_user("staff", staff=True))
    body = client.get(f"/jobs/{job.pk}/status.json").json()
    assert body["eta"].startswith("about") and body["eta_s"] > 0
    assert "min left" in client.get(f"/jobs/{job.pk}/").content.decode()
