"""Tests for the offline demo backend."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image, ImageFont, ImageStat

from flux_worker.backends.demo import ELLIPSIS, DemoBackend, _wrap
from flux_worker.catalog.workers_ai import CATALOG
from flux_worker.generation.backend import GeneratedImage, GenerationRequest

FLUX = CATALOG[0]


def request(prompt="a cute cat", width=1024, height=1024, seed=42, model=FLUX):
    """A generation request with sensible defaults."""
    return GenerationRequest(prompt=prompt, model=model, width=width, height=height, seed=seed)


def decode(generated: GeneratedImage) -> Image.Image:
    img = Image.open(io.BytesIO(generated.data))
    img.load()
    return img


def test_is_named_demo():
    assert DemoBackend.name == "demo"


@pytest.mark.parametrize("size", [(1024, 1024), (768, 512), (576, 1024), (1024, 576),
                                  (1000, 700), (64, 64), (2048, 256)],
                         ids=lambda s: "%dx%d" % s)
def test_draws_a_jpeg_of_exactly_the_requested_size(size):
    generated = DemoBackend().generate(request(width=size[0], height=size[1]))
    assert generated.content_type == "image/jpeg"
    assert generated.data[:3] == b"\xff\xd8\xff"
    img = decode(generated)
    assert img.format == "JPEG"
    assert img.size == size


def test_same_request_gives_the_same_bytes():
    assert DemoBackend().generate(request()).data == DemoBackend().generate(request()).data


@pytest.mark.parametrize("other", [request(prompt="a cute dog"), request(seed=43),
                                   request(seed=None)])
def test_prompt_and_seed_change_the_image(other):
    assert DemoBackend().generate(other).data != DemoBackend().generate(request()).data


@pytest.mark.parametrize("prompt", [
    "a very long prompt " * 500,
    "一只可爱的猫坐在窗台上，夕阳，水彩画风格" * 30,
    "🐱🌅🎨 cat at sunset 🐈‍⬛",
    "lone surrogate \ud83d from JSON",
    "Supercalifragilisticexpialidocious" * 40,
    "",
    "   \n\t ",
])
def test_unusual_prompts_do_not_break_it(prompt):
    img = decode(DemoBackend().generate(request(prompt=prompt, width=768, height=512)))
    assert img.size == (768, 512)


def test_image_is_not_blank():
    img = decode(DemoBackend().generate(request())).convert("RGB")
    low, high = zip(*ImageStat.Stat(img).extrema, strict=True)
    assert max(high) - min(low) > 150                       # dark outlines and white text
    assert img.getpixel((2, 2)) != img.getpixel((1021, 1021))   # a gradient, not a flat fill
    # The DEMO mark fills the upper middle: a band there holds plenty of white-ish pixels.
    band = img.crop((0, 200, 1024, 380)).convert("L")
    bright = sum(count for value, count in enumerate(band.histogram()) if value > 230)
    assert bright > 0.05 * band.width * band.height


def test_is_safe_to_call_from_threads():
    backend = DemoBackend()
    requests = [request(prompt=f"prompt {i}", seed=i, width=512, height=384) for i in range(8)]
    serial = [backend.generate(r).data for r in requests]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(lambda r: backend.generate(r).data, requests)) == serial


def test_wrap_keeps_lines_within_the_width_and_marks_a_cut():
    font = ImageFont.load_default(size=20)
    lines = _wrap("word " * 200, font, 300, 4)
    assert len(lines) == 4
    assert all(font.getlength(line) <= 300 for line in lines)
    assert lines[-1].endswith(ELLIPSIS)


def test_wrap_breaks_text_without_spaces():
    font = ImageFont.load_default(size=20)
    lines = _wrap("猫" * 100, font, 200, 3)
    assert len(lines) == 3
    assert all(font.getlength(line) <= 200 for line in lines)
    assert lines[-1].endswith(ELLIPSIS)


def test_wrap_leaves_a_short_prompt_alone():
    font = ImageFont.load_default(size=20)
    assert _wrap("a cute  cat", font, 500, 3) == ["a cute cat"]
