"""The embedding store: warm paths run no encoder, changed content gets fresh vectors, the
database store (SQLite and Postgres), embed_catalog resumes, prune_embeddings reclaims."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command

from catalog.models import Movie, Poster
from ml.engine.store import MemoryStore, stored_form
from ml.models import Embedding, Prediction
from tests.factories import genre_poster
from tests.ml.store_encoders import (
    BUILDS,
    CONFIG,
    TEXT,
    LetterCounts,
    no_encoder_builds,
    registered_store_encoders,
)


@pytest.fixture
def store_encoders(settings):
    from ml.services.inference import clear_predictor_cache

    settings.GENREWEB_EMBED_CONFIG = CONFIG
    clear_predictor_cache()
    with registered_store_encoders() as builds:
        yield builds
    clear_predictor_cache()


def _replace_poster(movie_id: int, data: bytes) -> None:
    poster = Poster.objects.get(movie_id=movie_id)
    poster.derivative.save(f"new-{movie_id}.jpg", ContentFile(data), save=False)
    poster.derivative_checksum = hashlib.sha256(data).hexdigest()
    poster.save()


# --- the engine on its own -------------------------------------------------------------------


def _engine_examples(folder, n=12):
    from ml.engine.contracts import Example

    folder.mkdir()
    examples = []
    for i in range(n):
        data = genre_poster(["Action"] if i % 2 else ["Drama"], seed=i)
        path = folder / f"p{i}.jpg"
        path.write_bytes(data)
        examples.append(
            Example(
                str(i),
                f"story {i} {'chase' if i % 2 else 'tears'}",
                str(path),
                [i % 2],
                hashlib.sha256(data).hexdigest(),
            )
        )
    return examples


def test_the_engine_reads_the_store_first_in_one_batch_and_never_builds_when_warm(store_encoders, tmp_path):
    from ml.engine.features import FrozenFeatures
    from ml.engine.registry import get_config

    config = get_config(CONFIG)
    examples = _engine_examples(tmp_path / "posters")
    store = MemoryStore()
    cold = FrozenFeatures(config, "cpu", store=store)
    text, (image, has) = cold.text(examples, batch_size=5), cold.image(examples, batch_size=5)
    assert BUILDS == {"text": 1, "image": 1}
    assert store.reads == 2 and store.writes == 6  # one read per call, one write per encoder batch (3 + 3)
    assert cold.space("text") == f"{TEXT}-{cold.fingerprint('text')}-t{config.max_tokens}-cpu"
    for path in (tmp_path / "posters").iterdir():
        path.unlink()  # a stored vector is found by the example's digest: the file is never read
    with no_encoder_builds():
        warm = FrozenFeatures(config, "cpu", store=store)
        assert np.array_equal(warm.text(examples), text)
        warm_image, warm_has = warm.image(examples)
    assert np.array_equal(warm_image, image) and np.array_equal(warm_has, has) and has.all()
    assert warm.encoded == {"text": 0, "image": 0}
    # what was computed is what a warm run reads: the float16 form
    assert np.array_equal(text[0], stored_form(text[0]).astype(np.float32))


def test_a_loaded_model_refuses_another_encoder_identity_without_building_it(store_encoders, tmp_path):
    from ml.engine.artifact import load_model
    from ml.engine.train import fit

    examples = _engine_examples(tmp_path / "posters")
    store = MemoryStore()
    model = fit(CONFIG, ["Drama", "Action"], examples[:8], examples[8:], device="cpu", store=store)
    model.save(tmp_path / "artifact")
    document = json.loads((tmp_path / "artifact" / "config.json").read_text())
    record = document["frozen_encoders"]["image"]
    assert record["fingerprint_of"] == "identity" and record["package"] == "tests-store-image"
    with no_encoder_builds():
        loaded = load_model(tmp_path / "artifact", device="cpu", store=store)
        assert np.array_equal(loaded.predict_proba(examples), model.predict_proba(examples))
    record["fingerprint"] = "0" * 16
    (tmp_path / "artifact" / "config.json").write_text(json.dumps(document))
    with no_encoder_builds(), pytest.raises(ValueError, match="differs from the one this model was trained on"):
        load_model(tmp_path / "artifact", device="cpu", store=store).predict_proba(examples)


# --- the database store and the services -----------------------------------------------------


@pytest.mark.django_db
def test_the_database_store_round_trips_many_vectors_in_chunks_and_keeps_the_first_write():
    from ml.services.embeddings import CHUNK, embedding_store

    store = embedding_store()
    rng = np.random.default_rng(0)
    vectors = {f"{i:064x}": rng.normal(size=384).astype(np.float32) for i in range(2 * CHUNK + 7)}
    store.put_many("fam-abc-t128-cpu", vectors)
    assert Embedding.objects.count() == len(vectors)
    found = store.get_many("fam-abc-t128-cpu", [*vectors, "f" * 64])
    assert set(found) == set(vectors)
    for digest, vector in vectors.items():
        assert found[digest].dtype == np.float16 and np.array_equal(found[digest], stored_form(vector))
    first = next(iter(vectors))
    store.put_many("fam-abc-t128-cpu", {first: np.zeros(384)})  # same content, already stored: kept
    assert np.array_equal(store.get_many("fam-abc-t128-cpu", [first])[first], stored_form(vectors[first]))
    assert store.get_many("other-space", list(vectors)[:3]) == {}
    assert store.get_many("fam-abc-t128-cpu", []) == {}


@pytest.mark.django_db
def test_a_warm_retrain_and_repredict_of_the_catalog_never_build_an_encoder(store_encoders, tiny_catalog):
    from ml.services.evaluation import evaluate_model
    from ml.services.inference import clear_predictor_cache, predict_movies
    from ml.services.snapshots import build_snapshot
    from ml.services.training import train_model

    ids = [m.pk for m in tiny_catalog]
    snapshot = build_snapshot(min_genre_count=2, seed=3)
    cold = train_model(snapshot.pk, CONFIG)
    assert predict_movies(cold.model_version.pk, ids) == len(ids)
    assert BUILDS == {"text": 1, "image": 1}  # once each, in training; prediction read the store
    assert Embedding.objects.count() == 2 * len(ids)
    clear_predictor_cache()
    with no_encoder_builds():
        warm = train_model(snapshot.pk, CONFIG)
        assert predict_movies(warm.model_version.pk, ids) == len(ids)
        evaluate_model(warm.model_version.pk)
    assert warm.status == "succeeded" and "encoding" not in warm.log
    assert Prediction.objects.filter(model_version=warm.model_version).count() == len(ids)
    # the same features either way (cold ones are rounded to the stored form), so the same model
    assert warm.model_version.thresholds == cold.model_version.thresholds
    assert Embedding.objects.count() == 2 * len(ids)


@pytest.mark.django_db
def test_ad_hoc_prediction_reads_and_fills_the_store(store_encoders, tiny_catalog):
    from ml.services.inference import predict_raw
    from ml.services.snapshots import build_snapshot
    from ml.services.training import train_model

    version = train_model(build_snapshot(min_genre_count=2, seed=3).pk, CONFIG).model_version
    before = Embedding.objects.count()
    poster = genre_poster(["Horror"], seed=99)
    first = predict_raw("a haunted house full of ghosts", poster, version.pk)
    assert Embedding.objects.count() == before + 2
    with no_encoder_builds():
        assert predict_raw("a haunted house full of ghosts", poster, version.pk)["scores"] == first["scores"]


@pytest.mark.django_db
def test_a_changed_overview_or_poster_gets_a_fresh_vector(store_encoders, make_movie):
    from ml.services.embeddings import embed_movies, embedding_store, text_digest

    ids = [make_movie(("Action",)).pk, make_movie(("Comedy",)).pk]
    first = embed_movies(ids)
    assert (first.texts_encoded, first.posters_encoded) == (2, 2)
    with no_encoder_builds():
        again = embed_movies(ids)
    assert (again.texts, again.texts_encoded, again.posters, again.posters_encoded) == (2, 0, 2, 0)

    new_text = "A brand new overview about a haunted scream."
    Movie.objects.filter(pk=ids[0]).update(overview=new_text)
    new_poster = genre_poster(["Horror"], seed=1234)
    _replace_poster(ids[1], new_poster)
    fresh = embed_movies(ids)
    assert (fresh.texts_encoded, fresh.posters_encoded) == (1, 1)
    store = embedding_store()
    stored = store.get_many(fresh.spaces["text"], [text_digest(new_text)])
    encoder = LetterCounts()
    expected = encoder(encoder.prepare([new_text]))[0].numpy()
    assert np.array_equal(stored[text_digest(new_text)], stored_form(expected))
    assert hashlib.sha256(new_poster).hexdigest() in store.get_many(
        fresh.spaces["image"], [hashlib.sha256(new_poster).hexdigest()]
    )


@pytest.mark.django_db
def test_embed_catalog_command_fills_per_encoder_and_resumes(store_encoders, make_movie):
    ids = [make_movie(("Drama",)).pk for _ in range(5)]
    out = io.StringIO()
    call_command("embed_catalog", "--encoders", "text", stdout=out, stderr=io.StringIO())
    assert "5 of 5 texts and 0 of 0 posters encoded" in out.getvalue()
    out = io.StringIO()
    call_command("embed_catalog", stdout=out, stderr=io.StringIO())
    assert "0 of 5 texts and 5 of 5 posters encoded" in out.getvalue()
    assert Embedding.objects.count() == 2 * len(ids)


@pytest.mark.django_db
def test_prune_embeddings_reclaims_stale_digests_and_unused_spaces(store_encoders, make_movie):
    from ml.engine.identity import encoder_space
    from ml.services.embeddings import embed_movies, embedding_config, embedding_store

    movies = [make_movie(("Drama",)) for _ in range(3)]
    embed_movies([m.pk for m in movies])
    assert Embedding.objects.count() == 6
    store = embedding_store()
    store.put_many("retired-0000000000000000-t128-cpu", {"a" * 64: np.ones(4)})
    cuda_space = encoder_space(embedding_config(), "text", "cuda")  # the same encoder on a GPU worker: kept
    store.put_many(cuda_space, {hashlib.sha256(movies[2].overview.encode()).hexdigest(): np.ones(8)})
    Movie.objects.filter(pk=movies[0].pk).update(overview="Rewritten overview.")
    movies[1].delete()

    out = io.StringIO()
    call_command("prune_embeddings", "--dry-run", stdout=out)
    assert "8 embedding rows; would delete 4: 3 whose overview/poster no movie has now, 1 in 1 unused space" in (
        out.getvalue()
    )
    assert Embedding.objects.count() == 8
    call_command("prune_embeddings", stdout=io.StringIO())
    assert Embedding.objects.count() == 4  # movie 0's poster, movie 2's text + poster, its cuda text
    assert not Embedding.objects.filter(space__startswith="retired-").exists()
    assert Embedding.objects.filter(space=cuda_space).count() == 1
    with no_encoder_builds():
        assert embed_movies([movies[2].pk]).texts_encoded == 0  # what is still used stays


TITLED = {**CONFIG, "name": "store-test-titled", "text_fields": ["title", "overview"]}


@pytest.mark.django_db
def test_embed_catalog_fills_the_text_a_titled_config_reads_so_its_first_retrain_is_warm(
    store_encoders, tiny_catalog, settings
):
    """A config that puts the title in front of the overview (as the recommended preset does)
    reads "Title. Overview" vectors: embed_catalog stores them beside the overview's (which
    similar movies read), prune keeps both, and the first training run encodes nothing."""
    from ml.services.embeddings import embed_movies, prune_embeddings
    from ml.services.snapshots import build_snapshot
    from ml.services.training import train_model

    settings.GENREWEB_EMBED_CONFIG = TITLED
    ids = [m.pk for m in tiny_catalog]
    filled = embed_movies(ids)
    assert filled.texts == filled.texts_encoded == 2 * len(ids)  # each movie's overview and titled text
    assert Embedding.objects.count() == 3 * len(ids)
    assert prune_embeddings().deleted == 0
    with no_encoder_builds():
        run = train_model(build_snapshot(min_genre_count=2, seed=3).pk, TITLED)
    assert run.status == "succeeded" and "encoding" not in run.log
    Movie.objects.filter(pk=ids[0]).update(title="A New Title")
    assert prune_embeddings().deleted == 1  # only the titled text of the renamed movie is stale


def test_the_embed_config_defaults_to_the_recommended_preset(settings):
    from ml.engine.registry import RECOMMENDED_PRESET
    from ml.services.embeddings import embedding_config

    settings.GENREWEB_EMBED_CONFIG = ""
    assert embedding_config().name == RECOMMENDED_PRESET
