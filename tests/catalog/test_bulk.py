"""Bulk label changes and their undo (catalog.bulk): one audited change set, counts, the
per-genre stale rule of an undo, undo of an undo, and (PostgreSQL) a relabel racing an undo."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from catalog.bulk import BulkError, NotUndoable, apply_bulk, undo_change_set
from catalog.labels import change_labels, set_labels, write_labels
from catalog.models import ChangeSet, Genre, LabelChange, LabelOrigin, Movie
from tests.factories import make_movie, make_user


def labels(movie) -> set[str]:
    return set(Movie.objects.get(pk=movie.pk).labels.values_list("genre__name", flat=True))


@pytest.fixture
def catalog(db):
    """Six movies: four dramas (one already a comedy too), two horror films."""
    movies = [
        make_movie(title="Drama 1", source_id="d1", genres=["Drama"]),
        make_movie(title="Drama 2", source_id="d2", genres=["Drama", "Comedy"]),
        make_movie(title="Drama 3", source_id="d3", genres=["Drama"]),
        make_movie(title="Drama 4", source_id="d4", genres=["Drama"]),
        make_movie(title="Horror 1", source_id="h1", genres=["Horror"]),
        make_movie(title="Horror 2", source_id="h2", genres=["Horror"]),
    ]
    genres = {g.name: g for g in Genre.objects.all()}
    return movies, genres


def dramas():
    return Movie.objects.filter(labels__genre__name="Drama")


def test_bulk_add_is_one_audited_change_set_and_counts_unchanged(catalog):
    movies, genres = catalog
    user = make_user("lena")
    before = {m.pk: Movie.objects.get(pk=m.pk).label_version for m in movies}

    change_set = apply_bulk(dramas(), add=[genres["Comedy"]], user=user, description="dramas are funny", batch_size=3)

    assert change_set.status == ChangeSet.Status.SUCCEEDED and change_set.kind == ChangeSet.Kind.BULK
    assert (change_set.matched, change_set.changed, change_set.unchanged, change_set.skipped) == (4, 3, 1, 0)
    assert change_set.labels_added == 3 and change_set.labels_removed == 0
    assert change_set.add == ["Comedy"] and change_set.user == user
    for movie in movies[:4]:
        assert labels(movie) >= {"Drama", "Comedy"}
    assert labels(movies[4]) == {"Horror"}
    rows = LabelChange.objects.filter(change_set=change_set)
    assert sorted(rows.values_list("movie__title", flat=True)) == ["Drama 1", "Drama 3", "Drama 4"]
    assert {(r.action, r.genre.name, r.origin, r.user, r.reason) for r in rows} == {
        ("added", "Comedy", LabelOrigin.PERSON, user, "dramas are funny")
    }
    after = {m.pk: Movie.objects.get(pk=m.pk) for m in movies}
    # changed movies moved on one version and became person-curated; the rest did not move
    assert [after[m.pk].label_version - before[m.pk] for m in movies] == [1, 0, 1, 1, 0, 0]
    assert after[movies[0].pk].label_source == LabelOrigin.PERSON
    assert after[movies[1].pk].label_source == LabelOrigin.IMPORTED


def test_bulk_remove_and_refusals(catalog):
    movies, genres = catalog
    change_set = apply_bulk(Movie.objects.all(), remove=[genres["Horror"]])
    assert (change_set.matched, change_set.changed, change_set.unchanged) == (6, 2, 4)
    assert labels(movies[4]) == set() and Movie.objects.get(pk=movies[4].pk).missing_genres
    with pytest.raises(BulkError):
        apply_bulk(Movie.objects.all())
    with pytest.raises(BulkError, match="both add and remove Drama"):
        apply_bulk(Movie.objects.all(), add=[genres["Drama"]], remove=[genres["Drama"]])


def test_undo_reverts_exactly_what_it_changed(catalog):
    movies, genres = catalog
    bulk = apply_bulk(dramas(), add=[genres["Comedy"]], remove=[genres["Drama"]], batch_size=2)
    assert labels(movies[1]) == {"Comedy"}  # already a comedy: only Drama went
    undo = undo_change_set(bulk, user=make_user("lena"), batch_size=2)

    assert undo.kind == ChangeSet.Kind.UNDO and undo.undoes == bulk and undo.status == ChangeSet.Status.SUCCEEDED
    assert (undo.matched, undo.changed, undo.skipped) == (4, 4, 0)
    assert undo.labels_added == 4 and undo.labels_removed == 3
    assert labels(movies[0]) == {"Drama"}
    assert labels(movies[1]) == {"Drama", "Comedy"}  # its own Comedy stays: the bulk did not add it
    assert LabelChange.objects.filter(change_set=undo).count() == 7
    with pytest.raises(NotUndoable, match="already undone"):
        undo_change_set(bulk)


def test_undo_leaves_a_genre_changed_since_and_reports_it(catalog):
    movies, genres = catalog
    bulk = apply_bulk(dramas(), add=[genres["Comedy"], genres["Horror"]])
    person = make_user("pat")
    # After the bulk change a person removes Comedy from Drama 1 and re-adds Horror... to Drama 3
    change_labels(movies[0], remove=[genres["Comedy"]], user=person)
    change_labels(movies[2], remove=[genres["Horror"]], user=person)
    change_labels(movies[2], add=[genres["Horror"]], user=person)
    # ... and someone relabels Drama 4 on a genre the bulk change did not touch
    change_labels(movies[3], add=[Genre.objects.create(name="Romance")])

    undo = undo_change_set(bulk)

    # Drama 1: Comedy already gone (nothing to do), Horror reverted
    assert labels(movies[0]) == {"Drama"}
    # Drama 3: Horror changed since -> kept; Comedy reverted
    assert labels(movies[2]) == {"Drama", "Horror"}
    # Drama 4: the unrelated Romance stays, the bulk's genres go
    assert labels(movies[3]) == {"Drama", "Romance"}
    assert undo.skipped == 1
    assert undo.skipped_detail == [
        {
            "movie": movies[2].pk,
            "title": "Drama 3",
            "genres": ["Horror"],
            "reason": "changed again since; left as it is now",
        }
    ]


def test_undo_of_an_undo_redoes_it(catalog):
    movies, genres = catalog
    bulk = apply_bulk(dramas(), add=[genres["Comedy"]])
    undo = undo_change_set(bulk)
    redo = undo_change_set(undo)
    assert redo.undoes == undo and redo.changed == 3
    assert all("Comedy" in labels(m) for m in movies[:4])


def test_a_running_change_set_cannot_be_undone_unless_its_process_died(catalog):
    from datetime import timedelta

    from django.utils import timezone

    from catalog.bulk import INTERRUPTED_AFTER

    movies, genres = catalog
    running = ChangeSet.objects.create(kind=ChangeSet.Kind.BULK, add=["Comedy"])
    write_labels(movies[0], add=[genres["Comedy"]], change_set=running)  # its first batch
    with pytest.raises(NotUndoable, match="still running"):
        undo_change_set(running)
    # no batch for longer than INTERRUPTED_AFTER: the process is gone
    ChangeSet.objects.filter(pk=running.pk).update(updated_at=timezone.now() - INTERRUPTED_AFTER - timedelta(seconds=1))
    undo = undo_change_set(running)
    running.refresh_from_db()
    assert running.status == ChangeSet.Status.FAILED and running.error.startswith("interrupted")
    assert undo.changed == 1 and labels(movies[0]) == {"Drama"}


def test_a_failed_batch_leaves_a_failed_change_set_that_can_be_undone(catalog):
    movies, genres = catalog
    calls = []

    def fail_on_second(ids):
        calls.append(ids)
        if len(calls) == 2:
            raise RuntimeError("refresh broke")

    with pytest.raises(RuntimeError):
        apply_bulk(dramas(), add=[genres["Comedy"]], batch_size=2, on_changed=fail_on_second)
    failed = ChangeSet.objects.get()
    assert failed.status == ChangeSet.Status.FAILED and "refresh broke" in failed.error
    assert failed.changed == 3  # both batches committed before the hook failed
    undo = undo_change_set(failed)
    assert undo.changed == 3 and labels(movies[0]) == {"Drama"}


def test_bulk_write_uses_a_constant_number_of_queries_per_batch(catalog, django_assert_max_num_queries):
    movies, genres = catalog
    for n in range(20):
        make_movie(title=f"More {n}", source_id=f"m{n}", genres=["Drama"])
    with django_assert_max_num_queries(30):  # 24 dramas in one batch; per-movie writes would need > 100
        apply_bulk(dramas(), add=[genres["Comedy"]], batch_size=500)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_relabel_racing_an_undo_is_never_lost():
    """A person takes Comedy off each movie and then puts it back with Horror (their last
    word: Comedy and Horror) while an undo of the bulk change that added Comedy runs. Whatever
    order the row locks give, the person's labels survive: an undo that ran before them is
    overwritten by the person's later write, and one that comes after skips the genre the
    person changed since. (An undo that restored the old set, or removed Comedy blindly,
    would leave Drama alone or Drama + Horror.)"""
    genres = {n: Genre.objects.create(name=n) for n in ("Drama", "Comedy", "Horror")}
    movies = [make_movie(title=f"M{n}", source_id=f"r{n}", genres=["Drama"]) for n in range(40)]
    person = make_user("pat")
    skipped = []
    for trial in range(5):
        bulk = apply_bulk(Movie.objects.all(), add=[genres["Comedy"]], batch_size=7)
        barrier = threading.Barrier(2)
        errors = []

        def relabel(barrier=barrier, errors=errors):
            try:
                barrier.wait()
                for movie in reversed(movies):  # against the undo's order: they meet in the middle
                    change_labels(movie, remove=[genres["Comedy"]], user=person)
                    change_labels(movie, add=[genres["Comedy"], genres["Horror"]], user=person)
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
            finally:
                connection.close()

        def undo(barrier=barrier, errors=errors, bulk=bulk):
            try:
                barrier.wait()
                undo_change_set(bulk, batch_size=7)
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=relabel), threading.Thread(target=undo)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        for movie in movies:
            assert labels(movie) == {"Drama", "Comedy", "Horror"}, (trial, movie.title)
        undo = ChangeSet.objects.get(undoes=bulk)
        assert undo.status == ChangeSet.Status.SUCCEEDED and undo.matched == 40
        skipped.append(undo.skipped)
        for movie in movies:  # reset for the next trial
            set_labels(movie, [genres["Drama"]], user=person)
    # the undo did meet movies the person had changed since (the race was real at least once)
    assert sum(skipped) > 0, skipped


def test_a_change_set_runs_once_and_is_not_undone_before_it_ran(catalog):
    from catalog.bulk import NotQueued, new_bulk, new_undo, run_change_set

    movies, genres = catalog
    queued = new_bulk(add=[genres["Comedy"]], selection={"ids": [movies[0].pk]})
    assert queued.status == ChangeSet.Status.QUEUED and not queued.changes.exists()
    with pytest.raises(NotUndoable, match="not started yet"):
        new_undo(queued)
    reported = []
    run_change_set(queued, Movie.objects.filter(pk=movies[0].pk), progress=lambda *call: reported.append(call))
    assert queued.status == ChangeSet.Status.SUCCEEDED and labels(movies[0]) == {"Drama", "Comedy"}
    assert reported == [("1 of 1 movies, 1 changed", 0.99)]
    with pytest.raises(NotQueued, match="runs once"):
        run_change_set(queued, Movie.objects.all())
    assert LabelChange.objects.filter(change_set=queued).count() == 1


def test_the_catalog_views_alone_run_a_change_set_in_the_request(catalog):
    """Without the workers layer (its views and API enqueue a job), catalog's own API view
    runs the change set before it answers: 201, finished."""
    from rest_framework.test import APIRequestFactory, force_authenticate

    from catalog.api import ChangeSetViewSet

    movies, _ = catalog
    request = APIRequestFactory().post("/", {"add": ["Comedy"], "movies": [movies[0].pk]}, format="json")
    force_authenticate(request, user=make_user("lena"))
    answer = ChangeSetViewSet.as_view({"post": "create"})(request)
    assert answer.status_code == 201 and answer.data["status"] == "succeeded" and answer.data["changed"] == 1
    assert labels(movies[0]) == {"Drama", "Comedy"}
