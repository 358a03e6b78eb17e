"""Two tiny frozen 'pretrained' encoders for embedding-store tests, with a recorded identity
(so their store space is known without building them) and a build counter that can be made to
raise: a test proves a warm path never builds an encoder by forbidding it.

``registered_store_encoders()`` registers them for the duration of a test (a context manager).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ml.engine import families
from ml.engine.families import EncoderFamily

BUILDS = {"text": 0, "image": 0}
ALLOWED = {"build": True}
TEXT, IMAGE = "storetext", "storeimage"


LETTERS = "abcdefghijklmnopqrstuvwxyz"


def letter_frequencies(texts: list[str]) -> dict[str, torch.Tensor]:
    """{"counts": [n, 26]}: each text's a-z letter frequencies (a test text encoder's input)."""
    counts = torch.zeros(len(texts), len(LETTERS))
    for row, text in enumerate(texts):
        for ch in text.lower():
            col = LETTERS.find(ch)
            if col >= 0:
                counts[row, col] += 1
    return {"counts": counts / counts.sum(1, keepdim=True).clamp(min=1)}


class LetterCounts(nn.Module):
    """Letter frequencies through a fixed projection (a frozen 'pretrained' text encoder)."""

    def __init__(self):
        super().__init__()
        self.dim = 8
        self.pretrained = True
        self.register_buffer("proj", torch.linspace(-1, 1, len(LETTERS) * 8).reshape(len(LETTERS), 8))

    def prepare(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return letter_frequencies(texts)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return inputs["counts"].to(self.proj.device) @ self.proj


class MeanColour(nn.Module):
    def __init__(self):
        super().__init__()
        self.dim = 6
        self.pretrained = True
        self.register_buffer("scale", torch.ones(6))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([images.mean((2, 3)), images.std((2, 3))], dim=1) * self.scale


def _builder(which: str, cls):
    def build(config, *, fitted, device, pretrained, log):
        if not ALLOWED["build"]:
            raise RuntimeError(f"the {which} encoder was built, but the embedding store should have served it")
        BUILDS[which] += 1
        return cls()

    return build


FAMILIES = (
    EncoderFamily(
        name=TEXT,
        modality="text",
        build=_builder("text", LetterCounts),
        pretrained=True,
        identity=lambda: {"package": "tests-store-text", "version": "1", "weights_sha256": "12" * 32},
        dim=lambda config: 8,
        description="letter counts (test family)",
    ),
    EncoderFamily(
        name=IMAGE,
        modality="image",
        build=_builder("image", MeanColour),
        pretrained=True,
        identity=lambda: {"package": "tests-store-image", "version": "1", "weights_sha256": "34" * 32},
        dim=lambda config: 6,
        description="mean colour (test family)",
    ),
)

# A frozen fused config over them (small and fast).
CONFIG = {
    "preset": "minilm+effnet-frozen-concat",
    "text_encoder": TEXT,
    "image_encoder": IMAGE,
    "name": "store-test-fused",
    "epochs": 3,
    "batch_size": 8,
    "hidden_dim": 16,
    "image_size": 32,
    "tta_flip": False,
}


@contextlib.contextmanager
def registered_store_encoders():
    for family in FAMILIES:
        families.register_encoder(family)
    BUILDS.update(text=0, image=0)
    ALLOWED["build"] = True
    try:
        yield BUILDS
    finally:
        ALLOWED["build"] = True
        for family in FAMILIES:
            families.unregister_encoder(family.name)


@contextlib.contextmanager
def no_encoder_builds():
    """Inside: building either encoder raises."""
    ALLOWED["build"] = False
    try:
        yield
    finally:
        ALLOWED["build"] = True
