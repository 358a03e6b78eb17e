"""Similar movies: nearest neighbours over stored vectors (tiny vectors written straight into
the Embedding table; no encoder is built), the API and the movie page's panel, and the
near-duplicate poster flag."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from django.core.management import call_command

from catalog.models import Movie, Poster
from ml.engine.identity import encoder_space
from ml.models import Embedding
from ml.services.embeddings import embedding_config, text_digest
from ml.services.similar import NotEmbedded, clear_cache, near_duplicate_posters, similar_movies
from tests.factories import make_movie, make_poster
from tests.ml.store_encoders import CONFIG, no_encoder_builds, registered_store_encoders


@pytest.fixture(autouse=True)
def spaces(settings, monkeypatch):
    settings.GENREWEB_EMBED_CONFIG = CONFIG
    monkeypatch.setattr("ml.services.similar.REBUILD_INTERVAL_S", 0.0)
    clear_cache()
    with registered_store_encoders(), no_encoder_builds():
        config = embedding_config()
        yield {"text": encoder_space(config, "text", "cpu"), "image": encoder_space(config, "image", "cpu")}
    clear_cache()


def _put(space: str, digest: str, vector) -> None:
    values = np.asarray(vector, dtype="<f2")
    Embedding.objects.update_or_create(
        space=space, digest=digest, defaults={"dim": len(values), "vector": values.tobytes()}
    )


def _movie(n: int, text_vector=None, poster_vector=None, spaces=None) -> Movie:
    movie = make_movie(title=f"Film {n}", source_id=f"s{n}", overview=f"overview {n}", year=2000 + n)
    if text_vector is not None:
        _put(spaces["text"], text_digest(movie.overview), text_vector)
    if poster_vector is not None:
        poster = make_poster(movie, derivative=f"poster {n}".encode(), status=Poster.Status.OK)
        _put(spaces["image"], poster.derivative_checksum, poster_vector)
    return movie


@pytest.fixture
def films(db, spaces):
    """Query film 0 and four others at known angles by text, and other angles by poster."""
    text = {0: [1, 0, 0], 1: [0.9, 0.1, 0], 2: [0.5, 0.5, 0], 3: [0, 1, 0], 4: [-1, 0, 0]}
    poster = {0: [1, 0], 1: [0, 1], 2: [1, 0.1], 3: [1, 0.5], 4: None}
    return [_movie(n, text[n], poster[n], spaces) for n in range(5)]


def _ids(neighbours):
    return [n.movie_id for n in neighbours]


def test_text_neighbours_are_ordered_by_cosine_and_exclude_the_movie(films):
    result = similar_movies(films[0], by="text", k=10)
    assert _ids(result) == [films[1].pk, films[2].pk, films[3].pk, films[4].pk]
    assert result[0].score == pytest.approx(0.9 / np.hypot(0.9, 0.1), abs=1e-3)
    assert result[-1].score == pytest.approx(-1.0, abs=1e-3)
    assert _ids(similar_movies(films[0], by="text", k=2)) == [films[1].pk, films[2].pk]


def test_poster_and_fused_neighbours(films):
    assert _ids(similar_movies(films[0], by="poster")) == [films[2].pk, films[3].pk, films[1].pk]
    fused = similar_movies(films[0], by="fused")
    # Film 4 has no poster vector: fused ranks only movies with both.
    assert films[4].pk not in _ids(fused)
    by_id = {n.movie_id: n for n in fused}
    for n in fused:
        assert n.score == pytest.approx((n.scores["text"] + n.scores["poster"]) / 2, abs=1e-3)
    assert _ids(fused)[0] == films[2].pk  # 0.71 text, 0.995 poster beats film 1's 0.99 text, 0 poster
    assert by_id[films[1].pk].scores["poster"] == pytest.approx(0.0, abs=1e-3)


def test_a_changed_overview_does_not_use_its_stale_vector(films, spaces):
    assert films[1].pk == similar_movies(films[0], by="text")[0].movie_id
    # Overview changed behind the cache's back (no save(), no updated_at): the old vector is
    # in the matrix, but the check against the current digest drops it.
    Movie.objects.filter(pk=films[1].pk).update(overview="a new story")
    assert films[1].pk not in _ids(similar_movies(films[0], by="text"))
    # Once the new overview has a vector, it is used (the stamp moved: a new Embedding row).
    _put(spaces["text"], text_digest("a new story"), [0, 0, 1])
    result = {n.movie_id: n.score for n in similar_movies(films[0], by="text")}
    assert result[films[1].pk] == pytest.approx(0.0, abs=1e-3)


def test_the_query_movies_changed_overview_is_not_embedded(films):
    movie = films[0]
    movie.overview = "rewritten"
    movie.save()
    with pytest.raises(NotEmbedded, match="run embed_catalog"):
        similar_movies(movie, by="text")


def test_not_embedded_movie_says_so_and_builds_no_encoder(films, spaces):
    lonely = _movie(9, spaces=spaces)
    with pytest.raises(NotEmbedded, match="run embed_catalog"):
        similar_movies(lonely, by="text")
    with pytest.raises(NotEmbedded, match="no preprocessed poster"):
        similar_movies(lonely, by="poster")
    with pytest.raises(NotEmbedded):
        similar_movies(films[4], by="fused")  # text yes, poster no


def test_bad_arguments(films):
    with pytest.raises(ValueError):
        similar_movies(films[0], by="colour")
    with pytest.raises(ValueError):
        similar_movies(films[0], k=0)


# --- API -------------------------------------------------------------------------------------


def test_api_similar(films, api_clients, settings):
    url = f"/api/movies/{films[0].pk}/similar/"
    response = api_clients["labeler"].get(url, {"by": "text", "k": 2})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["by"] == "text" and body["movie"] == films[0].pk
    assert [r["movie_id"] for r in body["results"]] == [films[1].pk, films[2].pk]
    assert set(body["results"][0]) == {"movie_id", "title", "year", "score", "scores"}
    fused = api_clients["labeler"].get(url, {"by": "fused"}).json()["results"]
    assert set(fused[0]["scores"]) == {"text", "poster"}

    assert api_clients["labeler"].get(url, {"by": "colour"}).status_code == 400
    assert api_clients["labeler"].get(url, {"k": 0}).status_code == 400
    assert api_clients["labeler"].get(url, {"k": "many"}).status_code == 400
    assert api_clients["labeler"].get("/api/movies/999999/similar/").status_code == 404
    conflict = api_clients["labeler"].get(f"/api/movies/{films[4].pk}/similar/", {"by": "poster"})
    assert conflict.status_code == 409 and "poster" in conflict.json()["detail"]

    assert api_clients["anonymous"].get(url).status_code == 401
    settings.GENREWEB_ANONYMOUS_READ = True
    assert api_clients["anonymous"].get(url).status_code == 200


def test_api_similar_is_in_the_schema(db):
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    operation = schema["paths"]["/api/movies/{id}/similar/"]["get"]
    parameters = {p["name"] for p in operation["parameters"]}
    assert {"id", "by", "k"} <= parameters
    assert {"200", "400", "404", "409"} <= set(operation["responses"])


# --- the movie page -------------------------------------------------------------------------


def test_movie_page_shows_the_similar_panel(films, client, labeler):
    client.force_login(labeler)
    page = client.get(f"/movies/{films[0].pk}/").content.decode()
    assert "Similar movies" in page
    assert f'href="/movies/{films[1].pk}/"' in page
    assert "by poster" in page and "both" in page
    poster_page = client.get(f"/movies/{films[0].pk}/", {"similar": "poster"}).content.decode()
    first = poster_page.index(f'href="/movies/{films[2].pk}/"')
    assert first < poster_page.index(f'href="/movies/{films[1].pk}/"', poster_page.index("Similar movies"))
    missing = client.get(f"/movies/{films[4].pk}/", {"similar": "poster"}).content.decode()
    assert "no preprocessed poster" in missing


# --- near-duplicate posters -----------------------------------------------------------------


def test_near_duplicate_posters_flag_the_later_copy(films, spaces):
    copy = _movie(7, [0, 0, 1], [1, 0.01], spaces)  # nearly film 0's poster (cosine 0.99995)
    assert near_duplicate_posters(0.999) == {copy.pk: films[0].pk}  # film 2 vs 0 (0.995) is not
    assert near_duplicate_posters(1.0) == {}
    call_command("flag_near_duplicate_posters", "--threshold", "0.999")
    flagged = dict(Movie.objects.filter(poster_duplicate_of__isnull=False).values_list("id", "poster_duplicate_of"))
    assert flagged == {copy.pk: films[0].pk}
    # The copy's poster changes: a rerun clears its flag.
    poster = Poster.objects.get(movie=copy)
    poster.derivative_checksum = hashlib.sha256(b"other").hexdigest()
    poster.save()
    _put(spaces["image"], poster.derivative_checksum, [0.6, -0.8])
    call_command("flag_near_duplicate_posters", "--threshold", "0.999")
    assert not Movie.objects.filter(poster_duplicate_of__isnull=False).exists()


def test_a_moved_stamp_rebuilds_at_most_once_per_interval(films, spaces, monkeypatch):
    monkeypatch.setattr("ml.services.similar.REBUILD_INTERVAL_S", 1e9)
    similar_movies(films[0], by="text")
    late = _movie(8, [1, 0, 0], None, spaces)  # a new movie with a vector: the stamp moved
    assert late.pk not in _ids(similar_movies(films[0], by="text"))  # the matrix built above still serves
    monkeypatch.setattr("ml.services.similar.REBUILD_INTERVAL_S", 0.0)
    assert _ids(similar_movies(films[0], by="text"))[0] == late.pk


def test_an_embed_config_without_stored_encoders_says_so(films, settings, client, labeler):
    settings.GENREWEB_EMBED_CONFIG = "tfidf-linear"
    with pytest.raises(NotEmbedded, match="no stored overview encoder"):
        similar_movies(films[0], by="text")
    client.force_login(labeler)
    assert "no stored overview encoder" in client.get(f"/movies/{films[0].pk}/").content.decode()
