"""Sniff, probe and fit images to an exact size (Pillow only, no Flask).

The product promises that the size you ask for is the size you get. flux-1-schnell always answers
with about 1024x1024, so the pipeline crops the image around its centre to the requested aspect
ratio and scales it to the exact width and height. An image that already has that size and format
is passed on byte for byte.

Every function works on bytes and raises NotAnImage for bytes Pillow cannot read (empty, junk,
truncated, corrupt), so the caller can answer 502 instead of storing garbage.

Decompression bombs: Pillow refuses images above 2 x ``Image.MAX_IMAGE_PIXELS`` (about 179
megapixels) and only warns between 1x and 2x; here anything above ``Image.MAX_IMAGE_PIXELS`` is
NotAnImage, decided from the header before a single pixel is decoded.

Pillow releases the GIL while it decodes, resamples and encodes, so gunicorn's threads fit images
in parallel, but never more at once than the process has cores (``inputs/pixel_work.py``, shared
with input decoding): more would not finish sooner and would each hold a few MB of pixels (see
docs/benchmarks.md, "Sizing images").
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from ..inputs import pixel_work

_CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
                  "GIF": "image/gif"}
# Only these decoders are ever tried: Pillow knows dozens more (EPS even runs Ghostscript),
# none of which an image model returns, so they would only widen the attack surface.
_READABLE = tuple(_CONTENT_TYPES)
# The output formats a client may ask for, by the names clients write (`jpg` is `jpeg`).
OUTPUT_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "webp": "webp"}
_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
_OUTPUT_FORMATS = {name: _PIL_FORMATS[canonical] for name, canonical in OUTPUT_FORMATS.items()}

# Pillow's plugins raise a mix of these for malformed input; all of them mean "not an image".
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
                  IndexError, KeyError, TypeError, struct.error, Image.DecompressionBombError)

# Encoder settings, measured with bench/imaging_bench.py on the model's 1024x1024 output: q90 with
# Pillow's default 4:2:0 subsampling; optimize=True saves ~10% of bytes for 2.5x the encoding CPU
# and progressive costs more still, so neither is used: the image is kept for minutes, CPU counts.
JPEG_QUALITY = 90
WEBP_QUALITY = 90
# zlib level 1 is several times faster than Pillow's default 6 and only slightly larger.
PNG_COMPRESS_LEVEL = 1
# The filter follows the scale factor (bench/imaging_bench.py --filters has cost and PSNR of each):
# - shrinking by 2x or more happens mostly in the JPEG decoder (draft); what is left, or a large
#   shrink of a PNG/WebP, goes through Lanczos after a cheap integer box reduction (reducing_gap
#   3.0, which Pillow documents as indistinguishable from the full filter);
# - a mild shrink (by less than 2x, e.g. 1024x683 -> 768x512 for 3:2) averages areas (box):
#   46 dB PSNR against Lanczos at under a third of its CPU (Lanczos alone cost 12 ms here);
# - enlarging (a model output smaller than asked) is bilinear: no filter can add detail, and
#   bicubic/Lanczos cost 1.7x/2.5x as much for edges that are only slightly crisper (<= 0.6 dB).
_SHRINK_FILTER = Image.Resampling.LANCZOS
_MILD_SHRINK_FILTER = Image.Resampling.BOX
_ENLARGE_FILTER = Image.Resampling.BILINEAR
_REDUCING_GAP = 3.0


# No image model makes more than this many pixels a side (lucid-origin's 2500 is the largest);
# an upstream answer declaring more is refused before decoding (a 9400x9400 PNG of a few KB
# would decode into 265 MB). Input images are decoded to at most the same side.
MAX_GENERATED_SIDE = pixel_work.LARGEST_SIDE

# Pillow hands every image's memory straight back to malloc by default, and blocks that big are
# mmap'ed, so each fit page-faulted ~10 MB of fresh zeroed memory: up to 8 ms of system CPU for a
# 3:2 answer, more than the resampling itself. Keeping a few freed blocks for reuse removes that;
# a fit holds up to 4 images at once (decoded, cropped, resampled, converted), so 4 per slot
# bound what stays resident to ~16 MB per slot. PILLOW_BLOCKS_MAX, if set, still decides.
_BLOCKS_PER_SLOT = 4
if "PILLOW_BLOCKS_MAX" not in os.environ and hasattr(Image.core, "set_blocks_max"):
    Image.core.set_blocks_max(max(Image.core.get_blocks_max(),
                                  _BLOCKS_PER_SLOT * pixel_work.CORES))


class NotAnImage(ValueError):
    """The bytes are not a complete image in a supported format."""


@dataclass(frozen=True)
class FittedImage:
    """Encoded image bytes with their content type and exact size."""

    data: bytes
    content_type: str
    width: int
    height: int


def sniff(data: bytes) -> str | None:
    """Return the content type that the magic bytes announce, or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def probe(data: bytes) -> tuple[str, int, int]:
    """Return content type, width and height, reading only the header.

    :raises NotAnImage: empty, unknown, corrupt or oversized header.
    """
    with _open(data) as img:
        return _CONTENT_TYPES[_format_of(img)], img.width, img.height


def oversized(data: bytes, limit: int = MAX_GENERATED_SIDE) -> tuple[int, int] | None:
    """Return (width, height) when the header declares a side above `limit`, else None.

    Only the header is read; bytes that are not an image return None (fit() refuses them).
    """
    try:
        img = Image.open(io.BytesIO(data), formats=_READABLE)
    except _DECODE_ERRORS:
        return None
    with img:
        return img.size if max(img.size) > limit else None


def fit(data: bytes, width: int, height: int, output_format: str | None = None,
        compression: int | None = None) -> FittedImage:
    """Crop around the centre to the target ratio and scale to exactly width x height.

    The result keeps the input's format (GIF becomes PNG) unless output_format is "png",
    "jpeg"/"jpg" or "webp". An input that already has the size and format is returned as is,
    unless a `compression` (JPEG/WebP quality 0-100, OpenAI's output_compression) asks for a
    JPEG or WebP encoding of its own.

    :raises NotAnImage: the bytes are not a complete, decodable image.
    :raises ValueError: a size below 1 or an unknown output_format.
    """
    if width < 1 or height < 1:
        raise ValueError(f"target size must be positive, not {width}x{height}")
    wanted = _output_format(output_format)
    with _open(data) as img:
        source = _format_of(img)
        # Re-encoding a GIF would quantise the resampled colours again; PNG keeps them.
        target = wanted or (source if source in _OUTPUT_FORMATS.values() else "PNG")
        recompress = compression is not None and target in ("JPEG", "WEBP")
        if (img.size == (width, height) and wanted in (None, source) and not recompress
                and _complete(data, img)):
            return FittedImage(data, _CONTENT_TYPES[source], width, height)
        icc = img.info.get("icc_profile")
        # Decoding, resampling and encoding share the process's pixel budget with input
        # decoding: one core's share (or more, for an image larger than that) at a time.
        with pixel_work.BUDGET.hold(img.width * img.height + width * height):
            try:
                encoded = _encode(_resize(img, width, height), target, icc, compression)
            except _DECODE_ERRORS as exc:
                raise NotAnImage(f"the {source} image could not be decoded: {exc}") from exc
    return FittedImage(encoded, _CONTENT_TYPES[target], width, height)


def convert(data: bytes, output_format: str) -> FittedImage:
    """Re-encode the image in output_format at its own size.

    :raises NotAnImage: the bytes are not a complete, decodable image.
    """
    _, width, height = probe(data)
    return fit(data, width, height, output_format)


def _output_format(name: str | None) -> str | None:
    if name is None:
        return None
    try:
        return _OUTPUT_FORMATS[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown output format {name!r}; use png, jpeg or webp") from None


def _open(data: bytes) -> Image.Image:
    """Open the image lazily (header only) and refuse what must not be decoded."""
    if not data:
        raise NotAnImage("no bytes")
    try:
        img = Image.open(io.BytesIO(data), formats=_READABLE)
    except _DECODE_ERRORS as exc:
        raise NotAnImage(f"not a readable image ({sniff(data) or 'unknown format'}): {exc}") \
            from exc
    width, height = img.size
    limit = Image.MAX_IMAGE_PIXELS
    if width < 1 or height < 1 or (limit and width * height > limit):
        img.close()
        raise NotAnImage(f"refusing to decode a {width}x{height} image")
    return img


def _format_of(img: Image.Image) -> str:
    """Return the format name of an image _open accepted (always one of _READABLE)."""
    return img.format or ""


# What a complete file ends with: a truncated download (the common failure) lacks it.
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _complete(data: bytes, img: Image.Image) -> bool:
    """Tell whether the bytes hold a whole image, cheaply when the format's trailer is there.

    :raises NotAnImage: the trailer is missing and a full decode fails.
    """
    if img.format == "JPEG":
        ends = data.endswith(b"\xff\xd9")
    elif img.format == "PNG":
        ends = data.endswith(_PNG_END)
    elif img.format == "WEBP":
        ends = int.from_bytes(data[4:8], "little") + 8 in (len(data), len(data) - 1)
    else:
        ends = data.endswith(b";")
    if ends:
        return True
    # No trailer: maybe trailing bytes after a valid image, maybe a cut-off one. Decoding tells.
    try:
        img.load()
    except _DECODE_ERRORS as exc:
        raise NotAnImage(f"the {img.format} image is incomplete: {exc}") from exc
    return True


def _crop_box(src_w: int, src_h: int, width: int, height: int) -> tuple[int, int, int, int]:
    """The largest centred box of the source with the target's aspect ratio."""
    if src_w * height > width * src_h:      # source is wider: trim left and right
        crop_w, crop_h = max(1, round(src_h * width / height)), src_h
    else:                                   # source is taller: trim top and bottom
        crop_w, crop_h = src_w, max(1, round(src_w * height / width))
    left, top = (src_w - crop_w) // 2, (src_h - crop_h) // 2
    return left, top, left + crop_w, top + crop_h


def _resize(img: Image.Image, width: int, height: int) -> Image.Image:
    """Decode, crop to the target ratio and scale to width x height."""
    if img.format == "JPEG":
        # libjpeg can decode at 1/2, 1/4 or 1/8 scale by dropping DCT coefficients, which skips
        # most of the decoding work and memory. Ask for the smallest scale at which the crop box
        # still covers the target, so the final filter only ever shrinks (or keeps) pixels.
        left, top, right, bottom = _crop_box(img.width, img.height, width, height)
        img.draft("RGB", (-(-width * img.width // (right - left)),
                          -(-height * img.height // (bottom - top))))
    # Crop first rather than resize(box=...): the filter would reach past the box and let a few
    # pixels of the cut-off parts bleed into the edges.
    img = _workable(img)
    img = img.crop(_crop_box(img.width, img.height, width, height))
    if img.size == (width, height):
        return img                          # a pure crop (16:9 from 1024x1024): no resampling
    resample, gap = _resampling(img.width, img.height, width, height)
    if img.mode == "RGBA":
        # Resample premultiplied, or transparent pixels bleed their hidden colour into edges.
        return img.convert("RGBa").resize((width, height), resample,
                                          reducing_gap=gap).convert("RGBA")
    return img.resize((width, height), resample, reducing_gap=gap)


def _resampling(src_w: int, src_h: int, width: int, height: int) -> tuple[int, float | None]:
    """Pick the filter (and Pillow's reducing_gap) for scaling src to width x height."""
    scale = max(width / src_w, height / src_h)
    if scale > 1:
        return _ENLARGE_FILTER, None
    if scale >= 0.5:
        return _MILD_SHRINK_FILTER, None
    return _SHRINK_FILTER, _REDUCING_GAP


def _workable(img: Image.Image) -> Image.Image:
    """Decode into L, RGB or RGBA, the modes that resample and encode everywhere."""
    if img.mode in ("L", "RGB", "RGBA"):
        img.load()
        return img
    if img.mode in ("LA", "PA", "RGBa") or "transparency" in img.info:
        return img.convert("RGBA")
    return img.convert("RGB")


def _encode(img: Image.Image, fmt: str, icc: bytes | None,
            compression: int | None = None) -> bytes:
    """Encode once in fmt; JPEG has no alpha, so transparency is flattened onto white.

    `compression` is the JPEG/WebP quality asked (0-100); Pillow's JPEG encoder takes 1 to 95
    sensibly (above 95 only grows the file), so the ends are brought into that range.
    """
    options: dict = {"icc_profile": icc} if icc else {}
    if fmt == "JPEG":
        if img.mode == "RGBA":
            flat = Image.new("RGB", img.size, (255, 255, 255))
            flat.paste(img, mask=img.getchannel("A"))
            img = flat
        options.update(quality=JPEG_QUALITY if compression is None
                       else max(1, min(95, compression)))
    elif fmt == "PNG":
        options.update(compress_level=PNG_COMPRESS_LEVEL)
    else:
        options.update(quality=WEBP_QUALITY if compression is None
                       else max(0, min(100, compression)))
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()
