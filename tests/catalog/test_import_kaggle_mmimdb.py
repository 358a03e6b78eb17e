"""Kaggle "The Movies Dataset" and MM-IMDb importers on small generated files."""

from __future__ import annotations

import csv
import io
import json
from datetime import date

import pytest
from django.core.management import call_command

from catalog.importers import ImporterError, run_import
from catalog.labels import set_labels
from catalog.models import Genre, LabelOrigin, Movie, Poster

from .fake_tmdb import FakeMovie

KAGGLE_HEADER = (
    "adult,belongs_to_collection,budget,genres,homepage,id,imdb_id,original_language,original_title,overview,"
    "popularity,poster_path,production_companies,production_countries,release_date,revenue,runtime,"
    "spoken_languages,status,tagline,title,video,vote_average,vote_count"
).split(",")


def kaggle_row(
    tmdb_id, title, genres, *, imdb="", date_="1995-10-30", popularity="21.946943", poster_path="", lang="en"
):
    values = dict.fromkeys(KAGGLE_HEADER, "")
    values.update(
        adult="False",
        budget="30000000",
        genres=genres,
        id=str(tmdb_id),
        imdb_id=imdb,
        original_language=lang,
        original_title=title,
        overview=f"Overview of {title}.",
        popularity=popularity,
        poster_path=poster_path,
        release_date=date_,
        title=title,
        video="False",
        vote_average="7.7",
        vote_count="5415",
    )
    return [values[h] for h in KAGGLE_HEADER]


def write_kaggle(path, rows, *, tail=""):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(KAGGLE_HEADER)
    writer.writerows(rows)
    path.write_text(buffer.getvalue() + tail, encoding="utf-8")
    return path


TOY = "[{'id': 16, 'name': 'Animation'}, {'id': 35, 'name': 'Comedy'}, {'id': 10751, 'name': 'Family'}]"
JUMANJI = "[{'id': 12, 'name': 'Adventure'}, {'id': 14, 'name': 'Fantasy'}, {'id': 10751, 'name': 'Family'}]"


def realistic_rows():
    shifted = kaggle_row("1997-08-20", "", "[]", popularity="Beware Of Frost Bites")
    return [
        kaggle_row(862, "Toy Story", TOY, imdb="tt0114709", poster_path="/rhIRbceoE9lR4veEXuwCC2wARtG.jpg"),
        kaggle_row(8844, "Jumanji", JUMANJI, imdb="tt0113497", date_="15-12-1995"),
        shifted,
        kaggle_row(15602, "Grumpier Old Men", "[{'id': 10749, 'name': 'Romance'", imdb="tt0113228"),
        kaggle_row(31357, "Evil genres", "__import__('os').system('echo hacked')", imdb="tt0114885"),
        kaggle_row(11862, "Father of the Bride", "[]", imdb="tt0113041"),
        kaggle_row(949, "Heat", "[{'id': 28, 'name': 'Action'}]", imdb="tt0113277", popularity="lots"),
        kaggle_row(862, "Toy Story", TOY, imdb="tt0114709"),
        kaggle_row(710, "GoldenEye", "[{'id': 28, 'name': 'Action'}]", imdb="tt0113189", date_="1995-13-45"),
    ]


@pytest.mark.django_db
def test_kaggle_parses_real_quirks_row_by_row(tmp_path):
    path = write_kaggle(tmp_path / "movies_metadata.csv", realistic_rows())
    run = run_import("kaggle", {"path": str(path)})

    assert (run.status, run.created) == ("succeeded", 3)
    reasons = {s["row"]: s["reason"] for s in run.skipped_rows}
    assert reasons == {
        3: "id '1997-08-20' is not a positive whole number",
        4: "genres \"[{'id': 10749, 'name': 'Romance'\" is not a list of {id, name}",
        5: "genres \"__import__('os').system('echo hacked')\" is not a list of {id, name}",
        7: "popularity 'lots' is not a number",
        8: "duplicate of row 1 (same TMDB id 862)",
        9: "release_date '1995-13-45' is not a date (YYYY-MM-DD or DD-MM-YYYY)",
    }
    toy = Movie.objects.get(tmdb_id=862)
    assert (toy.imdb_id, toy.release_date, toy.year, toy.original_language, toy.source) == (
        "tt0114709",
        date(1995, 10, 30),
        1995,
        "en",
        "kaggle",
    )
    assert toy.popularity == pytest.approx(21.946943)
    assert set(toy.genres.values_list("name", flat=True)) == {"Animation", "Comedy", "Family"}
    assert Genre.objects.get(name="Family").tmdb_id == 10751
    assert Movie.objects.get(tmdb_id=8844).release_date == date(1995, 12, 15), "DD-MM-YYYY"
    assert Movie.objects.get(tmdb_id=11862).missing_genres is True
    assert Poster.objects.count() == 0, "no poster source given: posters left alone"


@pytest.mark.django_db
def test_kaggle_poster_folder_by_tmdb_or_imdb_id(tmp_path, make_image):
    posters = tmp_path / "posters"
    posters.mkdir()
    (posters / "862.jpg").write_bytes(make_image(seed=1))
    (posters / "tt0113497.jpeg").write_bytes(make_image(seed=2))
    path = write_kaggle(tmp_path / "movies_metadata.csv", realistic_rows())
    run = run_import("kaggle", {"path": str(path), "posters": str(posters)})

    assert run.posters_stored == 2
    assert Poster.objects.get(movie__tmdb_id=8844).original.read() == make_image(seed=2)
    missing = Poster.objects.get(movie__tmdb_id=11862)
    assert missing.status == "missing" and "11862 or tt0113041" in missing.error


@pytest.mark.django_db
def test_kaggle_poster_url_base_downloads_once(tmp_path, make_image, fake_tmdb, recorded_sleeps):
    fake_tmdb.add(
        FakeMovie(
            id=862,
            title="Toy Story",
            release_date="1995-10-30",
            genre_ids=[16],
            poster_path="/rhIRbceoE9lR4veEXuwCC2wARtG.jpg",
            poster=make_image(seed=5),
        )
    )
    path = write_kaggle(tmp_path / "movies_metadata.csv", realistic_rows()[:2])
    fake_tmdb.fail("/t/p/w342/rhIRbceoE9lR4veEXuwCC2wARtG.jpg", "503")
    params = {"path": str(path), "poster_url_base": f"{fake_tmdb.root}/t/p/w342", "backoff_base": 0.01}

    run = run_import("kaggle", params)
    assert (run.created, run.posters_stored) == (2, 1) and len(recorded_sleeps) == 1
    assert Poster.objects.get(movie__tmdb_id=862).original.read() == make_image(seed=5)
    assert Poster.objects.get(movie__tmdb_id=8844).error == "row has no poster_path"

    downloads = len(fake_tmdb.requests_to("/t/p/"))
    again = run_import("kaggle", params)
    assert (again.created, again.unchanged, again.posters_stored) == (0, 2, 0)
    assert len(fake_tmdb.requests_to("/t/p/")) == downloads


@pytest.mark.django_db
def test_kaggle_rerun_and_person_labels(tmp_path):
    path = write_kaggle(tmp_path / "movies_metadata.csv", realistic_rows())
    run_import("kaggle", {"path": str(path)})
    toy = Movie.objects.get(tmdb_id=862)
    set_labels(toy, [Genre.objects.get(name="Comedy")], origin=LabelOrigin.PERSON)
    again = run_import("kaggle", {"path": str(path)})
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    assert list(toy.genres.values_list("name", flat=True)) == ["Comedy"]


@pytest.mark.django_db
def test_kaggle_truncated_file_and_bad_parameters(tmp_path):
    path = write_kaggle(tmp_path / "movies_metadata.csv", realistic_rows()[:2], tail="False,,0,\"[{'id': 12")
    run = run_import("kaggle", {"path": str(path)})
    assert run.created == 2 and run.skipped == 1 and "cut off" in run.skipped_rows[0]["reason"]
    with pytest.raises(ImporterError, match="not both"):
        run_import("kaggle", {"path": str(path), "posters": str(tmp_path), "poster_url_base": "http://x"})
    with pytest.raises(ImporterError, match="does not exist"):
        run_import("kaggle", {"path": str(tmp_path / "nope.csv")})


@pytest.mark.django_db
def test_same_movie_from_two_sources_is_one_movie(tmp_path):
    write_kaggle(tmp_path / "movies_metadata.csv", realistic_rows()[:1])
    run_import("kaggle", {"path": str(tmp_path / "movies_metadata.csv")})
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "movies.csv").write_text(
        "id,title,year,overview,genres,source_id,poster,imdb_id\n"
        "tmdb_862,Toy Story,1995,Toys come alive.,Animation|Comedy|Family,tmdb:862,,tt0114709\n"
    )
    run = run_import("csv", {"path": str(tmp_path / "set")})
    assert (run.created, run.updated) == (0, 1)
    movie = Movie.objects.get()
    assert movie.source == "kaggle" and movie.overview == "Toys come alive."


# --- MM-IMDb ------------------------------------------------------------------------------


def write_mmimdb(folder, make_image):
    folder.mkdir(parents=True)
    records = {
        "0000008": {
            "title": "Edison Kinetoscopic Record of a Sneeze",
            "year": 1894,
            "genres": ["Documentary", "Short"],
            "plot": ["A man sneezes.", "Fred Ott takes a pinch of snuff and sneezes, filmed by Edison's camera."],
        },
        "0133093": {
            "title": "The Matrix",
            "year": "1999",
            "genres": ["Action", "Sci-Fi"],
            "plot": ["A hacker learns the truth about reality."],
            "imdb_id": "tt0133093",
        },
        "0000010": {"title": "No poster here", "year": 1895, "genres": ["Short"], "plot outline": "Workers leave."},
        "0000011": {"year": 1895, "genres": ["Short"], "plot": ["No title."]},
        "0000012": ["not", "a", "movie"],
    }
    for stem, data in records.items():
        (folder / f"{stem}.json").write_text(json.dumps(data))
    (folder / "0000013.json").write_text('{"title": "Broken", "genres": [')
    (folder / "0000008.jpeg").write_bytes(make_image(seed=8))
    (folder / "0133093.jpeg").write_bytes(make_image(seed=9, gray=True))
    return folder


@pytest.mark.django_db
def test_mmimdb_folder(tmp_path, make_image):
    write_mmimdb(tmp_path / "mmimdb" / "dataset", make_image)
    run = run_import("mmimdb", {"path": str(tmp_path / "mmimdb")})

    assert (run.created, run.skipped, run.posters_stored) == (3, 3, 2)
    reasons = {s["file"]: s["reason"] for s in run.skipped_rows}
    assert reasons["0000011.json"] == "title is missing"
    assert reasons["0000012.json"] == "0000012.json holds a list, not a movie object"
    assert reasons["0000013.json"].startswith("0000013.json is not valid JSON")
    sneeze = Movie.objects.get(imdb_id="tt0000008")
    assert (sneeze.year, sneeze.source, sneeze.source_id, sneeze.tmdb_id) == (1894, "mmimdb", "0000008", None)
    assert sneeze.overview.startswith("Fred Ott"), "the longest plot is kept"
    matrix = Movie.objects.get(imdb_id="tt0133093")
    assert set(matrix.genres.values_list("name", flat=True)) == {"Action", "Science Fiction"}
    no_poster = Movie.objects.get(imdb_id="tt0000010")
    assert no_poster.overview == "Workers leave." and no_poster.poster.status == "missing"

    again = run_import("mmimdb", {"path": str(tmp_path / "mmimdb" / "dataset")})
    assert (again.created, again.unchanged, again.posters_stored) == (0, 3, 0)


@pytest.mark.django_db
def test_mmimdb_command_and_empty_folder(tmp_path, make_image):
    write_mmimdb(tmp_path / "m", make_image)
    out = io.StringIO()
    call_command("import_mmimdb", str(tmp_path / "m"), stdout=out, skip_checks=True)
    assert "3 created" in out.getvalue() and "title is missing" in out.getvalue()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImporterError, match="no .json files"):
        run_import("mmimdb", {"path": str(tmp_path / "empty")})


@pytest.mark.django_db
def test_import_kaggle_command(tmp_path):
    path = write_kaggle(tmp_path / "movies_metadata.csv", realistic_rows())
    out = io.StringIO()
    call_command("import_kaggle", str(path), "--limit", "2", stdout=out, skip_checks=True)
    assert "2 created" in out.getvalue()
