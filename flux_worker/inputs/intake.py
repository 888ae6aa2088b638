"""Image intake: every image a client brings becomes a checked, upright `InputImage` (no Flask).

Sources, in the order they are tried for a URL:

    data:image/...;base64,...     decoded here; the bytes are capped like any other input
    .../image/<key>               this service's own link, under any host name: read from storage,
                                  never over HTTP; a missing one is a 400 that says it expired
    http(s)://anything else       only with FETCH_REMOTE_IMAGES=true, through `RemoteFetcher`

Every input is decoded with Pillow before anything goes upstream: PNG, JPEG, WebP and GIF only
(the first frame of an animation), at most `MAX_INPUT_PIXELS`, EXIF orientation applied, CMYK,
palette and 16-bit images converted to 8-bit RGB(A). What comes out is PNG bytes of what the user
sees, so the backends never meet an exotic file.

Masks follow OpenAI's convention (fully transparent pixels mark the area to change) and are turned
into the Stable Diffusion one (white repaint, black keep) at the image's size. FLUX.2 reference
images are scaled down under 512x512 here, because Cloudflare refuses larger ones (reference §2).
"""

from __future__ import annotations

import binascii
import io
import ipaddress
import re
import socket
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import unquote_to_bytes, urljoin, urlsplit

import pybase64
import urllib3
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InvalidRequest, PayloadTooLarge
from ..storage import ImageStore, is_valid_key

# 40 megapixels: a large phone photo (8000x5000) still fits; a decompression bomb (a few KB of
# PNG that inflates to gigabytes) does not. Decided from the header, before decoding a pixel.
MAX_INPUT_PIXELS = 40_000_000
# Cloudflare wants FLUX.2 references "smaller than 512x512" (reference §2): 511 stays under.
REFERENCE_MAX_SIDE = 511
REFERENCE_JPEG_QUALITY = 92
REMOTE_TIMEOUT = 10.0          # seconds for one remote fetch, connect + whole body
REMOTE_MAX_REDIRECTS = 3
_READABLE = ("PNG", "JPEG", "WEBP", "GIF")
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
                  IndexError, KeyError, TypeError, Image.DecompressionBombError)
_DATA_URL = re.compile(r"^data:([^,]*?),", re.I | re.S)
_OWN_LINK = re.compile(r"(?:^|/)image/([A-Za-z0-9_-]{22,64})$")
_WHITESPACE = b" \t\r\n\f\v"
_FORMATS_TEXT = "PNG, JPEG, WebP or GIF"


class ImageRefused(InvalidRequest):
    """An input image cannot be used (400): unreadable, too large, expired, not allowed."""

    code = "invalid_image"


class ImageExpired(ImageRefused):
    """A link to this service's own image that is no longer stored (400)."""

    code = "image_expired"


@dataclass(frozen=True)
class InputImage:
    """One checked input image: PNG bytes of the upright picture, and where it came from."""

    data: bytes = field(repr=False)
    width: int
    height: int
    alpha: bool                 # the picture has an alpha channel (kept for masks)
    label: str                  # what the user called it: "image[0]", "data URL", a link
    link: str | None = None     # an http(s) link worth showing in an answer, when there is one

    @property
    def size(self) -> str:
        """The size as `WIDTHxHEIGHT`."""
        return f"{self.width}x{self.height}"


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
        try:
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # an animation: its first frame is the picture
            img.load()
            upright = _normalise(ImageOps.exif_transpose(img) or img)
        except _DECODE_ERRORS:
            raise ImageRefused(f"{label} is truncated or corrupt: the {img.format} data could "
                               "not be decoded. Send the complete file.", param="image") from None
    return InputImage(_png(upright), upright.width, upright.height, upright.mode == "RGBA",
                      label, link)


def _normalise(img: Image.Image) -> Image.Image:
    """Return 8-bit RGB, or RGBA when the picture carries transparency."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: keep the top 8 bits instead of clipping everything above 255.
        img = img.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    elif img.mode == "F":
        img = img.convert("L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        return img.convert("RGBA")
    return img.convert("RGB")  # CMYK, YCbCr, P, L, 1: what every model takes


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
        raise _too_large(label, max_bytes)
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
        raise _too_large(label, max_bytes)
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


def _too_large(label: str, max_bytes: int) -> ImageRefused:
    return ImageRefused(f"{label} is larger than {max_bytes} bytes (MAX_INPUT_IMAGE_BYTES). "
                        "Send a smaller image.", param="image")


Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public_address(address: str) -> bool:
    """Whether an address is on the public internet (not loopback, private, link-local, ...)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    # is_global excludes loopback, RFC 1918, link-local (169.254.169.254, the cloud metadata
    # address), CGNAT, ULA (fd00:ec2::254) and the reserved ranges; multicast is global but no host.
    return ip.is_global and not ip.is_multicast


class RemoteFetcher:
    """Downloads an image from the internet, refusing anything that points inside.

    The host name is resolved once, every address is checked, and the connection goes to the
    checked address (with the original Host header and TLS name), so a DNS answer that changes
    between the check and the connection cannot redirect it inside. Redirects are followed only
    on the same host, each one checked again.
    """

    def __init__(self, *, max_bytes: int, timeout: float = REMOTE_TIMEOUT,
                 resolver: Resolver = system_resolver,
                 allowed: Callable[[str], bool] = is_public_address,
                 max_redirects: int = REMOTE_MAX_REDIRECTS):
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._resolve = resolver
        self._allowed = allowed
        self.max_redirects = max_redirects

    def fetch(self, url: str, label: str) -> bytes:
        """Return the body at url; raise ImageRefused for a refused or failed download."""
        deadline = time.monotonic() + self.timeout
        first_host = urlsplit(url).hostname
        for _ in range(self.max_redirects + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ImageRefused(f"{label}: only http(s) links can be fetched.", param="image")
            if parts.hostname != first_host:
                raise ImageRefused(f"{label} redirects to another host ({parts.hostname}); "
                                   "send the final link.", param="image")
            response = self._request(parts, label, deadline)
            try:
                if response.status in (301, 302, 303, 307, 308):
                    location = response.headers.get("Location")
                    if not location:
                        raise ImageRefused(f"{label} answered a redirect without a target.",
                                           param="image")
                    url = urljoin(url, location)
                    continue
                if response.status != 200:
                    raise ImageRefused(f"{label} could not be downloaded: its server answered "
                                       f"HTTP {response.status}.", param="image")
                return self._body(response, label, deadline)
            finally:
                response.release_conn()
        raise ImageRefused(f"{label} redirects more than {self.max_redirects} times.",
                           param="image")

    def _request(self, parts, label: str, deadline: float) -> urllib3.BaseHTTPResponse:
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = self._resolve(host, port)
        except (OSError, UnicodeError):
            addresses = []
        if not addresses:
            raise ImageRefused(f"{label}: the host {host} could not be resolved.", param="image")
        refused = [a for a in addresses if not self._allowed(a)]
        if refused:
            raise ImageRefused(
                f"{label} points to an internal address ({host} is {refused[0]}); only public "
                "internet addresses are fetched.", param="image")
        address = addresses[0]
        left = max(0.1, deadline - time.monotonic())
        timeout = urllib3.Timeout(connect=min(5.0, left), read=left)
        pool: urllib3.HTTPConnectionPool
        if parts.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(address, port, server_hostname=host,
                                               assert_hostname=host, timeout=timeout,
                                               retries=False, maxsize=1)
        else:
            pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False,
                                              maxsize=1)
        default_port = 443 if parts.scheme == "https" else 80
        host_header = host if port == default_port else f"{host}:{port}"
        if ":" in host and not host.startswith("["):
            host_header = f"[{host}]" if port == default_port else f"[{host}]:{port}"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            return pool.urlopen("GET", path, headers={"Host": host_header, "Accept": "image/*"},
                                redirect=False, preload_content=False, retries=False)
        except urllib3.exceptions.HTTPError as exc:
            raise ImageRefused(f"{label} could not be downloaded ({type(exc).__name__}).",
                               param="image") from None

    def _body(self, response: urllib3.BaseHTTPResponse, label: str, deadline: float) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise _too_large(label, self.max_bytes)
        chunks, total = [], 0
        try:
            for chunk in response.stream(64 * 1024):
                total += len(chunk)
                if total > self.max_bytes:
                    raise _too_large(label, self.max_bytes)
                if time.monotonic() > deadline:
                    raise ImageRefused(f"{label} took longer than {self.timeout:g} seconds to "
                                       "download.", param="image")
                chunks.append(chunk)
        except urllib3.exceptions.HTTPError as exc:
            raise ImageRefused(f"{label} could not be downloaded ({type(exc).__name__}).",
                               param="image") from None
        return b"".join(chunks)


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

    def from_upload(self, data: bytes, label: str) -> InputImage:
        """Check an uploaded file."""
        if len(data) > self.max_bytes:
            raise _too_large(label, self.max_bytes)
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
