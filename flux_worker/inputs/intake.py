"""Image intake: every image a client brings becomes a checked, upright `InputImage` (no Flask).

Sources, in the order they are tried for a URL:

    data:image/...;base64,...     decoded here; the bytes are capped like any other input
    .../image/<key>               this service's own link, under any host name: read from storage,
                                  never over HTTP; a missing one is a 400 that says it expired
    http(s)://anything else       only with FETCH_REMOTE_IMAGES=true, through `RemoteFetcher`

Every input is decoded with Pillow before anything goes upstream: PNG, JPEG, WebP and GIF only
(the first frame of an animation), at most `MAX_INPUT_PIXELS`, EXIF orientation applied, CMYK,
palette and 16-bit images converted to 8-bit RGB(A). What comes out is PNG bytes of what the user
sees, so the backends never meet an exotic file. No model takes more than 2500 px a side, so a
larger image is scaled down to that as it is decoded (shrinking.py): a big 8-bit PNG a band of
rows at a time (png_bands.py), a JPEG at libjpeg's reduced scales, anything else whole. Every
decode holds its pixels of the process's budget (pixel_work.py), shared with output fitting.

Masks follow OpenAI's convention (fully transparent pixels mark the area to change) and are turned
into the Stable Diffusion one (white repaint, black keep) at the image's size. FLUX.2 reference
images are scaled down under 512x512 here, because Cloudflare refuses larger ones (reference §2).
"""

from __future__ import annotations

import binascii
import contextlib
import io
import re
import warnings
from urllib.parse import unquote_to_bytes, urlsplit

import pybase64
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageExpired, ImageRefused, PayloadTooLarge
from ..net.fetch import RemoteFetcher
from ..storage import ImageStore, is_valid_key
from . import pixel_work, png_bands, shrinking
from .image import ImageSource, InputImage
from .png_bands import BrokenPNG

# 40 megapixels: a large phone photo (8000x5000) still fits; a decompression bomb (a few KB of
# PNG that inflates to gigabytes) does not. Decided from the header, before decoding a pixel.
MAX_INPUT_PIXELS = 40_000_000
# Pillow decodes a WebP only whole, at about 16 bytes a pixel at its peak (652 MiB for 40 MP,
# docs/sizing.md): 16 megapixels (4096x4096) is about 270 MiB, one such decode on the machine at
# a time, which a 512 MB instance affords. PNG and JPEG are decoded scaled down, up to 40 MP.
MAX_WEBP_PIXELS = 4096 * 4096
# Cloudflare wants FLUX.2 references "smaller than 512x512" (reference §2): 511 stays under.
REFERENCE_MAX_SIDE = 511
REFERENCE_JPEG_QUALITY = 92
_READABLE = ("PNG", "JPEG", "WEBP", "GIF")
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
                  IndexError, KeyError, TypeError, Image.DecompressionBombError)
_DATA_URL = re.compile(r"^data:([^,]*?),", re.I | re.S)
_OWN_LINK = re.compile(r"(?:^|/)image/([A-Za-z0-9_-]{22,64})$")
_WHITESPACE = b" \t\r\n\f\v"
_FORMATS_TEXT = "PNG, JPEG, WebP or GIF"


# --- decoding ------------------------------------------------------------------------------------

def decode(data: bytes, label: str, *, max_pixels: int = MAX_INPUT_PIXELS,
           link: str | None = None) -> InputImage:
    """Decode, check and normalise one image; raise ImageRefused saying why it cannot be used."""
    if not data:
        raise ImageRefused(f"{label} is empty: send a {_FORMATS_TEXT} image.", param="image")
    try:
        # Pillow warns (not raises) between 1x and 2x its own limit; the limit here is lower.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=_READABLE)
    except Image.DecompressionBombError:
        # Pillow's own hard limit (2x MAX_IMAGE_PIXELS) trips already while reading the header.
        raise ImageRefused(
            f"{label} has far too many pixels; at most {max_pixels // 1_000_000} megapixels "
            "are accepted. Scale it down and try again.", param="image") from None
    except _DECODE_ERRORS:
        raise ImageRefused(f"{label} is not a {_FORMATS_TEXT} image (or it is corrupt); send "
                           "one of those formats.", param="image") from None
    with img:
        width, height = img.size
        if width < 1 or height < 1 or width * height > max_pixels:
            raise ImageRefused(
                f"{label} is {width}x{height} pixels; at most {max_pixels // 1_000_000} "
                "megapixels are accepted. Scale it down and try again.", param="image")
        if img.format == "WEBP" and width * height > MAX_WEBP_PIXELS:
            raise ImageRefused(
                f"{label} is a WebP of {width}x{height} pixels; a WebP is decoded whole, so at "
                f"most {MAX_WEBP_PIXELS / 1e6:.1f} megapixels are accepted (PNG and JPEG up to "
                f"{max_pixels // 1_000_000}). Send it as PNG or JPEG, or scale it down.",
                param="image")
        try:
            # The opened image is already the first frame of an animation (its picture);
            # n_frames would walk the whole file (2.2 s for a GIF of 616,808 frames).
            png, size, alpha = _decoded(img, data)
        except (*_DECODE_ERRORS, BrokenPNG):
            raise ImageRefused(f"{label} is truncated or corrupt: the {img.format} data could "
                               "not be decoded. Send the complete file.", param="image") from None
    return InputImage(png, size[0], size[1], alpha, label, link)


def _decoded(img: Image.Image, data: bytes) -> tuple[bytes, tuple[int, int], bool]:
    """PNG bytes, size and alpha of the upright picture, at most LARGEST_SIDE a side.

    Each decode holds its pixels of the process's budget (pixel_work) while it runs.
    """
    width, height = img.size
    target = shrinking.target_size(width, height)
    if target is None:
        with pixel_work.held(2 * width * height):   # decoded + converted
            img.load()
            upright = _normalise(ImageOps.exif_transpose(img) or img)
            return _png(upright), upright.size, upright.mode == "RGBA"
    info = dict(img.info)
    layout = png_bands.layout(data) if img.format == "PNG" else None
    if layout is not None:
        if layout.exif is not None:
            info["exif"] = layout.exif          # an eXIf chunk after the pixels counts too
        alpha = img.mode in ("RGBA", "LA") or "transparency" in img.info
        shrink = shrinking.Reduction(width, height, alpha, target,
                                     lambda band: _normalise(band, alpha))
        rows = shrinking.band_rows(width, shrink.factor)
        held = shrink.reduced.width * shrink.reduced.height + _area(target) + 4 * width * rows
        with pixel_work.held(held):
            for top, band in png_bands.bands(layout, rows):
                shrink.add(top, band)
            return _finished(shrink, info)
    if img.format == "JPEG":
        # libjpeg decodes at 1/2, 1/4 or 1/8 scale by dropping DCT coefficients: nearly free.
        img.draft(None, target)
    # Everything else (WebP, GIF, interlaced or 16-bit PNG) is decoded whole, then shrunk in
    # bands; a big one holds the machine-wide lock, so one worker of the machine does it at once.
    width, height = img.size
    factor = shrinking.reduce_factor(width, height, target)
    reduced = shrinking.reduced_size(width, height, factor)
    held = width * height + _area(reduced) + _area(target)
    # Whole decodes bigger than a share are rare and costly (a WebP's peak is 16 bytes a pixel):
    # one at a time on the whole machine.
    lock = (pixel_work.machine_wide() if width * height > pixel_work.SHARE_PIXELS
            else contextlib.nullcontext())
    with pixel_work.held(held), lock:
        img.load()
        alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
        shrink = shrinking.Reduction(width, height, alpha, target,
                                     lambda band: _normalise(band, alpha))
        for top, band in shrinking.strips(img, shrinking.band_rows(width, shrink.factor)):
            shrink.add(top, band)
        img.close()                             # the full-size pixels go before encoding
        return _finished(shrink, info)


def _finished(shrink: shrinking.Reduction, info: dict) -> tuple[bytes, tuple[int, int], bool]:
    """Encode the shrunk picture upright."""
    upright = shrinking.upright(shrink.result(), info)
    return _png(upright), upright.size, shrink.alpha


def _area(size: tuple[int, int]) -> int:
    return size[0] * size[1]


def _normalise(img: Image.Image, alpha: bool | None = None) -> Image.Image:
    """Return 8-bit RGB, or RGBA when the picture carries transparency (or `alpha` says so)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: keep the top 8 bits instead of clipping everything above 255.
        img = img.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    elif img.mode == "F":
        img = img.convert("L")
    if alpha is None:
        alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    return img.convert("RGBA") if alpha else img.convert("RGB")  # CMYK, YCbCr, P, L, 1: RGB


def _png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG", compress_level=1)  # speed over size: these bytes live one request
    return out.getvalue()


def _opened(image: InputImage) -> Image.Image:
    """The already checked PNG of an InputImage, decoded."""
    img = Image.open(io.BytesIO(image.data), formats=("PNG",))
    img.load()
    return img


# --- what the models get -------------------------------------------------------------------------

def reference_copy(image: InputImage, max_side: int = REFERENCE_MAX_SIDE) -> bytes:
    """Scale an image down to fit max_side (keeping proportions) and encode it as JPEG."""
    with pixel_work.held(2 * image.width * image.height):     # decoded + flattened
        return _reference_copy(image, max_side)


def _reference_copy(image: InputImage, max_side: int) -> bytes:
    img = _opened(image)
    if img.mode == "RGBA":
        flat = Image.new("RGB", img.size, (255, 255, 255))
        flat.paste(img, mask=img.getchannel("A"))
        img = flat
    # thumbnail only ever shrinks, and keeps the aspect ratio.
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.convert("RGB").save(out, "JPEG", quality=REFERENCE_JPEG_QUALITY)
    return out.getvalue()


def sd_mask(mask: InputImage, image: InputImage) -> bytes:
    """Turn an OpenAI mask into an SD inpainting mask (white repaint, black keep) at image size.

    A mask with an alpha channel marks the area to change with fully transparent pixels (OpenAI's
    convention); an opaque mask is read as already white-repaint/black-keep. A mask of another
    size is scaled to the image.
    :raises ImageRefused: a transparent-style mask with no transparent pixel.
    """
    with pixel_work.held(mask.width * mask.height + image.width * image.height):
        return _sd_mask(mask, image)


def _sd_mask(mask: InputImage, image: InputImage) -> bytes:
    img = _opened(mask)
    if img.mode == "RGBA":
        alpha = img.getchannel("A")
        converted = alpha.point(lambda a: 255 if a == 0 else 0)
        if converted.getextrema()[1] == 0:
            raise ImageRefused(
                f"{mask.label} has no fully transparent pixels, so it marks nothing to change. "
                "Make the area to edit fully transparent (OpenAI's mask convention).",
                param="mask")
    else:
        converted = img.convert("L").point(lambda v: 255 if v >= 128 else 0)
    if converted.size != (image.width, image.height):
        converted = converted.resize((image.width, image.height), Image.Resampling.NEAREST)
    out = io.BytesIO()
    converted.save(out, "PNG", compress_level=1)
    return out.getvalue()


def mask_from_alpha(image: InputImage) -> bytes | None:
    """The SD mask taken from the image's own transparency (OpenAI does this without a mask)."""
    if not image.alpha:
        return None
    try:
        return sd_mask(image, image)
    except ImageRefused:
        return None  # transparency present but no fully transparent pixel: no mask there


# --- sources -------------------------------------------------------------------------------------

def decode_data_url(url: str, label: str, max_bytes: int) -> bytes:
    """Return the bytes of a `data:` URL; raise ImageRefused for a malformed or oversized one."""
    match = _DATA_URL.match(url)
    if not match:
        raise ImageRefused(f"{label} is not a valid data: URL; send "
                           "data:image/png;base64,<base64 bytes>.", param="image")
    meta, payload = match.group(1), url[match.end():]
    # base64 inflates by 4/3: refuse before decoding what cannot fit anyway.
    if len(payload) > max_bytes * 4 // 3 + 8:
        raise ImageRefused.too_large(label, max_bytes)
    try:
        if meta.lower().endswith(";base64"):
            raw = payload.encode("ascii")
            try:
                data = pybase64.b64decode(raw, validate=True)
            except binascii.Error:
                data = pybase64.b64decode(raw.translate(None, _WHITESPACE), validate=True)
        else:
            data = unquote_to_bytes(payload)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ImageRefused(f"{label} is a data: URL whose base64 is invalid.",
                           param="image") from None
    if len(data) > max_bytes:
        raise ImageRefused.too_large(label, max_bytes)
    return data


def own_image_key(url: str, foreign_origin: str | None = None) -> str | None:
    """The storage key when `url` is a link to an image of this service, else None.

    `/image/<key>` links count under any host name. With IMAGE_LINKS=direct or presigned the
    answers link to the bucket instead: a link on `foreign_origin` whose last path segment is a
    key counts too (a presigned link's query is its signature).
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https", ""):
        return None
    if foreign_origin and f"{parts.scheme}://{parts.netloc}" == foreign_origin:
        last = parts.path.rsplit("/", 1)[-1]
        return last if is_valid_key(last) else None
    if parts.query:
        return None
    found = _OWN_LINK.search(parts.path)
    return found.group(1) if found and is_valid_key(found.group(1)) else None


class ImageIntake:
    """Turns uploads and URLs into InputImages, reading this service's own links from storage."""

    def __init__(self, store: ImageStore, *, max_bytes: int, fetch_remote: bool,
                 expiration: int, fetcher: RemoteFetcher | None = None,
                 max_pixels: int = MAX_INPUT_PIXELS, foreign_origin: str | None = None):
        self.store = store
        self.foreign_origin = foreign_origin    # where IMAGE_LINKS=direct/presigned links point
        self.max_bytes = max_bytes
        self.fetch_remote = fetch_remote
        self.expiration = expiration
        self.max_pixels = max_pixels
        self.fetcher = fetcher or RemoteFetcher(max_bytes=max_bytes)

    def load(self, source: ImageSource) -> InputImage:
        """Read and check the image a request named (an upload or a URL)."""
        if source.data is not None:
            return self.from_upload(source.data, source.label)
        return self.from_url(source.url or "", source.label)

    def from_upload(self, data: bytes, label: str) -> InputImage:
        """Check an uploaded file."""
        if len(data) > self.max_bytes:
            raise ImageRefused.too_large(label, self.max_bytes)
        return decode(data, label, max_pixels=self.max_pixels)

    def from_url(self, url: str, label: str) -> InputImage:
        """Resolve a data: URL, an own /image/<key> link or (when allowed) a remote link."""
        if not isinstance(url, str) or not url.strip():
            raise ImageRefused(f"{label} has no URL: send a data: URL or an image link.",
                               param="image")
        url = url.strip()
        if url[:5].lower() == "data:":
            return decode(decode_data_url(url, label, self.max_bytes), label,
                          max_pixels=self.max_pixels)
        key = own_image_key(url, self.foreign_origin)
        if key is not None:
            stored = self.store.get(key)
            if stored is None:
                kept = (f"images are kept {self.expiration} seconds" if self.expiration
                        else "or was deleted")
                raise ImageExpired(
                    f"{label} links to an image of this service that has expired ({kept}). "
                    "Generate it again or attach the image itself.", param="image")
            link = url if url.lower().startswith(("http://", "https://")) else None
            return decode(stored.data, label, max_pixels=self.max_pixels, link=link)
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise ImageRefused(f"{label} must be a data: URL or an http(s) link, not "
                               f"{scheme or 'a bare path'}.", param="image")
        if not self.fetch_remote:
            raise ImageRefused(
                f"{label} is a link to another site, and this server does not fetch remote "
                "images (FETCH_REMOTE_IMAGES is off). Attach the image itself (upload or data: "
                "URL) instead.", param="image")
        return decode(self.fetcher.fetch(url, label), label, max_pixels=self.max_pixels,
                      link=url)


def upload_too_large(limit: int) -> PayloadTooLarge:
    """The 413 for an upload over MAX_UPLOAD_BYTES."""
    return PayloadTooLarge(f"The upload is larger than {limit} bytes (MAX_UPLOAD_BYTES). Send "
                           "smaller images.")
