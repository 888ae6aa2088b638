"""Tests for imaging: sniffing, probing and fitting real images made with Pillow."""

from __future__ import annotations

import io
import threading
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from flux_worker.generation import fitting
from flux_worker.generation.fitting import FittedImage, NotAnImage

RED, GREEN, BLUE = (220, 30, 30), (30, 200, 60), (30, 60, 220)
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
                 "GIF": "image/gif"}


def encode(img: Image.Image, fmt: str, **options) -> bytes:
    """Encode img in fmt and return the bytes."""
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def decode(data: bytes) -> Image.Image:
    """Decode bytes fully into an image."""
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def picture(width: int, height: int) -> Image.Image:
    """An RGB image with gradients and shapes, so encoders have real detail to work on."""
    img = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(img)
    for i in range(0, max(width, height), 29):
        draw.line((0, i, width, height - i), fill=(i % 256, 120, 255 - i % 256), width=3)
    draw.ellipse((width // 4, height // 4, width * 3 // 4, height * 3 // 4), outline=RED, width=9)
    return img


@cache
def jpeg_1024() -> bytes:
    return encode(picture(1024, 1024), "JPEG", quality=90)


@cache
def png_1024() -> bytes:
    return encode(picture(1024, 1024), "PNG")


@cache
def rgba_png() -> bytes:
    """A 200x100 PNG: left half transparent, right half opaque blue."""
    img = Image.new("RGBA", (200, 100), (255, 0, 0, 0))
    img.paste(Image.new("RGBA", (100, 100), BLUE + (255,)), (100, 0))
    return encode(img, "PNG")


def samples() -> dict[str, bytes]:
    """One 300x200 image per supported format."""
    img = picture(300, 200)
    return {"JPEG": encode(img, "JPEG"), "PNG": encode(img, "PNG"),
            "WEBP": encode(img, "WEBP"), "GIF": encode(img.convert("P"), "GIF"),
            "RGBA PNG": encode(img.convert("RGBA"), "PNG")}


JUNK = {
    "empty": b"",
    "text": b"hello",
    "truncated jpeg": None,          # filled in lazily: the first 100 bytes of a real JPEG
    "png header with garbage": b"\x89PNG\r\n\x1a\n" + b"garbage!" * 20,
}


def junk(name: str) -> bytes:
    return jpeg_1024()[:100] if JUNK[name] is None else JUNK[name]


# --- sniff ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["JPEG", "PNG", "WEBP", "GIF", "RGBA PNG"])
def test_sniff_names_each_format(name):
    expected = CONTENT_TYPES[name.split()[-1]]
    assert fitting.sniff(samples()[name]) == expected


@pytest.mark.parametrize("data", [b"", b"hello", b"\xff\xd8", b"RIFF\x00\x00\x00\x00WAVEfmt ",
                                  b"GIF90a", b"<svg xmlns='http://www.w3.org/2000/svg'/>"])
def test_sniff_rejects_junk(data):
    assert fitting.sniff(data) is None


# --- probe ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["JPEG", "PNG", "WEBP", "GIF", "RGBA PNG"])
def test_probe_reads_type_and_size(name):
    assert fitting.probe(samples()[name]) == (CONTENT_TYPES[name.split()[-1]], 300, 200)


@pytest.mark.parametrize("name", list(JUNK))
def test_probe_rejects_junk(name):
    with pytest.raises(NotAnImage):
        fitting.probe(junk(name))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_probe_refuses_decompression_bombs(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300 * 200 - 1)
    with pytest.raises(NotAnImage):
        fitting.probe(samples()["PNG"])
    with pytest.raises(NotAnImage):
        fitting.fit(samples()["PNG"], 64, 64)


def test_not_an_image_is_a_value_error():
    assert issubclass(NotAnImage, ValueError)


# --- fit: sizes ----------------------------------------------------------------------------

SIZES = [(512, 1024), (768, 512), (768, 1024), (1024, 576), (576, 1024), (1000, 700), (64, 64)]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_fit_same_size_returns_the_original_bytes(fmt):
    data = jpeg_1024() if fmt == "JPEG" else png_1024()
    fitted = fitting.fit(data, 1024, 1024)
    assert fitted.data is data
    assert fitted == FittedImage(data, CONTENT_TYPES[fmt], 1024, 1024)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: "%dx%d" % s)
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_fit_gives_exactly_the_requested_size(fmt, size):
    data = jpeg_1024() if fmt == "JPEG" else png_1024()
    fitted = fitting.fit(data, *size)
    img = decode(fitted.data)
    assert img.size == size
    assert img.format == fmt
    assert (fitted.width, fitted.height) == size
    assert fitted.content_type == CONTENT_TYPES[fmt] == fitting.sniff(fitted.data)


def test_fit_upscales_a_small_source():
    data = encode(picture(512, 512), "JPEG")
    fitted = fitting.fit(data, 1024, 576)
    assert decode(fitted.data).size == (1024, 576)
    assert fitted.content_type == "image/jpeg"


@settings(max_examples=12, deadline=None)
@given(width=st.integers(64, 1200), height=st.integers(64, 1200),
       fmt=st.sampled_from(["JPEG", "PNG"]))
def test_fit_always_gives_the_target_size(width, height, fmt):
    data = jpeg_1024() if fmt == "JPEG" else png_1024()
    fitted = fitting.fit(data, width, height)
    assert decode(fitted.data).size == (width, height)
    assert fitting.sniff(fitted.data) == CONTENT_TYPES[fmt]


@pytest.mark.parametrize("size", [(0, 64), (64, -1)])
def test_fit_rejects_empty_sizes(size):
    with pytest.raises(ValueError):
        fitting.fit(jpeg_1024(), *size)


# --- fit: cropping -------------------------------------------------------------------------

@cache
def banded(fmt: str) -> bytes:
    """1024x1024: red bands at top and bottom, blue bands left and right, green centre."""
    img = Image.new("RGB", (1024, 1024), GREEN)
    draw = ImageDraw.Draw(img)
    draw.rectangle((224, 0, 799, 223), fill=RED)
    draw.rectangle((224, 800, 799, 1023), fill=RED)
    draw.rectangle((0, 224, 223, 799), fill=BLUE)
    draw.rectangle((800, 224, 1023, 799), fill=BLUE)
    return encode(img, fmt, **({"quality": 95} if fmt == "JPEG" else {}))


def near(pixel, colour, tolerance=40):
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("size", [(1024, 576), (768, 432)], ids=["crop", "crop+scale"])
def test_wide_crop_trims_top_and_bottom_equally(fmt, size):
    img = decode(fitting.fit(banded(fmt), *size).data).convert("RGB")
    w, h = size
    for x in (w // 2 - 20, w // 2, w // 2 + 20):
        assert near(img.getpixel((x, 3)), GREEN)      # the red bands are gone ...
        assert near(img.getpixel((x, h - 4)), GREEN)  # ... at both ends
    assert near(img.getpixel((3, h // 2)), BLUE)      # while the sides are kept
    assert near(img.getpixel((w - 4, h // 2)), BLUE)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("size", [(576, 1024), (432, 768)], ids=["crop", "crop+scale"])
def test_tall_crop_trims_left_and_right_equally(fmt, size):
    img = decode(fitting.fit(banded(fmt), *size).data).convert("RGB")
    w, h = size
    for y in (h // 2 - 20, h // 2, h // 2 + 20):
        assert near(img.getpixel((3, y)), GREEN)
        assert near(img.getpixel((w - 4, y)), GREEN)
    assert near(img.getpixel((w // 2, 3)), RED)
    assert near(img.getpixel((w // 2, h - 4)), RED)


def test_square_target_from_a_wide_source_keeps_the_centre():
    img = Image.new("RGB", (1000, 500), BLUE)
    img.paste(Image.new("RGB", (500, 500), GREEN), (250, 0))
    fitted = decode(fitting.fit(encode(img, "PNG"), 100, 100).data)
    assert fitted.getpixel((1, 50)) == GREEN
    assert fitted.getpixel((98, 50)) == GREEN


# --- fit: formats --------------------------------------------------------------------------

def test_png_with_alpha_to_jpeg_flattens_onto_white():
    fitted = fitting.fit(rgba_png(), 200, 100, "jpeg")
    assert fitting.sniff(fitted.data) == fitted.content_type == "image/jpeg"
    img = decode(fitted.data)
    assert img.mode == "RGB" and img.size == (200, 100)
    assert near(img.getpixel((20, 50)), (255, 255, 255), 8)
    assert near(img.getpixel((180, 50)), BLUE, 20)


def test_png_with_alpha_stays_transparent_when_resized():
    img = decode(fitting.fit(rgba_png(), 100, 50).data)
    assert img.mode == "RGBA"
    assert img.getpixel((5, 25))[3] == 0
    assert img.getpixel((95, 25)) == BLUE + (255,)


@pytest.mark.parametrize("source, output, expected", [
    ("JPEG", "webp", "image/webp"),
    ("JPEG", "png", "image/png"),
    ("PNG", "jpg", "image/jpeg"),
    ("PNG", "JPEG", "image/jpeg"),
    ("WEBP", "png", "image/png"),
    ("GIF", None, "image/png"),
])
def test_output_format_is_honoured(source, output, expected):
    fitted = fitting.fit(samples()[source], 150, 150, output)
    assert fitting.sniff(fitted.data) == fitted.content_type == expected
    assert decode(fitted.data).size == (150, 150)


def test_same_size_in_another_format_is_converted():
    data = samples()["JPEG"]
    for fitted in (fitting.fit(data, 300, 200, "png"), fitting.convert(data, "png")):
        assert fitting.sniff(fitted.data) == "image/png"
        assert decode(fitted.data).size == (300, 200)


def test_same_size_and_same_format_named_explicitly_is_untouched():
    data = samples()["JPEG"]
    assert fitting.fit(data, 300, 200, "jpg").data is data


def test_unknown_output_format_is_a_value_error():
    with pytest.raises(ValueError, match="output format"):
        fitting.fit(jpeg_1024(), 64, 64, "bmp")


# --- fit: broken input ---------------------------------------------------------------------

@pytest.mark.parametrize("name", list(JUNK))
@pytest.mark.parametrize("size", [(1024, 1024), (512, 512)])
def test_fit_rejects_junk(name, size):
    with pytest.raises(NotAnImage):
        fitting.fit(junk(name), *size)


@pytest.mark.parametrize("size", [(1024, 1024), (512, 512)], ids=["same size", "resized"])
def test_fit_rejects_a_jpeg_cut_off_after_its_header(size):
    cut = jpeg_1024()[: len(jpeg_1024()) // 2]
    assert fitting.probe(cut) == ("image/jpeg", 1024, 1024)   # the header alone looks fine
    with pytest.raises(NotAnImage):
        fitting.fit(cut, *size)


def test_fit_keeps_a_complete_image_with_trailing_bytes():
    data = jpeg_1024() + b"\x00trailer"
    assert fitting.fit(data, 1024, 1024).data is data


# --- fit: cost rules ------------------------------------------------------------------------

@pytest.mark.parametrize("source, target, expected", [
    ((1024, 683), (768, 512), Image.Resampling.BOX),        # 3:2: a mild shrink
    ((512, 512), (1024, 1024), Image.Resampling.BILINEAR),  # a small output enlarged
    ((1000, 1000), (64, 64), Image.Resampling.LANCZOS),     # a big shrink (PNG: no draft)
    ((1024, 1024), (512, 512), Image.Resampling.BOX),       # exactly half
])
def test_the_filter_follows_the_scale_factor(source, target, expected):
    resample, gap = fitting._resampling(*source, *target)
    assert resample == expected
    assert (gap is not None) == (expected == Image.Resampling.LANCZOS)


def test_fits_in_many_threads_and_failures_give_their_slot_back():
    """More threads than pixel slots, half of them failing: every good fit still finishes."""
    cut = jpeg_1024()[: len(jpeg_1024()) // 2]
    slots = fitting.pixel_work.CORES
    results: list = []

    def work(i: int) -> None:
        try:
            results.append(fitting.fit(cut if i % 2 else jpeg_1024(), 768, 512))
        except NotAnImage as exc:
            results.append(exc)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(4 * slots)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a fit never got a slot"
    fitted = [r for r in results if isinstance(r, FittedImage)]
    assert len(fitted) == 2 * slots
    assert sum(isinstance(r, NotAnImage) for r in results) == 2 * slots
    assert all(decode(f.data).size == (768, 512) for f in fitted)
