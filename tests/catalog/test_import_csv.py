"""Plain CSV + poster folder importer, and the shared row-by-row engine behind every importer."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import IntegrityError

from catalog.importers import ImporterError, run_import
from catalog.importers import writer as import_writer
from catalog.importers.plain_csv import PlainCsvSource
from catalog.labels import set_labels
from catalog.models import Genre, ImportRun, LabelChange, LabelOrigin, Movie, Poster

HEADER = ["id", "title", "year", "overview", "genres", "source_id", "poster", "imdb_id", "text_source"]


def devset_row(tmdb_id: int, title: str, genres: str, *, year="2001", overview=None, imdb=None, poster=None):
    return [
        f"tmdb_{tmdb_id}",
        title,
        year,
        overview if overview is not None else f"The story of {title}.",
        genres,
        f"tmdb:{tmdb_id}",
        poster if poster is not None else f"tmdb_{tmdb_id}.jpg",
        imdb if imdb is not None else f"tt{tmdb_id:07d}",
        "tests",
    ]


def write_folder(folder: Path, rows, make_image, *, posters: dict | None = None, encoding="utf-8", tail="") -> Path:
    """A devset-shaped folder: movies.csv + posters/<poster>.jpg for every row (unless overridden)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "posters").mkdir(exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    (folder / "movies.csv").write_bytes((buffer.getvalue() + tail).encode(encoding))
    if posters is None:
        posters = {row[6]: make_image(seed=i) for i, row in enumerate(rows) if row[6]}
    for name, data in posters.items():
        (folder / "posters" / name).write_bytes(data)
    return folder


def labels_of(movie: Movie) -> set[str]:
    return set(movie.genres.values_list("name", flat=True))


def media_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


THREE = [
    devset_row(285, "Pirates at World's End", "Adventure|Fantasy|Action", year="2007"),
    devset_row(206647, "Spectre", "Action|Adventure|Crime", year="2015"),
    devset_row(49026, "The Dark Knight Rises", "Action|Crime|Drama|Thriller", year="2012"),
]


@pytest.mark.django_db
def test_happy_path_creates_movies_labels_and_posters(tmp_path, make_image, media_root):
    folder = write_folder(tmp_path / "set", THREE, make_image)
    run = run_import("csv", {"path": str(folder)})

    assert (run.status, run.created, run.updated, run.skipped, run.posters_stored) == ("succeeded", 3, 0, 0, 3)
    assert run.finished_at is not None
    spectre = Movie.objects.get(tmdb_id=206647)
    assert (spectre.title, spectre.year, spectre.imdb_id, spectre.source, spectre.source_id) == (
        "Spectre",
        2015,
        "tt0206647",
        "csv",
        "tmdb_206647",
    )
    assert labels_of(spectre) == {"Action", "Adventure", "Crime"}
    assert set(spectre.label_history.values_list("origin", flat=True)) == {LabelOrigin.IMPORTED}
    assert spectre.label_source == LabelOrigin.IMPORTED
    poster = spectre.poster
    data = (folder / "posters" / "tmdb_206647.jpg").read_bytes()
    assert poster.status == Poster.Status.PENDING
    assert poster.checksum == hashlib.sha256(data).hexdigest()
    assert poster.original.read() == data
    assert Genre.objects.count() == 6


@pytest.mark.django_db
def test_second_run_creates_nothing_and_writes_no_files(tmp_path, make_image, media_root):
    folder = write_folder(tmp_path / "set", THREE, make_image)
    run_import("csv", {"path": str(folder)})
    files_before = media_files(media_root)
    history_before = LabelChange.objects.count()

    again = run_import("csv", {"path": str(folder)})

    assert (again.created, again.updated, again.unchanged, again.posters_stored) == (0, 0, 3, 0)
    assert Movie.objects.count() == 3 and Poster.objects.count() == 3
    assert LabelChange.objects.count() == history_before
    assert media_files(media_root) == files_before


@pytest.mark.django_db
def test_changed_rows_update_fields_labels_and_poster(tmp_path, make_image, django_capture_on_commit_callbacks):
    folder = write_folder(tmp_path / "set", THREE, make_image)
    run_import("csv", {"path": str(folder)})
    old_poster_name = Movie.objects.get(tmdb_id=285).poster.original.name
    changed = [
        devset_row(285, "Pirates at World's End", "Adventure|Comedy", year="2007", overview="New text.")
    ] + THREE[1:]
    write_folder(folder, changed, make_image, posters={"tmdb_285.jpg": make_image(seed=99)})

    with django_capture_on_commit_callbacks(execute=True):
        run = run_import("csv", {"path": str(folder)})

    assert (run.created, run.updated, run.unchanged, run.posters_stored) == (0, 1, 2, 1)
    movie = Movie.objects.get(tmdb_id=285)
    assert movie.overview == "New text."
    assert labels_of(movie) == {"Adventure", "Comedy"}
    removed = set(movie.label_history.filter(action="removed").values_list("genre__name", flat=True))
    assert removed == {"Fantasy", "Action"}
    assert movie.poster.original.name != old_poster_name
    assert not movie.poster.original.storage.exists(old_poster_name), "the replaced original is deleted"


@pytest.mark.django_db
def test_person_curated_labels_survive_reimport(tmp_path, make_image):
    folder = write_folder(tmp_path / "set", THREE, make_image)
    run_import("csv", {"path": str(folder)})
    movie = Movie.objects.get(tmdb_id=49026)
    set_labels(movie, [Genre.objects.get(name="Drama")], origin=LabelOrigin.PERSON)
    changed = THREE[:2] + [devset_row(49026, "The Dark Knight Rises", "Action|Horror", year="2012", overview="Edited.")]
    write_folder(folder, changed, make_image)

    run = run_import("csv", {"path": str(folder)})

    movie.refresh_from_db()
    assert labels_of(movie) == {"Drama"}
    assert movie.label_source == LabelOrigin.PERSON
    assert movie.overview == "Edited."  # other fields still follow the source
    assert run.updated == 1
    assert not movie.label_history.filter(origin=LabelOrigin.IMPORTED, genre__name="Horror").exists()


@pytest.mark.django_db
def test_a_person_saving_after_the_batch_was_read_keeps_the_labels(tmp_path, make_image, monkeypatch):
    """The writer reads a batch's movies before writing them; a person's save landing in
    between is seen under the row lock and kept (deterministic form of the Postgres race in
    tests/catalog/test_label_races.py)."""
    folder = write_folder(tmp_path / "set", THREE, make_image)
    run_import("csv", {"path": str(folder)})
    movie = Movie.objects.get(tmdb_id=49026)
    real_prefetch = import_writer.ExistingMovies.prefetch.__func__

    def prefetch_then_a_person_saves(cls, records):
        lookup = real_prefetch(cls, records)
        set_labels(movie, [Genre.objects.get(name="Drama")], origin=LabelOrigin.PERSON, reason="by hand")
        return lookup

    monkeypatch.setattr(import_writer.ExistingMovies, "prefetch", classmethod(prefetch_then_a_person_saves))
    write_folder(
        folder, THREE[:2] + [devset_row(49026, "The Dark Knight Rises", "Action|Horror", year="2012")], make_image
    )

    run_import("csv", {"path": str(folder)})

    movie.refresh_from_db()
    assert labels_of(movie) == {"Drama"}
    assert movie.label_source == LabelOrigin.PERSON
    assert list(movie.label_history.order_by("-id").values_list("origin", flat=True)[:1]) == ["person"]


@pytest.mark.django_db
def test_truncated_last_row_is_skipped_with_reason(tmp_path, make_image):
    folder = write_folder(tmp_path / "set", THREE, make_image, tail='tmdb_77,"Cut off in the middle of a quoted')
    run = run_import("csv", {"path": str(folder)})

    assert (run.status, run.created, run.skipped) == ("succeeded", 3, 1)
    (skip,) = run.skipped_rows
    assert skip["row"] == 4 and skip["line"] == 5
    assert "cut off" in skip["reason"]
    assert any("last row may be cut off" in w for w in run.warnings)


@pytest.mark.django_db
def test_row_with_missing_columns_is_skipped(tmp_path, make_image):
    folder = write_folder(tmp_path / "set", THREE, make_image, tail="tmdb_78,Short row,1999\n")
    run = run_import("csv", {"path": str(folder)})
    assert run.created == 3
    assert run.skipped_rows == [{"row": 4, "line": 5, "reason": "has 3 columns, the header has 9 (cut off?)"}]


@pytest.mark.django_db
def test_latin1_file_is_decoded_with_a_reported_fallback(tmp_path, make_image):
    rows = [devset_row(194, "Amélie", "Comedy|Romance", overview="Une fille à Montmartre, café crème.")]
    folder = write_folder(tmp_path / "set", rows, make_image, encoding="latin-1")
    run = run_import("csv", {"path": str(folder)})

    assert run.created == 1
    movie = Movie.objects.get(tmdb_id=194)
    assert movie.title == "Amélie" and "café crème" in movie.overview
    assert any("not valid UTF-8" in w and "cp1252" in w for w in run.warnings)


@pytest.mark.django_db
def test_explicit_wrong_encoding_fails_clearly(tmp_path, make_image):
    folder = write_folder(tmp_path / "set", [devset_row(194, "Amélie", "Comedy")], make_image, encoding="latin-1")
    with pytest.raises(ImporterError, match="not valid utf-8"):
        run_import("csv", {"path": str(folder), "encoding": "utf-8"})
    assert ImportRun.objects.get().status == ImportRun.Status.FAILED


@pytest.mark.django_db
def test_duplicate_rows_import_the_movie_once(tmp_path, make_image):
    rows = THREE + [THREE[1], devset_row(999, "Spectre again", "Action", imdb="tt0206647")]
    folder = write_folder(tmp_path / "set", rows, make_image)
    run = run_import("csv", {"path": str(folder)})

    assert (run.created, run.skipped) == (3, 2)
    assert [s["reason"] for s in run.skipped_rows] == [
        "duplicate of row 2 (same TMDB id 206647)",
        "duplicate of row 2 (same IMDb id tt0206647)",
    ]
    assert Movie.objects.filter(title__startswith="Spectre").count() == 1


@pytest.mark.django_db
def test_bad_rows_are_reported_and_the_rest_imported(tmp_path, make_image):
    rows = [
        devset_row(1, "", "Drama"),
        devset_row(2, "Year words", "Drama", year="nineteen"),
        devset_row(3, "Bad imdb", "Drama", imdb="nm12"),
        devset_row(4, "Good one", "Drama"),
        devset_row(5, "No genres", ""),
    ]
    folder = write_folder(tmp_path / "set", rows, make_image)
    run = run_import("csv", {"path": str(folder)})

    assert (run.created, run.skipped) == (2, 3)
    assert [(s["row"], s["reason"]) for s in run.skipped_rows] == [
        (1, "title is empty"),
        (2, "year 'nineteen' is not a number"),
        (3, "IMDb id 'nm12' is not of the form tt1234567"),
    ]
    assert Movie.objects.get(tmdb_id=5).missing_genres is True
    assert Movie.objects.get(tmdb_id=4).missing_genres is False


@pytest.mark.django_db
def test_missing_corrupt_and_escaping_posters(tmp_path, make_image):
    rows = [
        devset_row(10, "No file", "Drama", poster="absent.jpg"),
        devset_row(11, "Broken bytes", "Drama", poster="broken.jpg"),
        devset_row(12, "Escapes", "Drama", poster="../secret.jpg"),
        devset_row(13, "Empty column", "Drama", poster=""),
    ]
    (tmp_path / "secret.jpg").write_bytes(make_image())
    folder = write_folder(tmp_path / "set", rows, make_image, posters={"broken.jpg": b"\xff\xd8 this is not a jpeg"})
    run = run_import("csv", {"path": str(folder)})

    assert (run.created, run.posters_stored) == (4, 0)
    statuses = {p.movie.tmdb_id: (p.status, p.error, bool(p.original)) for p in Poster.objects.select_related("movie")}
    assert statuses[10][0] == "missing" and "absent.jpg" in statuses[10][1]
    # Bytes that are not a JPEG/PNG/WebP image are not stored; the row says why.
    assert statuses[11][0] == "missing" and "rejected" in statuses[11][1] and not statuses[11][2]
    assert any(w.startswith("row 2") and "broken.jpg" in w for w in run.warnings)
    assert statuses[12][0] == "missing" and not statuses[12][2]
    assert statuses[13][0] == "missing"


@pytest.mark.django_db
def test_a_failing_row_leaves_nothing_half_written(tmp_path, make_image, monkeypatch, media_root):
    real_set_labels = import_writer.set_labels

    def flaky_set_labels(movie, genres, **kwargs):
        if movie.title == "Spectre":
            raise IntegrityError("simulated constraint failure")
        return real_set_labels(movie, genres, **kwargs)

    monkeypatch.setattr(import_writer, "set_labels", flaky_set_labels)
    folder = write_folder(tmp_path / "set", THREE, make_image)
    run = run_import("csv", {"path": str(folder)})

    assert (run.created, run.skipped) == (2, 1)
    assert run.skipped_rows[0]["row"] == 2 and "simulated constraint failure" in run.skipped_rows[0]["reason"]
    assert not Movie.objects.filter(title="Spectre").exists()
    stored = {p.original.name for p in Poster.objects.all()}
    on_disk = {str(p.relative_to(media_root)) for p in media_files(media_root)}
    assert on_disk == stored, "the rolled-back row's poster file was removed"


@pytest.mark.django_db
def test_conflicting_ids_are_not_merged(tmp_path, make_image):
    folder = write_folder(tmp_path / "set", THREE[:2], make_image)
    run_import("csv", {"path": str(folder)})
    # A new file whose row claims Spectre's TMDB id but Pirates' IMDb id.
    write_folder(tmp_path / "other", [devset_row(206647, "Mixed up", "Drama", imdb="tt0000285")], make_image)
    run = run_import("csv", {"path": str(tmp_path / "other")})
    assert run.skipped == 1 and "not merging" in run.skipped_rows[0]["reason"]
    assert Movie.objects.get(tmdb_id=206647).title == "Spectre"


@pytest.mark.django_db
def test_csv_path_with_separate_poster_folder_and_limit(tmp_path, make_image):
    folder = write_folder(tmp_path / "set", THREE, make_image)
    moved = tmp_path / "elsewhere"
    (folder / "posters").rename(moved)
    run = run_import("csv", {"path": folder / "movies.csv", "posters": moved, "limit": 2})
    assert (run.created, run.posters_stored) == (2, 2)
    assert run.params["posters"] == str(moved)


@pytest.mark.django_db
def test_unusable_input_fails_clearly(tmp_path):
    with pytest.raises(ImporterError, match="does not exist"):
        run_import("csv", {"path": str(tmp_path / "nope")})
    (tmp_path / "movies.csv").write_text("id,name\n1,x\n")
    with pytest.raises(ImporterError, match="lacks column") as info:
        run_import("csv", {"path": str(tmp_path)})
    assert info.value.run.status == ImportRun.Status.FAILED and "lacks column" in info.value.run.error
    with pytest.raises(ImporterError, match="unknown import kind"):
        run_import("excel", {})
    with pytest.raises(ImporterError, match="unknown csv import parameter.*start_date"):
        run_import("csv", {"path": str(tmp_path), "start_date": "2020-01-01"})
    with pytest.raises(ImporterError, match="limit must be a positive whole number"):
        run_import("csv", {"path": str(tmp_path), "limit": "ten"})


@pytest.mark.django_db
def test_progress_is_reported_and_cancelling_keeps_whole_batches(tmp_path, make_image, monkeypatch):
    monkeypatch.setattr(PlainCsvSource, "batch_size", 2)
    rows = [devset_row(100 + i, f"Movie {i}", "Drama|Comedy") for i in range(5)]
    folder = write_folder(tmp_path / "set", rows, make_image)
    seen = []
    run = run_import("csv", {"path": str(folder)}, progress=lambda msg, frac: seen.append(frac))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen) and len(seen) == 5

    class Cancelled(Exception):
        pass

    def cancel_after_first_batch(message, fraction):
        if fraction > 0:
            raise Cancelled("job cancelled")

    Movie.objects.all().delete()
    with pytest.raises(Cancelled):
        run_import("csv", {"path": str(folder)}, progress=cancel_after_first_batch)
    run = ImportRun.objects.order_by("-pk").first()
    assert run.status == ImportRun.Status.FAILED and "job cancelled" in run.error
    assert run.created == 2 and Movie.objects.count() == 2
    for movie in Movie.objects.all():
        assert labels_of(movie) == {"Drama", "Comedy"} and movie.poster.original


@pytest.mark.django_db
def test_import_csv_command_prints_summary(tmp_path, make_image):
    folder = write_folder(tmp_path / "set", THREE + [devset_row(7, "", "Drama")], make_image)
    out = io.StringIO()
    call_command("import_csv", str(folder), "--progress-every", "1", stdout=out, skip_checks=True)
    text = out.getvalue()
    assert "import #" in text and "3 created" in text and "1 skipped" in text
    assert "row 4 (line 5): title is empty" in text


@pytest.mark.django_db
def test_import_csv_command_fails_with_a_clear_message(tmp_path):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="import failed: .* does not exist"):
        call_command("import_csv", str(tmp_path / "missing"), skip_checks=True)


@pytest.mark.django_db
def test_corrupt_poster_is_stored_then_flagged_by_preprocessing_and_fixed_by_reimport(tmp_path, make_image):
    from catalog.preprocessing import preprocess_posters

    rows = [devset_row(21, "Good poster", "Drama"), devset_row(22, "Bad poster", "Drama")]
    # A JPEG cut off mid-data: its header is fine (so it is stored), its pixels are not.
    posters = {"tmdb_21.jpg": make_image(seed=1), "tmdb_22.jpg": make_image(400, 600, seed=3)[:2000]}
    folder = write_folder(tmp_path / "set", rows, make_image, posters=posters)
    run_import("csv", {"path": str(folder)})
    preprocess_posters()
    assert Poster.objects.get(movie__tmdb_id=22).status == Poster.Status.CORRUPT
    assert Poster.objects.get(movie__tmdb_id=21).status == Poster.Status.OK

    (folder / "posters" / "tmdb_22.jpg").write_bytes(make_image(seed=2))
    run = run_import("csv", {"path": str(folder)})
    assert (run.updated, run.unchanged, run.posters_stored) == (1, 1, 1)
    assert Poster.objects.get(movie__tmdb_id=22).status == Poster.Status.PENDING
    assert Poster.objects.get(movie__tmdb_id=21).status == Poster.Status.OK, "untouched poster keeps its result"
    preprocess_posters()
    assert Poster.objects.get(movie__tmdb_id=22).status == Poster.Status.OK
