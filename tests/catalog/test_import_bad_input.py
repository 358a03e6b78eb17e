"""Bad input is reported row by row and skipped; the rest of the file imports.

Also the controlled genre vocabulary (catalog.genres): unknown genre names are reported on
their row and not created unless the import allows new genres, with a cap.
These run on SQLite and, with DATABASE_URL set, on PostgreSQL (which refuses NUL in text:
there a NUL used to abort the whole import).
"""

from __future__ import annotations

import csv
import io
import json
import random
import string

import pytest

from catalog import genres as vocabulary
from catalog.importers import ImporterError, run_import
from catalog.models import Genre, ImportRun, Movie

HEADER = ["id", "title", "year", "overview", "genres", "source_id", "poster", "imdb_id"]


def write_csv(path, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def row(n: int, title: str, genres: str = "Drama", *, row_id=None, overview=None):
    return [
        row_id if row_id is not None else f"tmdb_{n}",
        title,
        "2001",
        overview if overview is not None else f"The story of {title}.",
        genres,
        f"tmdb:{n}",
        "",
        f"tt{n:07d}",
    ]


def reasons(run: ImportRun) -> dict[int, str]:
    return {skip["row"]: skip["reason"] for skip in run.skipped_rows}


@pytest.mark.django_db
def test_nul_in_one_csv_id_skips_that_row_only(tmp_path):
    path = write_csv(
        tmp_path / "movies.csv",
        [
            row(1, "First"),
            row(2, "Second", row_id="tmdb_\x002"),
            row(3, "Third"),
        ],
    )
    run = run_import("csv", {"path": str(path)})
    assert run.status == ImportRun.Status.SUCCEEDED
    assert run.created == 2 and run.skipped == 1
    assert sorted(Movie.objects.values_list("title", flat=True)) == ["First", "Third"]
    reason = reasons(run)[2]
    assert "source_id" in reason and "NUL" in reason and "position 6" in reason
    assert "\x00" not in json.dumps(run.skipped_rows) and "\x00" not in reason


@pytest.mark.django_db
def test_nul_or_lone_surrogate_in_text_fields_skips_the_row(tmp_path):
    path = write_csv(
        tmp_path / "movies.csv",
        [
            row(1, "Fine"),
            row(2, "Bad\x00title"),
            row(3, "Bad overview", overview="a\x00b"),
            row(4, "Bad genre", genres="Drama|Com\x00edy"),
            row(5, "Also fine"),
        ],
    )
    run = run_import("csv", {"path": str(path)})
    assert run.status == ImportRun.Status.SUCCEEDED
    assert run.created == 2 and run.skipped == 3
    got = reasons(run)
    assert got[2].startswith("title contains a NUL") and got[3].startswith("overview contains a NUL")
    assert got[4].startswith("genre contains a NUL")
    assert not Genre.objects.filter(name__contains="edy").exclude(name="Comedy").exists()


@pytest.mark.django_db
def test_kaggle_nul_id_and_poster_path_are_row_errors(tmp_path):
    path = tmp_path / "movies_metadata.csv"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "title", "genres", "imdb_id", "poster_path"])
    writer.writerow(["11", "Good", "[{'id': 18, 'name': 'Drama'}]", "tt0000011", ""])
    writer.writerow(["1\x002", "Bad id", "[{'id': 18, 'name': 'Drama'}]", "tt0000012", ""])
    writer.writerow(["13", "Bad poster", "[{'id': 18, 'name': 'Drama'}]", "tt0000013", "/a\x00.jpg"])
    path.write_text(buffer.getvalue(), encoding="utf-8")
    run = run_import("kaggle", {"path": str(path), "poster_url_base": "http://127.0.0.1:9/t/p/w342"})
    assert run.status == ImportRun.Status.SUCCEEDED
    assert run.created == 1 and run.skipped == 2
    assert "poster_path contains a NUL" in reasons(run)[3]
    assert "\x00" not in json.dumps(run.skipped_rows)


def write_mmimdb_json(folder, stem: str, payload: str | dict):
    folder.mkdir(exist_ok=True)
    text = payload if isinstance(payload, str) else json.dumps(payload)
    (folder / f"{stem}.json").write_text(text, encoding="utf-8")


@pytest.mark.django_db
def test_mmimdb_deeply_nested_json_is_one_skipped_file(tmp_path):
    folder = tmp_path / "dataset"
    write_mmimdb_json(folder, "0000001", {"title": "Before", "genres": ["Drama"], "year": 1990})
    depth = 200_000
    write_mmimdb_json(folder, "0000002", '{"title": "Deep", "plot": ' + "[" * depth + "]" * depth + "}")
    write_mmimdb_json(folder, "0000003", {"title": "After", "genres": ["Comedy"], "year": 1991})
    # A lone surrogate is valid JSON ("\ud800") but not storable text.
    write_mmimdb_json(folder, "0000004", '{"title": "Odd \\ud800 title", "genres": ["Drama"]}')
    run = run_import("mmimdb", {"path": str(folder)})
    assert run.status == ImportRun.Status.SUCCEEDED
    assert sorted(Movie.objects.values_list("title", flat=True)) == ["After", "Before"]
    skipped = {s["file"]: s["reason"] for s in run.skipped_rows}
    assert skipped["0000002.json"] == "0000002.json is nested too deeply to be a movie record"
    assert "lone surrogate U+D800" in skipped["0000004.json"]


def garbage_genres(rng: random.Random) -> str:
    return "|".join(
        "".join(rng.choice(string.ascii_letters) for _ in range(rng.randint(3, 12))) for _ in range(rng.randint(1, 3))
    )


@pytest.mark.django_db
@pytest.mark.slow  # imports 2,000 rows
def test_garbage_csv_creates_no_genres_and_reports_each_row(tmp_path):
    rng = random.Random(8)
    rows = [row(n, f"Junk {n}", garbage_genres(rng)) for n in range(1, 2001)]
    rows[9][4] = "Drama|Zorblax"  # one known genre: the movie keeps it
    path = write_csv(tmp_path / "movies.csv", rows)
    before = Genre.objects.count()
    run = run_import("csv", {"path": str(path)})
    assert run.status == ImportRun.Status.SUCCEEDED and run.created == 2000
    assert Genre.objects.count() - before == 1  # only "Drama", from the vocabulary
    assert set(Genre.objects.values_list("name", flat=True)) == {"Drama"}
    assert Genre.objects.get(name="Drama").tmdb_id == 18
    assert list(Movie.objects.get(source_id="tmdb_10").genres.values_list("name", flat=True)) == ["Drama"]
    assert run.warnings[1].startswith("row 1: unknown genre ")
    assert "row 10: unknown genre 'Zorblax'" in " ".join(run.warnings)
    assert run.warnings[-1].startswith("... and ")  # the stored list is capped, the import is not


@pytest.mark.django_db
def test_allow_new_genres_creates_at_most_the_cap(tmp_path, settings):
    settings.GENREWEB_MAX_NEW_GENRES = 5
    rows = [row(n, f"Movie {n}", f"Newgenre{n}|Drama") for n in range(1, 21)]
    path = write_csv(tmp_path / "movies.csv", rows)
    run = run_import("csv", {"path": str(path), "allow_new_genres": True})
    assert run.created == 20
    assert sorted(Genre.objects.exclude(name="Drama").values_list("name", flat=True)) == [
        f"Newgenre{n}" for n in range(1, 6)
    ]
    assert any("row 6: unknown genre 'Newgenre6' not created" in w for w in run.warnings)
    # A later import without the flag does not grow the vocabulary, but knows the genres created.
    path = write_csv(tmp_path / "more.csv", [row(30, "Later", "Newgenre1|Newgenre30")])
    run = run_import("csv", {"path": str(path)})
    assert list(Movie.objects.get(title="Later").genres.values_list("name", flat=True)) == ["Newgenre1"]
    assert not Genre.objects.filter(name="Newgenre30").exists()


@pytest.mark.django_db
def test_allow_new_genres_is_validated(tmp_path):
    path = write_csv(tmp_path / "movies.csv", [row(1, "One")])
    with pytest.raises(ImporterError, match="allow_new_genres must be true or false"):
        run_import("csv", {"path": str(path), "allow_new_genres": "yes"})


@pytest.mark.django_db
def test_imdb_genres_map_onto_the_tmdb_vocabulary(tmp_path):
    folder = tmp_path / "dataset"
    write_mmimdb_json(
        folder,
        "0000001",
        {"title": "Mapped", "genres": ["Sci-Fi", "Musical", "Film-Noir", "Biography", "Short", "Sport"]},
    )
    run = run_import("mmimdb", {"path": str(folder)})
    movie = Movie.objects.get(title="Mapped")
    assert sorted(movie.genres.values_list("name", flat=True)) == ["Crime", "History", "Music", "Science Fiction"]
    assert sorted(Genre.objects.values_list("tmdb_id", flat=True)) == [36, 80, 878, 10402]
    assert any("row 1: genre 'Short' has no TMDB equivalent" in w for w in run.warnings)
    assert any("'Sport'" in w for w in run.warnings)


@pytest.mark.django_db
def test_tmdb_genre_id_wins_over_a_translated_name(tmp_path):
    path = tmp_path / "movies_metadata.csv"
    path.write_text("id,title,genres\n5,Komisch,\"[{'id': 35, 'name': 'Komödie'}]\"\n", encoding="utf-8")
    run_import("kaggle", {"path": str(path)})
    assert list(Movie.objects.get(tmdb_id=5).genres.values_list("name", "tmdb_id")) == [("Comedy", 35)]


@pytest.mark.django_db
def test_all_unknown_genres_leave_existing_labels_alone(tmp_path):
    path = write_csv(tmp_path / "movies.csv", [row(1, "Kept", "Drama")])
    run_import("csv", {"path": str(path)})
    path = write_csv(tmp_path / "movies.csv", [row(1, "Kept", "Qwzx")])
    run = run_import("csv", {"path": str(path)})
    assert list(Movie.objects.get(title="Kept").genres.values_list("name", flat=True)) == ["Drama"]
    assert run.unchanged == 1


def test_vocabulary_is_tmdbs_nineteen_movie_genres():
    assert len(vocabulary.TMDB_MOVIE_GENRES) == 19
    assert vocabulary.canonical_name("SciFi") == vocabulary.canonical_name("sci-fi") == "Science Fiction"
    assert vocabulary.canonical_name("drama") == "Drama"
    assert vocabulary.canonical_name("Zorblax") is None


@pytest.mark.django_db
def test_import_command_allow_new_genres_flag(tmp_path, settings):
    from django.core.management import call_command

    settings.GENREWEB_MAX_NEW_GENRES = 50
    path = write_csv(tmp_path / "movies.csv", [row(1, "Flagged", "Mumblecore|Drama")])
    call_command("import_csv", str(path), stdout=io.StringIO())
    assert not Genre.objects.filter(name="Mumblecore").exists()
    call_command("import_csv", str(path), "--allow-new-genres", stdout=io.StringIO())
    assert sorted(Movie.objects.get(title="Flagged").genres.values_list("name", flat=True)) == ["Drama", "Mumblecore"]
