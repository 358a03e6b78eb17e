"""Issue 8, "nobody gets what is not theirs", on the import side:

- a poster is stored only when its bytes are a JPEG, PNG or WebP image, under the extension of
  the detected format (CSV folders, Kaggle folders and downloads, TMDB downloads alike);
- paths given through jobs / the API / run_import lie under GENREWEB_IMPORT_ROOTS, and import
  errors never quote the file;
- the TMDB API address is a setting, never a param (no sending the server's key elsewhere).
"""

from __future__ import annotations

import pytest
from django.core.management import call_command

from catalog import posters
from catalog.importers import ImporterError, run_import
from catalog.models import Movie, Poster
from workers.kinds import InvalidJobParams, validate_params

from .fake_tmdb import FakeMovie, FakeTmdbServer
from .test_import_csv import devset_row, write_folder
from .test_import_kaggle_mmimdb import realistic_rows, write_kaggle

HTML = b"<!doctype html><script>fetch('/api/auth/token/',{method:'POST'})</script>"
SVG = b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(document.cookie)'/>"


# --- poster content --------------------------------------------------------------------------


@pytest.mark.django_db
def test_html_and_svg_posters_are_refused_and_reported_on_their_row(tmp_path, make_image, media_root):
    rows = [
        devset_row(31, "Html", "Drama", poster="evil.html"),
        devset_row(32, "Svg", "Drama", poster="evil.svg"),
        devset_row(33, "Good", "Drama", poster="good.jpg"),
    ]
    folder = write_folder(
        tmp_path / "set", rows, make_image, posters={"evil.html": HTML, "evil.svg": SVG, "good.jpg": make_image()}
    )
    run = run_import("csv", {"path": str(folder)})

    assert (run.created, run.skipped, run.posters_stored) == (3, 0, 1), "the movies still import"
    for tmdb_id, name in ((31, "evil.html"), (32, "evil.svg")):
        poster = Poster.objects.get(movie__tmdb_id=tmdb_id)
        assert not poster.original and poster.status == "missing" and "rejected" in poster.error
        assert any(name in w and f"row {tmdb_id - 30}" in w for w in run.warnings), run.warnings
    stored = [p.name for p in media_root.rglob("*") if p.is_file()]
    assert len(stored) == 1 and stored[0].endswith(".jpg")


@pytest.mark.django_db
def test_a_poster_is_stored_under_the_extension_of_its_detected_format(movie_with_poster, make_image):
    movie, _ = movie_with_poster()
    assert posters.store_original(movie, make_image(fmt="PNG"), "looks-like.html") is True
    name = Poster.objects.get(movie=movie).original.name
    assert name.endswith(".png") and "html" not in name.rsplit(".", 1)[1]
    assert posters.store_original(movie, make_image(fmt="WEBP", seed=4), "x.svg") is True
    assert Poster.objects.get(movie=movie).original.name.endswith(".webp")
    # GIF/BMP/TIFF decode, but are not poster formats we store or serve.
    with pytest.raises(posters.PosterRejected, match="GIF"):
        posters.store_original(movie, make_image(fmt="GIF", seed=5), "anim.gif")
    assert Poster.objects.get(movie=movie).original.name.endswith(".webp"), "the good poster is kept"


@pytest.mark.django_db
def test_kaggle_poster_folder_refuses_html_named_as_an_image(tmp_path):
    folder = tmp_path / "posters"
    folder.mkdir()
    (folder / "862.jpg").write_bytes(HTML)
    path = write_kaggle(tmp_path / "movies_metadata.csv", realistic_rows()[:1])
    run = run_import("kaggle", {"path": str(path), "posters": str(folder)})
    assert (run.created, run.posters_stored) == (1, 0)
    assert "rejected" in Poster.objects.get(movie__tmdb_id=862).error


@pytest.mark.django_db
def test_downloaded_posters_are_checked_too(tmp_path, make_image, fake_tmdb, recorded_sleeps):
    fake_tmdb.add(
        FakeMovie(
            id=862, title="Toy Story", release_date="2020-01-02", genre_ids=[16], poster_path="/evil.jpg", poster=SVG
        )
    )
    fake_tmdb.add(
        FakeMovie(
            id=863,
            title="Fine",
            release_date="2020-01-03",
            genre_ids=[16],
            poster_path="/fine.jpg",
            poster=make_image(fmt="PNG"),
        )
    )
    run = run_import(
        "tmdb", {"api_key": "test-key", "date_from": "2020-01-01", "date_to": "2020-01-31", "backoff_base": 0.01}
    )
    assert (run.created, run.posters_stored) == (2, 1)
    assert not Poster.objects.get(movie__tmdb_id=862).original
    assert Poster.objects.get(movie__tmdb_id=863).original.name.endswith(".png")
    assert any("evil.jpg" in w and "rejected" in w for w in run.warnings)

    kaggle = write_kaggle(tmp_path / "movies_metadata.csv", realistic_rows()[:1])  # Toy Story, id 862
    fake_tmdb.add(
        FakeMovie(
            id=99,
            title="Not discovered",
            release_date="2019-01-01",
            genre_ids=[16],
            poster_path="/rhIRbceoE9lR4veEXuwCC2wARtG.jpg",
            poster=HTML,
        )
    )
    Movie.objects.all().delete()
    run = run_import("kaggle", {"path": str(kaggle), "poster_url_base": f"{fake_tmdb.root}/t/p/w342"})
    assert run.posters_stored == 0 and "rejected" in Poster.objects.get(movie__tmdb_id=862).error


# --- import roots ----------------------------------------------------------------------------


@pytest.fixture
def roots(tmp_path, settings):
    """Only tmp_path/imports is an import root."""
    root = tmp_path / "imports"
    root.mkdir()
    settings.GENREWEB_IMPORT_ROOTS = [root]
    return root


SECRET_LINE = "root:$6$saltsalt$hashhashhash:19000:0:99999:7:::"


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "shadow"
    path.write_text(SECRET_LINE + "\ndaemon:*:19000:0:99999:7:::\n")
    return path


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["csv", "kaggle", "mmimdb"])
def test_paths_outside_the_import_roots_are_refused(kind, roots, secret_file):
    for path in (secret_file, roots / ".." / secret_file.name, "/etc/shadow", "/etc"):
        with pytest.raises(ImporterError, match="outside the import folders") as info:
            run_import(kind, {"path": str(path)})
        assert SECRET_LINE not in str(info.value)
    # A symlink inside a root that points outside it is just as outside.
    (roots / "link").symlink_to(secret_file.parent)
    with pytest.raises(ImporterError, match="outside the import folders"):
        run_import(kind, {"path": str(roots / "link" / secret_file.name)})


@pytest.mark.django_db
def test_the_poster_folder_must_be_under_a_root_too(roots, tmp_path, make_image):
    folder = write_folder(roots / "set", [devset_row(1, "A", "Drama")], make_image)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(ImporterError, match="posters .* outside the import folders"):
        run_import("csv", {"path": str(folder), "posters": str(outside)})
    assert run_import("csv", {"path": str(folder)}).created == 1


@pytest.mark.django_db
def test_jobs_and_the_api_refuse_paths_outside_the_roots(roots, secret_file, django_user_model):
    from rest_framework.test import APIClient

    staff = APIClient()
    staff.force_authenticate(django_user_model.objects.create_user("sam", password="x" * 20, is_staff=True))
    with pytest.raises(InvalidJobParams) as info:
        validate_params("import", {"source": "csv", "path": str(secret_file)})
    assert "outside the import folders" in info.value.errors["path"]
    response = staff.post(
        "/api/jobs/", {"kind": "import", "params": {"source": "csv", "path": "/etc/shadow"}}, format="json"
    )
    assert response.status_code == 400 and SECRET_LINE not in response.content.decode()
    inside = roots / "movies.csv"
    inside.write_text("id,title,genres\n1,A,Drama\n")
    assert validate_params("import", {"source": "csv", "path": str(inside)})["path"] == str(inside.resolve())


@pytest.mark.django_db
def test_a_file_that_is_not_a_catalog_does_not_show_its_first_line(roots):
    wrong = roots / "shadow.csv"
    wrong.write_text(SECRET_LINE + "\n")
    with pytest.raises(ImporterError) as info:
        run_import("csv", {"path": str(wrong)})
    assert "lacks column(s)" in str(info.value) and "shadow.csv" in str(info.value)
    assert "root" not in str(info.value) and "$6$" not in info.value.run.error


@pytest.mark.django_db
def test_management_commands_run_by_an_operator_may_import_from_anywhere(roots, tmp_path, make_image):
    folder = write_folder(tmp_path / "outside", [devset_row(5, "Anywhere", "Drama")], make_image)
    call_command("import_csv", str(folder), skip_checks=True)
    assert Movie.objects.filter(title="Anywhere").exists()


# --- TMDB address --------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_tmdb_import_cannot_send_the_server_key_elsewhere(fake_tmdb, settings):
    settings.TMDB_API_KEY = fake_tmdb.state.api_key  # the server's own key
    attacker = FakeTmdbServer().start()
    try:
        with pytest.raises(ImporterError, match="base_url"):
            run_import("tmdb", {"base_url": attacker.api_base, "date_from": "2020-01-01", "date_to": "2020-01-02"})
        with pytest.raises(InvalidJobParams) as info:
            validate_params("import", {"source": "tmdb", "base_url": attacker.api_base})
        assert "base_url" in info.value.errors
        assert attacker.state.requests == [], "nothing reached the other host"
    finally:
        attacker.stop()
    # The setting is the way to point the importer elsewhere (tests: the fake TMDB).
    fake_tmdb.add(FakeMovie(id=7, title="Seven", release_date="2020-01-02", genre_ids=[18], poster_path=None))
    run = run_import("tmdb", {"date_from": "2020-01-01", "date_to": "2020-01-02"})
    assert run.created == 1 and fake_tmdb.state.requests
