"""The encoder and fusion registries: a new family is one module plus one registration.

The test families below are defined here, registered, trained, saved and loaded through the
normal fit/artifact path, then unregistered.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from ml.engine import families
from ml.engine.artifact import ArtifactError, load_model
from ml.engine.families import EncoderFamily, FusionFamily, register_encoder, register_fusion
from ml.engine.registry import get_config
from ml.engine.train import fit
from tests.ml.store_encoders import LETTERS, letter_frequencies
from tests.ml.test_engine import GENRES, SMALL

# ---------------------------------------------------------------- a text encoder


class CharBagEncoder(nn.Module):
    """Letter frequencies of the text through one learned linear layer."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.pretrained = False
        self.proj = nn.Linear(len(LETTERS), dim)

    def prepare(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return letter_frequencies(texts)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.tanh(self.proj(inputs["counts"]))


CHARBAG = EncoderFamily(
    name="charbag",
    modality="text",
    build=lambda config, *, fitted, device, pretrained, log: CharBagEncoder(config.hidden_dim),
    dim=lambda config: config.hidden_dim,
    description="bag of letters (test family)",
)

# ---------------------------------------------------------------- an image encoder that can be frozen


class MeanColourEncoder(nn.Module):
    """The poster's mean colour and its spread per channel: 'pretrained' (fixed), so frozen."""

    def __init__(self):
        super().__init__()
        self.dim = 6
        self.pretrained = True
        # A fixed buffer makes the weights fingerprint meaningful.
        self.register_buffer("scale", torch.ones(6))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([images.mean((2, 3)), images.std((2, 3))], dim=1) * self.scale


MEANCOLOUR = EncoderFamily(
    name="meancolour",
    modality="image",
    build=lambda config, *, fitted, device, pretrained, log: MeanColourEncoder(),
    pretrained=True,
    identity=lambda: {"package": "tests", "version": "1", "weights_sha256": "ab" * 32},
    dim=lambda config: 6,
    description="mean colour (test family)",
)

# ---------------------------------------------------------------- a fusion head


class SumOfHeads(nn.Module):
    def __init__(self, text_dim, image_dim, n_genres):
        super().__init__()
        self.text_head = nn.Linear(text_dim, n_genres)
        self.image_head = nn.Linear(image_dim, n_genres)

    def forward(self, text, image):
        return self.text_head(text) + self.image_head(image), []


SUM = FusionFamily(
    "sum-of-heads",
    lambda text_dim, image_dim, n_genres, config, members=(): SumOfHeads(text_dim, image_dim, n_genres),
    needs="both",
)


@pytest.fixture
def registered():
    for family in (CHARBAG, MEANCOLOUR):
        register_encoder(family)
    register_fusion(SUM)
    yield
    families.unregister_encoder("charbag")
    families.unregister_encoder("meancolour")
    families.unregister_fusion("sum-of-heads")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from tests.ml.test_engine import make_examples

    folder = tmp_path_factory.mktemp("posters")
    return make_examples(30, folder, seed=1), make_examples(12, folder, seed=2)


def _round_trip(config, data, tmp_path, **fit_kwargs):
    train, val = data
    model = fit(config, GENRES, train, val, device="cpu", **fit_kwargs)
    probs, _ = model.predict(val)
    model.save(tmp_path / "artifact")
    loaded = load_model(tmp_path / "artifact", device="cpu", cache_dir=fit_kwargs.get("cache_dir"))
    assert np.array_equal(probs, loaded.predict_proba(val)), "predictions changed after save/load"
    return model, json.loads((tmp_path / "artifact" / "config.json").read_text())


def test_a_registered_text_encoder_trains_saves_and_loads(registered, data, tmp_path):
    config = get_config(
        {"preset": "bilstm-text", **SMALL, "text_encoder": "charbag", "epochs": 8, "lr": 3e-2, "name": "charbag-text"}
    )
    model, document = _round_trip(config, data, tmp_path)
    assert isinstance(model.model.text_encoder, CharBagEncoder)
    assert document["config"]["text_encoder"] == "charbag"
    losses = [h["train_loss"] for h in model.history]
    assert np.mean(losses[-2:]) < losses[0], losses
    # its weights are in the artifact, under the network's usual names
    from safetensors.torch import load_file

    assert "text_encoder.proj.weight" in load_file(str(tmp_path / "artifact" / "model.safetensors"))


def test_a_registered_frozen_image_encoder_and_fusion_use_the_cache_and_record_identity(registered, data, tmp_path):
    config = get_config(
        {
            "preset": "minilm+effnet-frozen-concat",
            **SMALL,
            "text_encoder": "tfidf",
            "image_encoder": "meancolour",
            "fusion": "sum-of-heads",
            "name": "tfidf+meancolour",
        }
    )
    logs = []
    cache = str(tmp_path / "cache")
    model, document = _round_trip(config, data, tmp_path, cache_dir=cache, log=logs.append)
    assert any("image features: encoding" in line for line in logs)
    record = document["frozen_encoders"]["image"]
    assert record["name"] == "meancolour" and record["package"] == "tests" and len(record["fingerprint"]) == 16
    assert "text" not in document["frozen_encoders"], "a featuriser has no pretrained weights to record"
    # the cache key carries the family name, its weights fingerprint and the settings that change its output
    (key,) = [p.name for p in (tmp_path / "cache").iterdir()]
    assert key == f"meancolour-{record['fingerprint']}-s{config.image_size}-flip{int(config.tta_flip)}-cpu"


def test_loading_checks_the_recorded_pretrained_identity(registered, data, tmp_path):
    config = get_config(
        {
            "preset": "effnet-frozen-image",
            **SMALL,
            "image_encoder": "meancolour",
            "name": "meancolour-image",
            "epochs": 1,
        }
    )
    _round_trip(config, data, tmp_path)
    document = json.loads((tmp_path / "artifact" / "config.json").read_text())
    document["frozen_encoders"]["image"]["weights_sha256"] = "cd" * 32
    (tmp_path / "artifact" / "config.json").write_text(json.dumps(document))
    with pytest.raises(ArtifactError, match="other weights than the one this model was trained on"):
        load_model(tmp_path / "artifact", device="cpu")


def test_an_unregistered_family_is_unknown_again(data, tmp_path):
    register_encoder(CHARBAG)
    try:
        config = get_config({"preset": "bilstm-text", **SMALL, "text_encoder": "charbag", "epochs": 1})
        fit(config, GENRES, *data, device="cpu").save(tmp_path / "a")
    finally:
        families.unregister_encoder("charbag")
    with pytest.raises(ValueError, match="unknown text_encoder 'charbag'"):
        get_config({"preset": "bilstm-text", "text_encoder": "charbag"})
    with pytest.raises(ArtifactError, match="unknown text_encoder"):
        load_model(tmp_path / "a", device="cpu")


def test_registry_entries_are_checked():
    with pytest.raises(ValueError, match="already registered"):
        register_encoder(EncoderFamily(name="minilm", modality="text", build=lambda *a, **k: None))
    with pytest.raises(ValueError, match="modality"):
        register_encoder(EncoderFamily(name="x", modality="audio", build=lambda *a, **k: None))
    with pytest.raises(ValueError, match="'-'"):
        register_encoder(EncoderFamily(name="a-b", modality="text", build=lambda *a, **k: None))
    with pytest.raises(ValueError, match="fitted_key"):
        register_encoder(EncoderFamily(name="y", modality="text", build=lambda *a, **k: None, fit=lambda *a: None))
    with pytest.raises(ValueError, match="already registered"):
        register_fusion(FusionFamily("gated", lambda *a: None))


def test_builtin_families_carry_what_the_if_chains_did():
    enc = families.encoder
    assert {n for n in families.encoder_names("text") if n != "none" and enc(n).can_freeze} == {
        "tfidf",
        "minilm",
        "st_folder",  # a local sentence-transformers folder
    }
    assert [n for n in families.encoder_names("image") if n != "none" and not enc(n).pretrained] == ["smallcnn"]
    assert enc("tfidf").featuriser and enc("tfidf").fitted_key == "tfidf"
    assert enc("bilstm").fitted_key == enc("gru").fitted_key == "vocab"
    assert enc("minilm").identity is not None and enc("efficientnet_lite0").identity is not None
    assert enc("resnet18").identity is None  # torchvision weights are optional: fingerprint only
    config = get_config("minilm+effnet-frozen-gated")
    assert enc("minilm").dim(config) == 384 and enc("efficientnet_lite0").dim(config) == 1280
    assert enc("minilm").cache_settings(config) == f"t{config.max_tokens}"
    assert families.fusion("text").needs == "text" and families.fusion("gated").needs == "both"
    assert "ensemble" not in families.ensemble_member_names()


def test_linear_fusion_works_on_one_modality(data):
    # "linear" accepts any modalities; with text only it must not need an image.
    config = get_config({"preset": "tfidf-linear", **SMALL, "fusion": "linear", "epochs": 1})
    model = fit(config, GENRES, *data, device="cpu")
    assert model.predict_proba(data[1]).shape == (len(data[1]), len(GENRES))
