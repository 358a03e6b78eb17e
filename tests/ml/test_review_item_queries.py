"""The review item page reads its movie once (with the queue position), in a number of
queries that does not grow with the queue."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from catalog.models import Genre, Movie
from ml.models import AuditRun, LabelIssue
from ml.services.review import audit_queue_movies
from tests.factories import make_movie

pytestmark = pytest.mark.django_db


def queue_of(movies):
    """A succeeded audit with one queued "missing: Horror" issue per movie."""
    audit = AuditRun.objects.create(config_name="test", status=AuditRun.Status.SUCCEEDED, finished_at=timezone.now())
    horror = Genre.objects.get(name="Horror")
    LabelIssue.objects.bulk_create(
        LabelIssue(
            audit=audit,
            movie=movie,
            genre=horror,
            kind="missing",
            flagged=True,
            queued=True,
            quality=0.1,
            margin=0.9 + i / 1000,
            probability=0.95,
            threshold=0.5,
        )
        for i, movie in enumerate(movies)
    )
    return audit


def item_queries(client, position):
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse("ml:review_item", args=["errors", position]))
    assert response.status_code == 200
    return response, [q["sql"] for q in captured.captured_queries]


def test_review_item_reads_its_movie_once_and_stays_bounded(labeler_client, world):
    queue_of(Movie.objects.all())
    response, queries = item_queries(labeler_client, 2)
    movie = response.context["movie"]
    assert movie == list(audit_queue_movies("errors"))[1]  # the item at position 2
    assert response.context["audit_nav"]["total"] == 5 and movie.suggestions[0].evidence().startswith("missing: Horror")
    # the queue's count, then the movie at the position (with its poster): one read of it
    movie_reads = [q for q in queries if 'FROM "catalog_movie"' in q and not q.startswith("SELECT COUNT(")]
    assert len(movie_reads) == 1, movie_reads
    assert len(queries) <= 13  # 14 when the page read the movie again by its id
    queue_of([make_movie(title=f"More {i}", source_id=f"more{i}") for i in range(20)])
    _, more = item_queries(labeler_client, 2)
    assert len(more) == len(queries)
