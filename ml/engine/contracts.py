"""The engine's contract types: plain data, no torch, numpy or Django.

The Django side (ml.services) builds these; importing them (e.g. while building a dataset
snapshot or turning movies into examples) must not load PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Example:
    """One movie as the engine sees it. ``text`` is the overview ("" for none); ``image`` is
    a local path, raw bytes or None (no poster); ``labels`` are genre indices (empty for
    inference). ``image_digest``, when known, is the sha256 of the image's bytes (the
    catalog's derivative checksum): frozen features found in the embedding store under it
    never read the file. ``title`` and ``year`` reach the text encoder only when a config's
    ``text_fields`` name them (ml.engine.inputs)."""

    key: str
    text: str
    image: str | bytes | None = None
    labels: list[int] = field(default_factory=list)
    image_digest: str | None = None
    title: str = ""
    year: int | None = None


class ImageLoadError(ValueError):
    """An example's image could not be read or decoded."""


# Defaults for use without the Django side (a notebook, a bare GPU box); genreweb passes
# the values of its settings (see ml.services.data.engine_image_limits).
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
DEFAULT_MAX_IMAGE_BYTES = 25 * 1024 * 1024


@dataclass(frozen=True)
class ImageLimits:
    """What the engine refuses to decode: more pixels than ``max_pixels`` (checked from the
    header, before decoding: decompression bombs) or files over ``max_bytes``."""

    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES

    def __post_init__(self):
        if self.max_pixels < 1 or self.max_bytes < 1:
            raise ValueError("image limits must be positive")
