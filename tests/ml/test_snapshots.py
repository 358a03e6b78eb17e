"""Dataset snapshots: eligibility, rare genres, person labels, split proportions, content hash."""

import pytest

from catalog.labels import set_labels
from catalog.models import Genre, LabelOrigin, Poster
from ml.models import DatasetSnapshot, ImmutableRecordError, SnapshotMember
from ml.services.snapshots import SnapshotError, build_snapshot

pytestmark = pytest.mark.django_db


def test_same_data_gives_same_hash(tiny_catalog):
    a = build_snapshot(name="a", min_genre_count=1)
    b = build_snapshot(name="b", min_genre_count=1)
    assert a.content_hash == b.content_hash and len(a.content_hash) == 64
    assert b.report["same_content_as"] == [a.pk]
    assert list(a.members.order_by("movie_id").values_list("movie_id", "split", "labels")) == list(
        b.members.order_by("movie_id").values_list("movie_id", "split", "labels")
    )
    # Split parameters are part of the hash.
    assert build_snapshot(seed=14, min_genre_count=1).content_hash != a.content_hash
    assert build_snapshot(fractions=(0.6, 0.2, 0.2), min_genre_count=1).content_hash != a.content_hash


def test_label_change_changes_hash_and_person_labels_win(tiny_catalog):
    before = build_snapshot(min_genre_count=1)
    movie = tiny_catalog[0]  # imported as Action
    set_labels(movie, [Genre.objects.get(name="Comedy")], origin=LabelOrigin.PERSON, reason="wrong genre")
    after = build_snapshot(min_genre_count=1)
    assert after.content_hash != before.content_hash
    member = after.members.get(movie=movie)
    assert [after.genres[i] for i in member.labels] == ["Comedy"]
    assert after.report["label_sources"] == {"imported": 39, "person": 1}


def test_poster_checksum_change_changes_hash(tiny_catalog):
    before = build_snapshot(min_genre_count=1)
    Poster.objects.filter(movie=tiny_catalog[3]).update(derivative_checksum="0" * 64)
    after = build_snapshot(min_genre_count=1)
    assert after.content_hash != before.content_hash
    assert after.members.get(movie=tiny_catalog[3]).poster_checksum == "0" * 64


@pytest.mark.parametrize("field, value", [("title", "Renamed"), ("year", 1901), ("overview", "Rewritten.")])
def test_every_text_field_a_preset_reads_changes_the_hash(tiny_catalog, field, value):
    # the recommended preset's text is title + overview; a preset may read the year too
    before = build_snapshot(min_genre_count=1)
    movie = tiny_catalog[5]
    setattr(movie, field, value)
    movie.save()
    after = build_snapshot(min_genre_count=1)
    assert after.hash_version == 2 and after.content_hash != before.content_hash
    assert after.members.get(movie=movie).text_checksum != before.members.get(movie=movie).text_checksum
    assert (
        after.members.get(movie=tiny_catalog[6]).text_checksum
        == before.members.get(movie=tiny_catalog[6]).text_checksum
    )

    from ml.services.data import snapshot_examples

    assert snapshot_examples(before).text_changed == 1 and snapshot_examples(after).text_changed == 0


def test_a_snapshot_built_before_checks_its_overview_only_checksums(tiny_catalog):
    from ml.services.data import overview_checksum, snapshot_examples

    snapshot = build_snapshot(min_genre_count=1)
    # as a hash_version 1 snapshot stored them: the overview alone
    old = DatasetSnapshot.objects.create(content_hash="1" * 64, genres=snapshot.genres, hash_version=1)
    SnapshotMember.objects.bulk_create(
        SnapshotMember(
            snapshot=old,
            movie_id=m.movie_id,
            split=m.split,
            labels=m.labels,
            poster_checksum=m.poster_checksum,
            text_checksum=overview_checksum(m.movie.overview),
        )
        for m in snapshot.members.select_related("movie")
    )
    assert snapshot_examples(old).text_changed == 0  # readable as it was, no false drift
    movie = tiny_catalog[7]
    movie.title = "Renamed"
    movie.save()
    assert snapshot_examples(old).text_changed == 0  # it never covered the title
    movie.overview = "Rewritten."
    movie.save()
    data = snapshot_examples(old)
    assert data.text_changed == 1 and "1 overview(s) were edited" in " ".join(data.notes)


def test_exclusions_are_counted_by_reason(tiny_catalog, make_movie):
    make_movie(("Drama",), excluded_from_training=True)
    make_movie(("Drama",), duplicate_of=tiny_catalog[0])
    make_movie((), overview="No genres here")
    make_movie(("Drama",), overview="", poster=False)  # nothing to learn from
    kept = make_movie(("Drama",), overview="", poster=True)  # poster alone is enough
    snapshot = build_snapshot(min_genre_count=1)
    assert snapshot.report["excluded"] == {
        "duplicate": 1,
        "excluded_from_training": 1,
        "missing_genres": 1,
        "missing_overview_and_no_usable_poster": 1,
    }
    assert snapshot.n_members == 41 and snapshot.members.filter(movie=kept).exists()
    assert snapshot.report["without_overview"] == 1 and snapshot.report["total_movies"] == 45


def test_rare_genres_are_reported_and_dropped_or_kept(tiny_catalog, make_movie):
    make_movie(("Western",))  # the only Western: its movie has nothing left when dropped
    make_movie(("Western", "Drama"))
    dropped = build_snapshot(min_genre_count=3)
    assert dropped.report["rare_genres"] == [{"genre": "Western", "count": 2}]
    assert "Western" not in dropped.genres and dropped.report["excluded"] == {"only_rare_genres": 1}
    assert dropped.n_members == 41 and dropped.report["label_sources"] == {"imported": 41}
    kept = build_snapshot(min_genre_count=3, keep_rare_genres=True)
    assert "Western" in kept.genres and kept.n_members == 42
    assert kept.report["rare_genres"] == [{"genre": "Western", "count": 2}]


def test_split_is_stratified_and_recorded(make_movie):
    for i in range(100):
        make_movie(("Action",) if i % 4 else ("Action", "Horror"))
    snapshot = build_snapshot(min_genre_count=1, fractions=(0.6, 0.2, 0.2))
    assert snapshot.split_counts == {"train": 60, "val": 20, "test": 20}
    horror = snapshot.report["genre_counts"]["Horror"]
    assert horror == {"train": 15, "val": 5, "test": 5, "total": 25}
    assert SnapshotMember.objects.filter(snapshot=snapshot, split="val").count() == 20


def test_progress_error_leaves_nothing(tiny_catalog):
    def cancel(message, fraction):
        if message.startswith("Stored"):
            raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        build_snapshot(min_genre_count=1, progress=cancel)
    assert not DatasetSnapshot.objects.exists() and not SnapshotMember.objects.exists()


def test_bad_parameters_and_empty_catalog(db):
    with pytest.raises(SnapshotError, match="summing to 1"):
        build_snapshot(fractions=(0.5, 0.2, 0.2))
    with pytest.raises(SnapshotError, match="min_genre_count"):
        build_snapshot(min_genre_count=0)
    with pytest.raises(SnapshotError, match="no movie is eligible"):
        build_snapshot()


def test_members_are_frozen(tiny_catalog):
    member = build_snapshot(min_genre_count=1).members.first()
    member.split = "test"
    with pytest.raises(ImmutableRecordError):
        member.save()


def test_loaders_give_engine_examples_and_report_drift(tiny_catalog):
    import os

    from ml.services.data import movie_examples, snapshot_examples

    snapshot = build_snapshot(min_genre_count=1, fractions=(0.5, 0.25, 0.25))
    data = snapshot_examples(snapshot, ["train", "val"])
    assert len(data.examples["train"]) == snapshot.split_counts["train"] and "test" not in data.examples
    example = data.examples["train"][0]
    movie = tiny_catalog[int(example.key) - tiny_catalog[0].pk]
    assert example.text == movie.overview and os.path.isfile(example.image)
    # title and year travel too (a config's text_fields may read them)
    assert (example.title, example.year) == (movie.title, movie.year) and movie.title
    assert [snapshot.genres[i] for i in example.labels] == sorted(g.name for g in movie.genres.all())

    # A lost derivative file, a deleted movie and an edited overview are reported, not fatal.
    lost = tiny_catalog[1]
    os.remove(lost.poster.derivative.path)
    tiny_catalog[2].delete()
    tiny_catalog[3].overview = "Rewritten after the snapshot."
    tiny_catalog[3].save()
    data = snapshot_examples(snapshot, ["train", "val", "test"])
    assert (data.missing_movies, data.poster_changed, data.text_changed) == (1, 1, 1) and len(data.notes) == 3
    assert sum(len(v) for v in data.examples.values()) == 39
    (lost_example,) = movie_examples([lost.pk])
    assert lost_example.image is None and lost_example.labels == []
    assert (lost_example.title, lost_example.year) == (lost.title, lost.year)
    assert [e.key for e in movie_examples([tiny_catalog[5].pk, 999_999, tiny_catalog[4].pk])] == [
        str(tiny_catalog[5].pk),
        str(tiny_catalog[4].pk),
    ]


def test_snapshot_content_is_frozen_but_name_is_not(tiny_catalog):
    snapshot = build_snapshot(min_genre_count=1)
    snapshot.name = "renamed"
    snapshot.save()
    snapshot.genres = snapshot.genres[:1]
    with pytest.raises(ImmutableRecordError, match="genres"):
        snapshot.save()
    with pytest.raises(ImmutableRecordError, match="content_hash"):
        DatasetSnapshot.objects.filter(pk=snapshot.pk).update(content_hash="0" * 64)
    assert DatasetSnapshot.objects.get(pk=snapshot.pk).name == "renamed"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postgres_build_reads_one_consistent_catalog_state(make_movie):
    from django.db import connection

    for combo in [("Action",), ("Comedy",), ("Action", "Comedy")] * 4:
        make_movie(combo)
    assert not connection.in_atomic_block  # so the repeatable-read path is the one taken
    seen_levels = []

    def spy(message, fraction):
        with connection.cursor() as cursor:
            cursor.execute("SHOW transaction_isolation")
            seen_levels.append(cursor.fetchone()[0])

    first = build_snapshot(min_genre_count=1, progress=spy)
    assert set(seen_levels) == {"repeatable read"}
    assert build_snapshot(min_genre_count=1).content_hash == first.content_hash
    assert not connection.in_atomic_block
