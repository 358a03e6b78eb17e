"""The one safe way to decode an image in genreweb (posters on import/preprocessing, API uploads).

``decode_image`` opens bytes with Pillow under a pixel-count limit (against decompression
bombs), verifies the file structure, fully decodes the pixels (so truncated files fail here,
not later in a training loader) and reports size, mode and whether the picture is grayscale.
Anything that is not a usable image raises ``ImageRejected`` with a reason fit to show a user.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from django.conf import settings
from PIL import Image, ImageOps, UnidentifiedImageError

# Formats we decode. Pillow can open more (EPS shells out to Ghostscript, ICNS, PSD, ...): not
# worth the attack surface for posters and uploads.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO")
# What a stored poster may be: the detected format decides the file's extension and the
# Content-Type it is served with (MPO is a JPEG with extra frames, e.g. from phones).
POSTER_FORMATS = {
    "JPEG": (".jpg", "image/jpeg"),
    "MPO": (".jpg", "image/jpeg"),
    "PNG": (".png", "image/png"),
    "WEBP": (".webp", "image/webp"),
}
# Extension -> Content-Type of files the poster view may serve.
POSTER_CONTENT_TYPES = {ext: content_type for ext, content_type in POSTER_FORMATS.values()}
# Modes that have no colour at all.
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
# RGB pictures whose channels differ this little are grayscale scans/prints saved as RGB.
# Checked on a small copy: JPEG chroma noise stays well below these, sepia or faint tints don't.
GRAYSCALE_CHECK_SIDE = 64
GRAYSCALE_MEAN_SPREAD = 3.0  # mean over pixels of max(R,G,B) - min(R,G,B), 0..255
GRAYSCALE_P99_SPREAD = 12.0  # 99th percentile of the same spread


class ImageRejected(ValueError):
    """The bytes are not an image we accept; ``reason`` says why in plain words."""

    def __init__(self, reason: str, *, code: str = "invalid"):
        super().__init__(reason)
        self.reason = reason
        # invalid | too_large: lets callers map to a status (e.g. HTTP 400 vs 413) without parsing text.
        self.code = code


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # fully loaded, EXIF orientation applied, first frame of animations
    format: str  # Pillow's format name, e.g. "JPEG"
    mode: str  # the file's own mode, e.g. "RGB", "L", "CMYK", "P"
    width: int
    height: int
    is_grayscale: bool

    @property
    def min_side(self) -> int:
        return min(self.width, self.height)


def _read_all(data: bytes | bytearray | memoryview | BinaryIO) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if hasattr(data, "read"):
        if hasattr(data, "seek"):
            data.seek(0)
        return data.read()
    raise TypeError(f"decode_image expects bytes or a binary file, not {type(data).__name__}")


def _limit(max_pixels: int | None) -> int:
    return int(max_pixels if max_pixels is not None else settings.GENREWEB_POSTER_MAX_PIXELS)


def probe_image(data: bytes | BinaryIO, max_pixels: int | None = None, formats=ACCEPTED_FORMATS) -> str:
    """Pillow's format name of ``data`` (e.g. "PNG") after reading and verifying its header
    and structure, without decoding pixels; raise ``ImageRejected`` if it is not an image in
    ``formats`` or has more than ``max_pixels`` (default settings.GENREWEB_POSTER_MAX_PIXELS)."""
    raw = _read_all(data)
    if not raw:
        raise ImageRejected("empty file")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return _probe(raw, _limit(max_pixels), formats)
        except ImageRejected:
            raise
        except Exception as exc:  # noqa: BLE001 - _rejection maps Pillow's many errors
            raise _rejection(exc) from exc


def _probe(raw: bytes, limit: int, formats) -> str:
    with Image.open(io.BytesIO(raw)) as probe:  # reads the header only
        if probe.format not in formats:
            raise ImageRejected(f"unsupported image format {probe.format}; accepted: {', '.join(formats)}")
        width, height = probe.size
        _check_pixels(width, height, limit)
        probe.verify()
        return probe.format


def _rejection(exc: BaseException) -> ImageRejected:
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return ImageRejected(f"image too large (decompression bomb guard): {exc}", code="too_large")
    if isinstance(exc, UnidentifiedImageError):
        return ImageRejected("not an image (unrecognised format)")
    if isinstance(exc, (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError)):
        # Truncated data, bad huffman tables, broken PNG chunks, ... all surface as these.
        return ImageRejected(f"corrupt or truncated image: {exc}")
    raise exc


def decode_image(data: bytes | BinaryIO, max_pixels: int | None = None) -> DecodedImage:
    """Decode ``data`` safely; raise ``ImageRejected`` if it is not a usable image.

    ``max_pixels`` defaults to ``settings.GENREWEB_POSTER_MAX_PIXELS``; the limit is checked
    from the header, before any pixel is decoded.
    """
    limit = _limit(max_pixels)
    raw = _read_all(data)
    if not raw:
        raise ImageRejected("empty file")
    with warnings.catch_warnings():
        # Pillow's own (global) bomb guard warns first and errors at twice its limit; treat
        # both as a rejection. Our per-call limit (in _probe) is the one that normally trips.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            _probe(raw, limit, ACCEPTED_FORMATS)
            image = Image.open(io.BytesIO(raw), formats=ACCEPTED_FORMATS)
            fmt, mode = image.format or "", image.mode
            width, height = image.size
            image.load()
        except ImageRejected:
            raise
        except Exception as exc:  # noqa: BLE001 - _rejection maps Pillow's many errors
            raise _rejection(exc) from exc
    if width <= 0 or height <= 0:
        raise ImageRejected(f"image has no pixels ({width}x{height})")
    try:
        # Phone photos/scans store rotation in EXIF; apply it so width/height are as shown.
        oriented = ImageOps.exif_transpose(image)
    except Exception:  # broken EXIF is no reason to lose an otherwise good picture
        oriented = image
    return DecodedImage(
        image=oriented,
        format=fmt,
        mode=mode,
        width=oriented.width,
        height=oriented.height,
        is_grayscale=is_grayscale(oriented),
    )


def read_upload(upload) -> bytes:
    """The bytes of an uploaded image file once they pass every check: size
    (settings.GENREWEB_UPLOAD_MAX_BYTES), type and pixel count (settings.GENREWEB_UPLOAD_MAX_PIXELS,
    read from the header before any pixel is decoded). Raises ImageRejected."""
    limit = settings.GENREWEB_UPLOAD_MAX_BYTES
    if upload.size > limit:
        raise ImageRejected(
            f"the file is too large ({upload.size} bytes); the limit is {limit} bytes", code="too_large"
        )
    data = upload.read()
    decode_image(data, max_pixels=settings.GENREWEB_UPLOAD_MAX_PIXELS)
    return data


def poster_format(data: bytes) -> tuple[str, str]:
    """(extension, Content-Type) a poster with these bytes is stored and served under, from
    the format detected in its content (never from its name); raise ImageRejected unless it
    is a JPEG, PNG or WebP image within the poster pixel limit."""
    fmt = probe_image(data, formats=tuple(POSTER_FORMATS))
    return POSTER_FORMATS[fmt]


def _check_pixels(width: int, height: int, limit: int) -> None:
    if limit > 0 and width * height > limit:
        raise ImageRejected(
            f"image too large: {width}x{height} = {width * height:,} pixels exceeds the limit of {limit:,}",
            code="too_large",
        )


def is_grayscale(image: Image.Image) -> bool:
    """True for colourless modes, or colour images whose channels are (nearly) identical."""
    if image.mode in GRAYSCALE_MODES:
        return True
    small = image.copy()
    small.thumbnail((GRAYSCALE_CHECK_SIDE, GRAYSCALE_CHECK_SIDE))
    if small.mode == "P" or small.mode == "PA":
        small = small.convert("RGBA")
    if small.mode == "RGBA":
        # Ignore fully transparent pixels: their colour is meaningless.
        pixels = np.asarray(small, dtype=np.int16)
        visible = pixels[..., 3] > 0
        if not visible.any():
            return True
        rgb = pixels[..., :3][visible]
    else:
        rgb = np.asarray(small.convert("RGB"), dtype=np.int16).reshape(-1, 3)
    spread = rgb.max(axis=-1) - rgb.min(axis=-1)
    return float(spread.mean()) <= GRAYSCALE_MEAN_SPREAD and float(np.percentile(spread, 99)) <= GRAYSCALE_P99_SPREAD


def to_rgb(image: Image.Image) -> Image.Image:
    """Three-channel copy; transparency is flattened onto white (posters are shown on white)."""
    if image.mode == "RGB":
        return image
    if image.mode in {"RGBA", "LA", "La", "PA"} or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode.startswith("I") or image.mode == "F":
        # 16/32-bit grayscale: scale to 8 bits instead of clipping everything above 255 to white.
        values = np.asarray(image, dtype=np.float64)
        if values.size and values.max() > 255:
            values = values / 257.0
        return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), mode="L").convert("RGB")
    return image.convert("RGB")


def to_gray(image: Image.Image) -> Image.Image:
    """One-channel copy (transparency flattened onto white first)."""
    if image.mode == "L":
        return image
    return to_rgb(image).convert("L")
