"""The fast cold path: draft decoding, the numpy eval transform, length-bucketed text
batches in example order, shared frozen encoders and the int8 text precision setting."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ml.engine import families
from ml.engine.config import ModelConfig
from ml.engine.contracts import Example
from ml.engine.data import EvalImageTransform, decode_image, image_transforms
from ml.engine.encoders import module_fingerprint, quantize_int8
from ml.engine.families import EncoderFamily
from ml.engine.features import FrozenFeatures
from ml.engine.registry import get_config
from tests.factories import image_bytes

# ---------------------------------------------------------------- decoding


def test_draft_decoding_reduces_a_large_jpeg_but_never_below_the_target():
    data = image_bytes(1000, 1500)
    assert decode_image(data).size == (1000, 1500)
    image = decode_image(data, target=224)
    # 1/4 scale keeps both sides >= 224; 1/8 would make the width 125
    assert image.size == (250, 375) and image.mode == "RGB"
    assert decode_image(image_bytes(600, 900), target=224).size == (300, 450)


def test_draft_decoding_keeps_small_posters_and_other_formats_as_they_are():
    assert decode_image(image_bytes(200, 300), target=224).size == (200, 300)  # the devset's posters
    png = io.BytesIO()
    Image.new("RGB", (1000, 1000), "red").save(png, "PNG")
    assert decode_image(png.getvalue(), target=224).size == (1000, 1000)
    gray = decode_image(image_bytes(1000, 1000, mode="L"), target=224)
    assert gray.mode == "RGB" and gray.size == (250, 250)


def test_the_eval_transform_equals_torchvision_resize_totensor_normalize():
    from torchvision import transforms as T

    from ml.engine.data import IMAGENET_MEAN, IMAGENET_STD

    image = decode_image(image_bytes(200, 300))
    reference = T.Compose([T.Resize((64, 64)), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])(image)
    ours = image_transforms(64, train=False)(image)
    assert isinstance(image_transforms(64, train=False), EvalImageTransform)
    assert ours.shape == (3, 64, 64) and ours.dtype == torch.float32
    assert torch.allclose(ours, reference, atol=1e-5)


# ---------------------------------------------------------------- text batches


class LengthEncoder(nn.Module):
    """Each text's vector is (its length, its first character code): tells rows apart."""

    def __init__(self):
        super().__init__()
        self.dim = 2
        self.batches: list[list[int]] = []

    def prepare(self, texts):
        self.batches.append([len(t) for t in texts])
        return {"x": torch.tensor([[len(t), ord(t[0]) if t else 0] for t in texts], dtype=torch.float32)}

    def forward(self, features):
        return features["x"]


def test_length_bucketed_text_batches_come_back_in_example_order():
    fake = LengthEncoder()
    lengths = EncoderFamily(  # a registered test family: the public way to plug an encoder in
        name="lengths",
        modality="text",
        build=lambda config, *, fitted, device, pretrained, log: fake,
        pretrained=True,
        identity=lambda: {"package": "tests", "version": "1", "weights_sha256": "cd" * 32},
        dim=lambda config: 2,
        description="text length (test family)",
    )
    families.register_encoder(lengths)
    try:
        config = ModelConfig(text_encoder="lengths", image_encoder="none", fusion="text").validate()
        texts = ["bb", "a" * 9, "c", "dddd", "e" * 7, "ffffff", ""]
        out = FrozenFeatures(config, "cpu").text([Example(str(i), t) for i, t in enumerate(texts)], batch_size=3)
    finally:
        families.unregister_encoder("lengths")
    expected = np.array([[len(t), ord(t[0]) if t else 0] for t in texts], dtype=np.float32)
    assert np.array_equal(out, expected)
    # batches hold texts of similar length: longest first
    assert fake.batches == [[9, 7, 6], [4, 2, 1], [0]]


def test_cpu_encoder_batches_are_capped_for_the_workers_memory(tmp_path):
    """On a CPU the caller's batch size is capped (CPU_TEXT_BATCH texts, CPU_IMAGE_BATCH
    posters per forward pass): what keeps a cold worker's peak under its memory budget."""
    from ml.engine import features
    from tests.ml.test_families import MeanColourEncoder

    class CountingImages(MeanColourEncoder):
        def __init__(self):
            super().__init__()
            self.batches: list[int] = []

        def forward(self, images):
            self.batches.append(len(images))
            return super().forward(images)

    texts, images = LengthEncoder(), CountingImages()
    identity = {"package": "tests", "version": "1", "weights_sha256": "ef" * 32}
    for name, modality, module, dim in (("lengths", "text", texts, 2), ("counting", "image", images, 6)):
        families.register_encoder(
            EncoderFamily(
                name=name,
                modality=modality,
                build=lambda config, *, fitted, device, pretrained, log, module=module: module,
                pretrained=True,
                identity=lambda: identity,
                dim=lambda config, dim=dim: dim,
                description=f"{name} (test family)",
            )
        )
    try:
        config = ModelConfig(text_encoder="lengths", image_encoder="counting", fusion="concat").validate()
        examples = []
        n_texts = features.CPU_TEXT_BATCH + 3
        n_posters = 2 * features.CPU_IMAGE_BATCH + 1
        for i in range(n_texts):
            poster = None
            if i < n_posters:
                poster = tmp_path / f"{i}.jpg"
                poster.write_bytes(image_bytes(40, 60, seed=i))
            examples.append(Example(str(i), "t" * (i + 1), str(poster) if poster else None))
        frozen = FrozenFeatures(config, "cpu")
        frozen.text(examples, batch_size=512)
        _, has = frozen.image(examples, batch_size=512)
    finally:
        families.unregister_encoder("lengths")
        families.unregister_encoder("counting")
    assert [len(b) for b in texts.batches] == [features.CPU_TEXT_BATCH, 3]
    assert images.batches == [features.CPU_IMAGE_BATCH, features.CPU_IMAGE_BATCH, 1]
    assert int(has.sum()) == n_posters


# ---------------------------------------------------------------- shared encoders


def test_frozen_encoders_are_shared_between_models_of_one_process():
    from tests.ml.test_families import MEANCOLOUR

    families.register_encoder(MEANCOLOUR)
    try:
        config = ModelConfig(text_encoder="none", image_encoder="meancolour", fusion="image").validate()
        first, second = FrozenFeatures(config, "cpu"), FrozenFeatures(config, "cpu")
        assert first.encoder("image") is second.encoder("image")
        assert first.fingerprint("image") == second.fingerprint("image")
        other = FrozenFeatures(config.replace(image_size=64), "cpu")  # other output settings: its own copy
        assert other.encoder("image") is not first.encoder("image")
    finally:
        families.unregister_encoder("meancolour")


# ---------------------------------------------------------------- int8 precision


class TinyTextNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 32))

    def forward(self, x):
        return self.net(x)


def test_int8_quantization_gives_vectors_close_to_the_float_ones_but_not_equal():
    net = TinyTextNet().eval()
    x = torch.randn(50, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        reference = net(x)
    fingerprint = module_fingerprint(net)
    quantized = quantize_int8(net)
    with torch.inference_mode():
        got = quantized(x)
    cosine = nn.functional.cosine_similarity(got, reference, dim=1)
    assert cosine.min() > 0.99
    assert not torch.equal(got, reference)
    # the fingerprint stays the float weights' (computed before quantizing)
    assert module_fingerprint(quantized) == fingerprint


def test_text_precision_is_part_of_the_cache_key_and_checked():
    minilm = families.encoder("minilm")
    base = get_config("minilm-frozen-text")
    assert minilm.cache_settings(base.replace(text_precision="float32")) == f"t{base.max_tokens}"
    assert minilm.cache_settings(base.replace(text_precision="int8")) == f"t{base.max_tokens}-int8"
    with pytest.raises(ValueError, match="text_precision"):
        base.replace(text_precision="int4")


def test_a_saved_config_from_before_the_setting_reads_as_float32():
    saved = get_config("minilm-frozen-text").replace(text_precision="int8").to_dict()
    assert ModelConfig.from_dict(saved).text_precision == "int8"
    del saved["text_precision"]
    assert ModelConfig.from_dict(saved).text_precision == "float32"
