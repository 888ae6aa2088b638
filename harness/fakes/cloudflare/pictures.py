"""The image maker: cheap, deterministic, cached pictures and JPEGs of a given size."""

from __future__ import annotations

import base64
import hashlib
import io
import random
import threading

from PIL import Image, ImageDraw

# ============================================================================================
# Images: cheap, deterministic, cached (the fake must sustain hundreds of requests/second).
# ============================================================================================

class ImageMaker:
    """Draws and caches one image, and one encoded response body, per (model, size, format)."""

    MAX_ENTRIES = 256

    def __init__(self, image_kb: int | None = None):
        self.image_kb = image_kb
        self._images: dict[tuple, bytes] = {}
        self._bodies: dict[tuple, bytes] = {}
        self._lock = threading.Lock()

    def image(self, model: str, width: int, height: int, fmt: str) -> bytes:
        key = (model, width, height, fmt)
        data = self._images.get(key)
        if data is None:
            # Held while drawing so a burst of first requests draws the image only once.
            with self._lock:
                data = self._images.get(key)
                if data is None:
                    if len(self._images) >= self.MAX_ENTRIES:
                        self._images.clear()
                    data = self._images[key] = self._draw(model, width, height, fmt)
        return data

    def envelope(self, model: str, width: int, height: int, fmt: str) -> bytes:
        """The whole success body `{"result":{"image":b64},...}`, serialised once."""
        key = (model, width, height, fmt)
        body = self._bodies.get(key)
        if body is None:
            b64 = base64.b64encode(self.image(model, width, height, fmt))
            body = (b'{"result":{"image":"' + b64
                    + b'"},"success":true,"errors":[],"messages":[]}')
            with self._lock:
                if len(self._bodies) >= self.MAX_ENTRIES:
                    self._bodies.clear()
                self._bodies[key] = body
        return body

    def _draw(self, model: str, width: int, height: int, fmt: str) -> bytes:
        img = _base_picture(model, width, height)
        if fmt == "PNG":
            out = io.BytesIO()
            img.save(out, "PNG", compress_level=1)   # speed over size: it is a test double
            return out.getvalue()
        if self.image_kb:
            return _jpeg_of_size(img, model, self.image_kb * 1024)
        return _jpeg(img)


def _base_picture(model: str, width: int, height: int) -> Image.Image:
    """A smooth gradient with a disc and a label; colours depend only on the model name."""
    digest = hashlib.sha256(model.encode()).digest()
    # Upscaling a 2x2 image bilinearly gives a four-corner gradient in C, for any size.
    img = Image.frombytes("RGB", (2, 2), digest[:12]).resize((width, height), Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    r = min(width, height) // 4
    cx, cy = width // 2, height // 2
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=tuple(digest[12:15]))
    draw.text((8, 8), f"fake {model.rsplit('/', 1)[-1]} {width}x{height}", fill=(255, 255, 255))
    return img


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _jpeg_of_size(img: Image.Image, model: str, target: int) -> bytes:
    """A JPEG of about `target` bytes: seeded noise raises the entropy, a comment pads the rest.

    Noise (not only padding) is used so that a service that decodes/re-encodes the image pays the
    cost of a realistic, detailed picture. Everything is seeded, so the result is deterministic.
    """
    w, h = img.size
    rng = random.Random(f"{model}:{w}x{h}")
    noise = Image.frombytes("RGB", (w, h), rng.randbytes(w * h * 3))
    best = _jpeg(img)
    if len(best) < target:
        lo, hi = 0.0, 1.0
        for _ in range(12):                        # bisection on the noise weight
            mid = (lo + hi) / 2
            data = _jpeg(Image.blend(img, noise, mid))
            if len(data) <= target:
                best, lo = data, mid
                if target - len(data) < target * 0.01:
                    break
            else:
                hi = mid
    return _pad_jpeg(best, target)


def _pad_jpeg(data: bytes, target: int) -> bytes:
    """Insert COM segments after SOI/APP0 so the file is `target` bytes (decoders skip them)."""
    missing = target - len(data)
    if missing < 4:
        return data
    at = 2
    if data[2:4] == b"\xff\xe0":                   # keep JFIF's APP0 right after SOI
        at = 4 + int.from_bytes(data[4:6], "big")
    segments = []
    while missing >= 4:
        chunk = min(missing, 65535 + 2)            # length field counts itself, max 65535
        payload = chunk - 4
        segments.append(b"\xff\xfe" + (payload + 2).to_bytes(2, "big") + b"\x00" * payload)
        missing -= chunk
    return data[:at] + b"".join(segments) + data[at:]
