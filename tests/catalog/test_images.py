import io

import pytest
from PIL import Image

from catalog.images import DecodedImage, ImageRejected, decode_image, is_grayscale, to_rgb
from tests.factories import image_bytes


def test_decodes_colour_jpeg_with_size_and_mode():
    decoded = decode_image(image_bytes(120, 180))
    assert isinstance(decoded, DecodedImage)
    assert (decoded.width, decoded.height, decoded.mode, decoded.format) == (120, 180, "RGB", "JPEG")
    assert decoded.is_grayscale is False
    assert decoded.min_side == 120


def test_accepts_a_binary_file():
    decoded = decode_image(io.BytesIO(image_bytes(80, 90, fmt="PNG")))
    assert (decoded.width, decoded.height, decoded.format) == (80, 90, "PNG")


@pytest.mark.parametrize("mode", ["L", "LA", "1"])
def test_colourless_modes_are_grayscale(mode):
    decoded = decode_image(image_bytes(64, 64, mode=mode, fmt="PNG"))
    assert decoded.mode == mode
    assert decoded.is_grayscale


def test_rgb_with_identical_channels_is_grayscale_despite_jpeg_noise():
    decoded = decode_image(image_bytes(200, 300, gray=True, quality=60))
    assert decoded.mode == "RGB"
    assert decoded.is_grayscale


def test_faint_tint_is_not_grayscale():
    gray = Image.open(io.BytesIO(image_bytes(100, 100, gray=True, fmt="PNG"))).convert("RGB")
    sepia = Image.merge(
        "RGB", [band.point(lambda v, k=k: min(255, v + k)) for band, k in zip(gray.split(), (30, 15, 0), strict=False)]
    )
    assert not is_grayscale(sepia)


def test_rejects_truncated_jpeg():
    data = image_bytes(200, 300)
    with pytest.raises(ImageRejected, match="truncated"):
        decode_image(data[: len(data) // 2])


@pytest.mark.parametrize("data", [b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_rejects_non_images(data):
    with pytest.raises(ImageRejected) as info:
        decode_image(data)
    assert info.value.code == "invalid"
    assert info.value.reason


def test_rejects_empty_bytes():
    with pytest.raises(ImageRejected, match="empty"):
        decode_image(b"")


def test_pixel_limit_rejects_before_decoding(settings):
    settings.GENREWEB_POSTER_MAX_PIXELS = 100 * 100
    with pytest.raises(ImageRejected) as info:
        decode_image(image_bytes(101, 100, fmt="PNG"))
    assert info.value.code == "too_large"
    assert "10,100 pixels" in info.value.reason
    assert decode_image(image_bytes(100, 100, fmt="PNG")).width == 100
    # An explicit argument wins over the setting.
    assert decode_image(image_bytes(101, 100, fmt="PNG"), max_pixels=20_000).width == 101


def test_pillow_decompression_bomb_guard_becomes_a_rejection(monkeypatch):
    # Pillow's global guard trips even when our own limit is generous.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageRejected, match="decompression bomb") as info:
        decode_image(image_bytes(40, 40, fmt="PNG"), max_pixels=10**9)
    assert info.value.code == "too_large"


def test_exif_orientation_is_applied():
    picture = Image.new("RGB", (60, 40), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", exif=exif)
    decoded = decode_image(buffer.getvalue())
    assert (decoded.width, decoded.height) == (40, 60)


def test_to_rgb_flattens_transparency_on_white():
    transparent = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert to_rgb(transparent).getpixel((0, 0)) == (255, 255, 255)
    sixteen_bit = Image.new("I;16", (4, 4), 65535)
    assert to_rgb(sixteen_bit).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("fmt", ["PPM", "ICO", "TGA"])
def test_rejects_formats_outside_the_accepted_list(fmt):
    with pytest.raises(ImageRejected, match=f"unsupported image format {fmt}"):
        decode_image(image_bytes(32, 32, fmt=fmt))


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_accepts_common_formats(fmt):
    assert decode_image(image_bytes(32, 48, fmt=fmt)).height == 48


def test_read_upload_checks_size_before_reading_then_decodes(settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from catalog.images import read_upload

    data = image_bytes()
    assert read_upload(SimpleUploadedFile("p.jpg", data)) == data

    settings.GENREWEB_UPLOAD_MAX_BYTES = len(data) - 1
    with pytest.raises(ImageRejected) as err:
        read_upload(SimpleUploadedFile("p.jpg", data))
    assert err.value.code == "too_large" and "too large" in err.value.reason

    settings.GENREWEB_UPLOAD_MAX_BYTES = 10_000_000
    with pytest.raises(ImageRejected) as err:
        read_upload(SimpleUploadedFile("p.txt", b"not an image at all"))
    assert err.value.code == "invalid"
