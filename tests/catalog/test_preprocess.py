import io
import os

import pytest
from django.core.files.storage import InMemoryStorage, default_storage
from django.core.management import call_command
from django.utils._os import safe_join
from PIL import Image

from catalog.curation import normalise_title
from catalog.labels import set_labels
from catalog.models import Genre, LabelOrigin, Movie, Poster
from catalog.preprocessing import preprocess_posters

pytestmark = pytest.mark.django_db


def derivative_image(poster: Poster) -> Image.Image:
    with default_storage.open(poster.derivative.name, "rb") as handle:
        picture = Image.open(io.BytesIO(handle.read()))
        picture.load()
    return picture


def test_good_poster_gets_a_resized_rgb_derivative_and_metadata(movie_with_poster, make_image):
    movie, poster = movie_with_poster(make_image(400, 600))
    summary = preprocess_posters()
    poster.refresh_from_db()
    assert poster.status == Poster.Status.OK
    assert (poster.width, poster.height, poster.image_mode) == (400, 600, "RGB")
    assert not poster.is_grayscale and poster.error == ""
    assert len(poster.checksum) == 64 and len(poster.derivative_checksum) == 64
    assert poster.processed_at is not None and poster.processing_key
    derived = derivative_image(poster)
    # Shorter side scaled to GENREWEB_POSTER_DERIVATIVE_SIZE (224), aspect kept.
    assert (derived.format, derived.mode, derived.size) == ("JPEG", "RGB", (224, 336))
    assert poster.derivative_size == default_storage.size(poster.derivative.name)
    assert summary["posters"]["ok"] == 1 and summary["posters"]["derivatives_written"] == 1


def test_derivative_size_setting_and_no_upscaling(settings, movie_with_poster, make_image):
    settings.GENREWEB_POSTER_DERIVATIVE_SIZE = 100
    _, big = movie_with_poster(make_image(300, 200))
    _, small = movie_with_poster(make_image(80, 90))
    preprocess_posters()
    big.refresh_from_db()
    small.refresh_from_db()
    assert derivative_image(big).size == (150, 100)
    assert derivative_image(small).size == (80, 90)


def test_missing_poster_file_and_missing_poster_row(movie_with_poster, make_image):
    _, no_file = movie_with_poster(None)
    _, gone = movie_with_poster(make_image())
    default_storage.delete(gone.original.name)
    Movie.objects.create(title="No poster row", year=2000, overview="x", source="csv", source_id="np")
    summary = preprocess_posters()
    no_file.refresh_from_db()
    gone.refresh_from_db()
    assert no_file.status == gone.status == Poster.Status.MISSING
    assert "not found" in gone.error and not gone.derivative
    assert summary["posters"]["missing"] == 2
    assert summary["movies"]["without_poster"] == 1


def test_importers_missing_reason_is_kept(movie_with_poster):
    _, poster = movie_with_poster(None)
    Poster.objects.filter(pk=poster.pk).update(status=Poster.Status.MISSING, error="no poster_path in TMDB response")
    preprocess_posters()
    poster.refresh_from_db()
    assert (poster.status, poster.error) == (Poster.Status.MISSING, "no poster_path in TMDB response")


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"this is not a jpeg", "not an image"),
        (None, "truncated"),  # filled in below: half a real JPEG
    ],
)
def test_corrupt_and_truncated_posters_are_flagged(movie_with_poster, make_image, data, reason):
    if data is None:
        whole = make_image(200, 300)
        data = whole[: len(whole) // 2]
    _, poster = movie_with_poster(data)
    summary = preprocess_posters()
    poster.refresh_from_db()
    assert poster.status == Poster.Status.CORRUPT
    assert reason in poster.error
    assert not poster.derivative and poster.derivative_checksum == ""
    assert summary["posters"]["corrupt"] == 1
    assert summary["errors"][0]["movie"] == poster.movie_id


def test_too_small_poster(settings, movie_with_poster, make_image):
    settings.GENREWEB_POSTER_MIN_SIDE = 64
    _, small = movie_with_poster(make_image(63, 200))
    _, fine = movie_with_poster(make_image(64, 200))
    preprocess_posters()
    small.refresh_from_db()
    fine.refresh_from_db()
    assert small.status == Poster.Status.TOO_SMALL and (small.width, small.height) == (63, 200)
    assert not small.derivative
    assert fine.status == Poster.Status.OK


def test_decompression_bomb_is_flagged_corrupt(settings, movie_with_poster, make_image):
    settings.GENREWEB_POSTER_MAX_PIXELS = 10_000
    _, poster = movie_with_poster(make_image(200, 300))
    preprocess_posters()
    poster.refresh_from_db()
    assert poster.status == Poster.Status.CORRUPT
    assert "exceeds the limit of 10,000" in poster.error


def test_grayscale_detection_l_mode_and_rgb_gray(movie_with_poster, make_image):
    _, l_mode = movie_with_poster(make_image(100, 150, mode="L"))
    _, rgb_gray = movie_with_poster(make_image(100, 150, gray=True))
    _, colour = movie_with_poster(make_image(100, 150))
    summary = preprocess_posters(grayscale_policy="convert")
    for poster in (l_mode, rgb_gray, colour):
        poster.refresh_from_db()
    assert (l_mode.image_mode, l_mode.is_grayscale) == ("L", True)
    assert (rgb_gray.image_mode, rgb_gray.is_grayscale) == ("RGB", True)
    assert colour.is_grayscale is False
    assert summary["posters"]["grayscale"] == 2


def test_policy_convert_makes_three_channels(movie_with_poster, make_image):
    movie, poster = movie_with_poster(make_image(100, 150, mode="L"))
    preprocess_posters(grayscale_policy="convert")
    poster.refresh_from_db()
    movie.refresh_from_db()
    assert derivative_image(poster).mode == "RGB"
    assert not movie.excluded_from_training


def test_policy_keep_keeps_one_channel(movie_with_poster, make_image):
    movie, poster = movie_with_poster(make_image(100, 150, mode="L"))
    _, rgb_gray = movie_with_poster(make_image(100, 150, gray=True))
    preprocess_posters(grayscale_policy="keep")
    poster.refresh_from_db()
    rgb_gray.refresh_from_db()
    movie.refresh_from_db()
    assert derivative_image(poster).mode == "L"
    assert derivative_image(rgb_gray).mode == "RGB"  # kept as it came
    assert not movie.excluded_from_training


def test_policy_exclude_excludes_grayscale_movies_only(settings, movie_with_poster, make_image):
    settings.GENREWEB_GRAYSCALE_POLICY = "exclude"  # the setting is the default policy
    gray_movie, gray_poster = movie_with_poster(make_image(100, 150, gray=True))
    colour_movie, _ = movie_with_poster(make_image(100, 150))
    summary = preprocess_posters()
    gray_movie.refresh_from_db()
    colour_movie.refresh_from_db()
    gray_poster.refresh_from_db()
    assert gray_movie.excluded_from_training and gray_movie.exclusion_reason == "grayscale poster"
    assert not colour_movie.excluded_from_training
    assert gray_poster.derivative  # still built: the admin and a later policy change use it
    assert summary["grayscale_policy"] == "exclude"
    assert summary["movies"]["excluded_from_training"] == 1

    # Switching policy re-evaluates the grayscale poster and lifts the exclusion.
    summary = preprocess_posters(grayscale_policy="convert")
    gray_movie.refresh_from_db()
    assert not gray_movie.excluded_from_training and gray_movie.exclusion_reason == ""
    assert summary["posters"]["skipped_unchanged"] == 1  # the colour poster needed no work


def test_unknown_policy_and_bad_year_range_are_refused():
    with pytest.raises(ValueError, match="grayscale policy"):
        preprocess_posters(grayscale_policy="sepia")
    with pytest.raises(ValueError, match="after max_year"):
        preprocess_posters(min_year=2000, max_year=1990)


def test_missing_overview_and_genres_flags(movie_with_poster, make_image):
    drama = Genre.objects.create(name="Drama")
    labelled, _ = movie_with_poster(make_image(), overview="A story.")
    empty, _ = movie_with_poster(make_image(), overview="   ")
    set_labels(labelled, [drama], origin=LabelOrigin.IMPORTED)
    Movie.objects.filter(pk=labelled.pk).update(missing_genres=True)  # stale flag gets fixed
    summary = preprocess_posters()
    labelled.refresh_from_db()
    empty.refresh_from_db()
    assert (labelled.missing_overview, labelled.missing_genres) == (False, False)
    assert (empty.missing_overview, empty.missing_genres) == (True, True)
    assert summary["movies"]["missing_overview"] == 1 and summary["movies"]["missing_genres"] == 1


@pytest.mark.parametrize(
    "a, b",
    [("The Matrix", "Matrix, The"), ("Amélie", "amelie!"), ("Fast & Furious", "Fast and Furious"), ("Se7en", "SE7EN")],
)
def test_normalise_title_equates_variants(a, b):
    assert normalise_title(a) == normalise_title(b)


def test_normalise_title_keeps_different_films_apart():
    assert normalise_title("Alien") != normalise_title("Aliens")
    assert normalise_title("The") == "the"  # a title that is only an article stays


def test_dedupe_same_normalised_title_and_year(movie_with_poster, make_image):
    first, _ = movie_with_poster(make_image(), title="The Thing", year=1982)
    second, _ = movie_with_poster(make_image(seed=1), title="Thing, The", year=1982)
    remake, _ = movie_with_poster(make_image(seed=2), title="The Thing", year=2011)
    no_year, _ = movie_with_poster(make_image(seed=3), title="The Thing", year=None)
    summary = preprocess_posters()
    for movie in (first, second, remake, no_year):
        movie.refresh_from_db()
    assert second.duplicate_of_id == first.pk and second.excluded_from_training
    assert second.exclusion_reason == f"duplicate of movie {first.pk}"
    assert first.duplicate_of_id is None and not first.excluded_from_training
    assert remake.duplicate_of_id is None and no_year.duplicate_of_id is None
    assert summary["movies"]["duplicates"] == 1

    preprocess_posters(dedupe=False)
    second.refresh_from_db()
    assert second.duplicate_of_id is None and not second.excluded_from_training


def test_dedupe_of_a_subset_still_compares_with_the_whole_catalog(movie_with_poster, make_image):
    first, _ = movie_with_poster(make_image(), title="Heat", year=1995)
    second, _ = movie_with_poster(make_image(seed=1), title="heat", year=1995)
    preprocess_posters(movie_ids=[second.pk])
    second.refresh_from_db()
    first.refresh_from_db()
    assert second.duplicate_of_id == first.pk
    assert first.poster.status == Poster.Status.PENDING  # outside the subset: untouched


def test_year_filter_excludes_outside_and_unknown_years(movie_with_poster, make_image):
    old, _ = movie_with_poster(make_image(), year=1950)
    inside, _ = movie_with_poster(make_image(), year=1990)
    new, _ = movie_with_poster(make_image(), year=2020)
    unknown, _ = movie_with_poster(make_image(), year=None)
    preprocess_posters(min_year=1960, max_year=2010)
    for movie in (old, inside, new, unknown):
        movie.refresh_from_db()
    assert old.excluded_from_training and old.exclusion_reason == "year 1950 outside 1960-2010"
    assert new.excluded_from_training
    assert unknown.excluded_from_training and "year unknown" in unknown.exclusion_reason
    assert not inside.excluded_from_training
    preprocess_posters(min_year=1940)
    new.refresh_from_db()
    old.refresh_from_db()
    assert not new.excluded_from_training and not old.excluded_from_training


@pytest.fixture
def storage_writes(monkeypatch):
    """Names of the files saved through the storage API (any backend) while the test runs."""
    from django.core.files.storage import Storage

    written: list[str] = []
    real_save = Storage.save

    def save(self, name, content, max_length=None):
        written.append(real_save(self, name, content, max_length=max_length))
        return written[-1]

    monkeypatch.setattr(Storage, "save", save)
    return written


def test_second_run_changes_nothing_and_rewrites_no_file(settings, movie_with_poster, make_image, storage_writes):
    drama = Genre.objects.create(name="Drama")
    movies = [
        movie_with_poster(make_image(300, 450, seed=1)),
        movie_with_poster(make_image(100, 150, mode="L")),
        movie_with_poster(b"garbage"),
        movie_with_poster(make_image(30, 30)),
        movie_with_poster(None),
        movie_with_poster(make_image(seed=2), title="Same", year=2000),
        movie_with_poster(make_image(seed=3), title="same", year=2000, overview=""),
    ]
    set_labels(movies[0][0], [drama], origin=LabelOrigin.IMPORTED)
    storage_writes.clear()  # the originals the movies were made with
    first = preprocess_posters(min_year=1990)
    assert first["posters"]["changed"] == 7 and first["movies"]["changed"] > 0
    # Positive control: the recorder sees the four derivatives the first run writes.
    assert sorted(storage_writes) == sorted(p.derivative.name for p in Poster.objects.exclude(derivative=""))
    storage_writes.clear()
    posters_before = {p.pk: (p.updated_at, p.processed_at) for p in Poster.objects.all()}
    movies_before = dict(Movie.objects.values_list("pk", "updated_at"))
    files = {p.derivative.name for p in Poster.objects.exclude(derivative="")}
    assert len(files) == 4
    mtimes = {name: os.stat(default_storage.path(name)).st_mtime_ns for name in files}

    second = preprocess_posters(min_year=1990)
    assert second["posters"]["changed"] == 0 and second["posters"]["derivatives_written"] == 0
    assert second["posters"]["skipped_unchanged"] == 6  # the missing one is re-checked, not skipped
    assert second["posters"]["unchanged"] == 1
    assert second["movies"]["changed"] == 0 and second["movies"]["unchanged"] == 7
    assert {p.pk: (p.updated_at, p.processed_at) for p in Poster.objects.all()} == posters_before
    assert dict(Movie.objects.values_list("pk", "updated_at")) == movies_before
    assert {name: os.stat(default_storage.path(name)).st_mtime_ns for name in files} == mtimes
    assert storage_writes == []

    # --force re-decodes everything but, with identical results, still writes nothing.
    forced = preprocess_posters(min_year=1990, force=True)
    assert forced["posters"]["skipped_unchanged"] == 0
    assert forced["posters"]["changed"] == 0 and forced["posters"]["derivatives_written"] == 0
    assert {name: os.stat(default_storage.path(name)).st_mtime_ns for name in files} == mtimes
    assert storage_writes == []


def test_new_original_is_reprocessed_and_old_derivative_removed(
    movie_with_poster, make_image, django_capture_on_commit_callbacks
):
    from django.core.files.base import ContentFile

    _, poster = movie_with_poster(make_image(300, 450, seed=1))
    preprocess_posters()
    poster.refresh_from_db()
    old_derivative = poster.derivative.name
    # What catalog.posters.store_original does when the source's bytes change.
    poster.original.save("new.jpg", ContentFile(make_image(300, 450, seed=9)), save=False)
    Poster.objects.filter(pk=poster.pk).update(original=poster.original.name, checksum="changed")
    with django_capture_on_commit_callbacks(execute=True):
        summary = preprocess_posters()
    poster.refresh_from_db()
    assert summary["posters"]["changed"] == 1
    assert poster.derivative.name != old_derivative and not default_storage.exists(old_derivative)
    assert default_storage.exists(poster.derivative.name)
    assert poster.checksum != "changed"


def test_cancel_via_progress_leaves_processed_rows_consistent(movie_with_poster, make_image, monkeypatch):
    from catalog import poster_processing

    monkeypatch.setattr(poster_processing, "POSTER_BATCH_SIZE", 2)
    for seed in range(5):
        movie_with_poster(make_image(seed=seed))
    calls = []

    def cancel_after_first_batch(message, fraction):
        calls.append((message, fraction))
        if fraction > 0:
            raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        preprocess_posters(progress=cancel_after_first_batch)
    done = Poster.objects.filter(status=Poster.Status.OK)
    assert done.count() == 2
    assert all(default_storage.exists(p.derivative.name) for p in done)
    assert Poster.objects.filter(status=Poster.Status.PENDING, derivative="").count() == 3
    # A later run finishes the rest.
    summary = preprocess_posters()
    assert summary["posters"]["skipped_unchanged"] == 2 and summary["posters"]["ok"] == 5


def test_progress_is_reported_from_zero_to_one(movie_with_poster, make_image):
    movie_with_poster(make_image())
    seen = []
    preprocess_posters(progress=lambda message, fraction: seen.append(fraction))
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert seen == sorted(seen)


def test_management_command_prints_summary_table(movie_with_poster, make_image):
    movie_with_poster(make_image(100, 150, mode="L"))
    movie_with_poster(b"broken")
    out, err = io.StringIO(), io.StringIO()
    call_command("preprocess_posters", "--grayscale-policy", "exclude", "--min-year", "1900", stdout=out, stderr=err)
    text = out.getvalue()
    assert "Grayscale policy: exclude" in text
    assert [line.split() for line in text.splitlines() if line.strip().startswith(("corrupt", "grayscale"))] == [
        ["corrupt", "1"],
        ["grayscale", "1"],
    ]
    assert "not an image" in text
    assert "100%" in err.getvalue()


def test_management_command_rejects_bad_year_range():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="after max_year"):
        call_command("preprocess_posters", "--min-year", "2000", "--max-year", "1999", stdout=io.StringIO())


def test_failed_batch_write_removes_its_new_files_and_keeps_rows(movie_with_poster, make_image, monkeypatch):
    from django.db.models import QuerySet

    _, poster = movie_with_poster(make_image())
    real_update = QuerySet.update

    def failing_update(queryset, **kwargs):
        if queryset.model is Poster:
            raise RuntimeError("database went away")
        return real_update(queryset, **kwargs)

    def derived_files() -> list[str]:
        folder = default_storage.path("posters/derived")
        return [os.path.join(path, name) for path, _, names in os.walk(folder) for name in names]

    monkeypatch.setattr(QuerySet, "update", failing_update)
    with pytest.raises(RuntimeError, match="went away"):
        preprocess_posters()
    monkeypatch.setattr(QuerySet, "update", real_update)
    poster.refresh_from_db()
    assert poster.status == Poster.Status.PENDING and not poster.derivative
    assert derived_files() == []
    # Positive control: the same check finds the derivative once a run succeeds.
    preprocess_posters()
    poster.refresh_from_db()
    assert derived_files() == [default_storage.path(poster.derivative.name)]


class NoLocalPathStorage(InMemoryStorage):
    """Like S3: files only through the storage API; asking for a local path fails."""

    def path(self, name):
        raise NotImplementedError("This backend doesn't support absolute paths.")

    def _relative_path(self, name):  # InMemoryStorage uses path() internally
        return os.path.relpath(safe_join(self.location, name), self.location)


def test_works_on_storage_without_local_paths(settings, movie_with_poster, make_image):
    backend = f"{__name__}.NoLocalPathStorage"
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": backend}}
    with pytest.raises(NotImplementedError):
        default_storage.path("x")
    _, poster = movie_with_poster(make_image(300, 450))
    _, missing = movie_with_poster(make_image())
    default_storage.delete(missing.original.name)
    summary = preprocess_posters()
    poster.refresh_from_db()
    missing.refresh_from_db()
    assert poster.status == Poster.Status.OK and default_storage.exists(poster.derivative.name)
    assert derivative_image(poster).size == (224, 336)
    assert missing.status == Poster.Status.MISSING
    assert preprocess_posters()["posters"]["skipped_unchanged"] == 1
    assert summary["posters"]["derivatives_written"] == 1


def test_concurrent_run_that_finished_first_wins(movie_with_poster, make_image, monkeypatch):
    from catalog import poster_processing

    _, poster = movie_with_poster(make_image(300, 450))
    real_apply = poster_processing.apply_poster_updates

    def other_run_finishes_first(pending, counts):
        monkeypatch.setattr(poster_processing, "apply_poster_updates", real_apply)
        preprocess_posters()  # the "other" run, on the same poster
        real_apply(pending, counts)

    monkeypatch.setattr(poster_processing, "apply_poster_updates", other_run_finishes_first)
    summary = preprocess_posters()
    poster.refresh_from_db()
    assert summary["posters"]["changed"] == 0  # our update lost the race
    derived = [name for name in default_storage.listdir(os.path.dirname(poster.derivative.name))[1]]
    assert derived == [os.path.basename(poster.derivative.name)]  # our copy was cleaned up


def test_set_poster_duplicates_sets_clears_and_preprocessing_keeps_it():
    from catalog.curation import set_poster_duplicates

    a, b, c = (Movie.objects.create(title=f"P{i}", overview="x", source_id=f"pd{i}") for i in range(3))
    result = set_poster_duplicates({b.pk: a.pk, c.pk: c.pk, 10**9: a.pk})  # self and unknown ids ignored
    assert result == {"flagged": 1, "set": 1, "cleared": 0}
    assert dict(Movie.objects.exclude(poster_duplicate_of=None).values_list("id", "poster_duplicate_of")) == {
        b.pk: a.pk
    }
    assert set_poster_duplicates({b.pk: a.pk})["set"] == 0  # unchanged: nothing written
    preprocess_posters()  # the title/year pass does not own this flag
    assert Movie.objects.get(pk=b.pk).poster_duplicate_of_id == a.pk
    assert set_poster_duplicates({c.pk: a.pk}) == {"flagged": 1, "set": 1, "cleared": 1}
    assert dict(Movie.objects.exclude(poster_duplicate_of=None).values_list("id", "poster_duplicate_of")) == {
        c.pk: a.pk
    }
