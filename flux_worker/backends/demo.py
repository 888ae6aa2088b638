"""The offline demo backend: draws a placeholder image locally, without network or credentials.

It runs when no Cloudflare credentials are set, so a fresh checkout answers every request with a
real JPEG of exactly the requested size: a two-colour gradient picked from a hash of the prompt and
seed, a large "DEMO" mark, the prompt and a line with size, model and seed. The same request
always gives the same bytes, so tests and clients can rely on it.

Only Pillow's built-in font is used (``ImageFont.load_default(size=...)``, Pillow >= 10.1), so no
font files are needed. It covers Latin scripts; other characters (Chinese, emoji) are drawn as
placeholder boxes rather than failing.

Nothing is billed for a demo image, so the demo offers the Workers AI models at a price of 0
neurons (`demo_catalog`): estimates, reservations, settlements, `/v1/usage` and the page all
say 0, and no budget ever refuses a demo image.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
from dataclasses import replace

from PIL import Image, ImageDraw, ImageFont, ImageOps

from ..catalog.providers import DEMO
from ..catalog.spec import ModelSpec, Price
from ..catalog.workers_ai import CATALOG
from ..generation.backend import GeneratedImage, GenerationRequest

FREE = Price(note="The demo backend draws offline: nothing is billed.")

JPEG_QUALITY = 88
ELLIPSIS = "…"
# Longer prompts cannot fit on the image anyway; capping them bounds the wrapping work.
_MAX_PROMPT_CHARS = 600
_WHITE = (255, 255, 255)
_INK = (20, 20, 28)


def demo_catalog() -> tuple[ModelSpec, ...]:
    """The models the demo offers: the Workers AI catalog's, at no cost."""
    return tuple(replace(spec, price=FREE, provider=DEMO) for spec in CATALOG)


class DemoBackend:
    """Draw a deterministic placeholder image for each request, offline."""

    name = "demo"

    def generate(self, request: GenerationRequest) -> GeneratedImage:
        """Draw the request's prompt on a gradient (or its input image) of the requested size."""
        if request.images:
            image = render_edit(request.images[0].data, request.prompt, request.width,
                                request.height, model=request.model.short_name,
                                seed=request.seed, mask=request.mask)
        else:
            image = render(request.prompt, request.width, request.height,
                           model=request.model.short_name, seed=request.seed)
        out = io.BytesIO()
        image.save(out, "JPEG", quality=JPEG_QUALITY)
        return GeneratedImage(data=out.getvalue(), content_type="image/jpeg")


def render(prompt: str, width: int, height: int, *, model: str, seed: int | None) -> Image.Image:
    """Return the demo picture for a prompt and seed as an RGB image of width x height."""
    # JSON allows lone surrogates ("\ud83d"), which neither UTF-8 nor FreeType accept.
    prompt = prompt.encode("utf-8", "replace").decode("utf-8")
    digest = hashlib.sha256(f"{prompt}\x00{seed}".encode()).digest()
    image = _gradient(width, height, digest)
    draw = ImageDraw.Draw(image)
    short = min(width, height)
    margin = max(2, round(short * 0.06))

    # Fonts are made per call (0.1 ms each) rather than cached, so no FreeType face is shared
    # between gunicorn threads and thread safety does not hinge on Pillow's internals.
    mark_size = max(6, round(min(height * 0.22, (width - 2 * margin) / 3.0)))
    mark = ImageFont.load_default(size=mark_size)
    draw.text((width / 2, height * 0.28), "DEMO", font=mark, anchor="mm", fill=_WHITE,
              stroke_width=max(1, mark_size // 24), stroke_fill=_INK)

    info_size = max(6, round(short / 40))
    info = ImageFont.load_default(size=info_size)
    seed_text = "no seed" if seed is None else f"seed {seed}"
    draw.text((width / 2, height - margin / 2), f"{width}x{height} · {model} · {seed_text}",
              font=info, anchor="md", fill=_WHITE, stroke_width=max(1, info_size // 12),
              stroke_fill=_INK)

    text_size = max(6, round(short / 26))
    text = ImageFont.load_default(size=text_size)
    line_height = round(text_size * 1.25)
    top = height * 0.28 + mark_size * 0.6
    bottom = height - margin / 2 - info_size * 1.6
    max_lines = max(1, int((bottom - top) // line_height))
    lines = _wrap(prompt, text, width - 2 * margin, max_lines)
    for index, line in enumerate(lines):
        draw.text((width / 2, top + index * line_height), line, font=text, anchor="ma",
                  fill=_WHITE, stroke_width=max(1, text_size // 16), stroke_fill=_INK)
    return image


def render_edit(source: bytes, prompt: str, width: int, height: int, *, model: str,
                seed: int | None, mask: bytes | None = None) -> Image.Image:
    """Return the input picture, tinted per prompt and seed, with DEMO and the prompt on it.

    The result visibly derives from the input (its shapes stay), differs per seed (the tint),
    and has exactly the requested size. With a mask only the area to repaint is tinted.
    """
    prompt = prompt.encode("utf-8", "replace").decode("utf-8")
    digest = hashlib.sha256(f"edit\x00{prompt}\x00{seed}".encode()).digest()
    with Image.open(io.BytesIO(source)) as opened:
        base = ImageOps.fit(opened.convert("RGB"), (width, height), Image.Resampling.LANCZOS)
    dark = _colour(digest[0] / 255, digest[1], 40)
    light = _colour(digest[0] / 255 + 0.5, digest[2], 255)
    tinted = ImageOps.colorize(ImageOps.grayscale(base), dark, light).convert("RGB")
    if mask is not None:
        area = ImageOps.fit(Image.open(io.BytesIO(mask)).convert("L"), (width, height))
        image = Image.composite(tinted, base, area)
    else:
        image = Image.blend(base, tinted, 0.6)
    draw = ImageDraw.Draw(image)
    short = min(width, height)
    mark_size = max(6, round(short * 0.18))
    draw.text((width / 2, height * 0.2), "DEMO", font=ImageFont.load_default(size=mark_size),
              anchor="mm", fill=_WHITE, stroke_width=max(1, mark_size // 24), stroke_fill=_INK)
    text_size = max(6, round(short / 26))
    text = ImageFont.load_default(size=text_size)
    margin = max(2, round(short * 0.06))
    lines = _wrap(prompt or "variation", text, width - 2 * margin, 3)
    seed_text = "no seed" if seed is None else f"seed {seed}"
    lines.append(f"{width}x{height} · {model} · {seed_text}")
    line_height = round(text_size * 1.25)
    top = height - margin / 2 - line_height * len(lines)
    for index, line in enumerate(lines):
        draw.text((width / 2, top + index * line_height), line, font=text, anchor="ma",
                  fill=_WHITE, stroke_width=max(1, text_size // 16), stroke_fill=_INK)
    return image


def _gradient(width: int, height: int, digest: bytes) -> Image.Image:
    """A smooth diagonal gradient between two colours taken from the digest."""
    hue = digest[0] / 255
    first = _colour(hue, digest[1], digest[2])
    # A hue a quarter to a half turn away keeps the two ends clearly different.
    second = _colour(hue + 0.25 + digest[3] / 1020, digest[4], digest[5])
    middle = tuple((a + b) // 2 for a, b in zip(first, second, strict=True))
    corners = Image.new("RGB", (2, 2))
    corners.putpixel((0, 0), first)
    corners.putpixel((1, 0), middle)
    corners.putpixel((0, 1), middle)
    corners.putpixel((1, 1), second)
    # Scaling 2x2 pixels is far faster than a per-pixel loop; the box from pixel centre to
    # pixel centre stretches the gradient over the whole picture instead of its middle half.
    return corners.resize((width, height), Image.Resampling.BILINEAR, box=(0.5, 0.5, 1.5, 1.5))


def _colour(hue: float, saturation: int, value: int) -> tuple[int, int, int]:
    # Mid saturation and brightness: colourful, yet white text with a dark outline stays legible.
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, 0.45 + saturation / 255 * 0.35,
                                  0.45 + value / 255 * 0.35)
    return round(r * 255), round(g * 255), round(b * 255)


# load_default(size=...) gives a FreeTypeFont, or the bitmap ImageFont without FreeType.
_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _wrap(text: str, font: _Font, max_width: float, max_lines: int) -> list[str]:
    """Break text into at most max_lines lines no wider than max_width, ending in … if cut."""
    text = " ".join(text.split())
    cut = len(text) > _MAX_PROMPT_CHARS
    text = text[:_MAX_PROMPT_CHARS]
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= max_width:
            current = candidate
            continue
        if current:
            lines.append(current)
        # A word wider than the line, or a script without spaces (Chinese): break anywhere.
        while len(lines) <= max_lines and font.getlength(word) > max_width:
            fits = _fitting_prefix(word, font, max_width)
            lines.append(word[:fits])
            word = word[fits:]
        current = word
        if len(lines) > max_lines:
            break
    if current:
        lines.append(current)
    if len(lines) > max_lines or (cut and lines):
        lines = lines[:max_lines]
        last = lines[-1]
        while last and font.getlength(last + ELLIPSIS) > max_width:
            last = last[:-1]
        lines[-1] = last.rstrip() + ELLIPSIS
    return lines


def _fitting_prefix(word: str, font: _Font, max_width: float) -> int:
    """The length of the longest prefix of word that fits max_width (at least 1)."""
    low, high = 1, len(word)
    while low < high:
        middle = (low + high + 1) // 2
        if font.getlength(word[:middle]) <= max_width:
            low = middle
        else:
            high = middle - 1
    return low
