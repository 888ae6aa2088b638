"""Shrink an input image to the largest side a model takes, band by band (Pillow; no Flask).

One rule for every way an image is decoded (PNG bands, a drafted JPEG, a full decode):

    target      the image scaled to fit `pixel_work.LARGEST_SIDE`, its proportions kept
                (the side that decides is exact, the other rounded)
    reduce(k)   the largest whole factor k that keeps the image at least the target: Pillow's
                box average of k x k blocks, which works on bands of rows (a multiple of k
                high) exactly as on the whole image
    resize      what is left (less than 2x) with a box filter, as fitting does mild shrinks

Images with transparency are shrunk premultiplied (RGBa), so the hidden colour of transparent
pixels does not bleed into their neighbours. Every conversion before the reduction works pixel by
pixel, so converting band by band gives the same pixels as converting the whole image.
"""

from __future__ import annotations

from typing import Callable, Iterable

from PIL import Image

from .pixel_work import LARGEST_SIDE

# What EXIF orientation asks for, applied after shrinking (the order changes no pixel's
# neighbours, only where the reduction's last, partial blocks fall).
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
            6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}
# Rows a band holds when a decoded image is shrunk in bands: about a megapixel.
BAND_PIXELS = 1 << 18


def target_size(width: int, height: int, limit: int = LARGEST_SIDE) -> tuple[int, int] | None:
    """The size to shrink to, or None when the image already fits."""
    side = max(width, height)
    if side <= limit:
        return None
    if width >= height:
        return limit, max(1, round(height * limit / width))
    return max(1, round(width * limit / height)), limit


def reduce_factor(width: int, height: int, target: tuple[int, int]) -> int:
    """The largest whole factor that keeps width x height at least the target."""
    return max(1, min(width // target[0], height // target[1]))


def band_rows(width: int, factor: int) -> int:
    """Rows per band: about BAND_PIXELS, a multiple of the reduction factor."""
    return max(1, BAND_PIXELS // max(1, width) // factor) * factor


def reduced_size(width: int, height: int, factor: int) -> tuple[int, int]:
    """The size reduce(factor) gives (a last partial block still makes a pixel)."""
    return -(-width // factor), -(-height // factor)


class Reduction:
    """Collects bands of an image, each converted and reduced, into the shrunk image."""

    def __init__(self, width: int, height: int, alpha: bool, target: tuple[int, int],
                 convert: Callable[[Image.Image], Image.Image]):
        self.factor = reduce_factor(width, height, target)
        self.target = target
        self.alpha = alpha
        self.convert = convert              # a band of the source -> RGB or RGBA
        self.work_mode = "RGBa" if alpha else "RGB"
        self.reduced = Image.new(self.work_mode, reduced_size(width, height, self.factor))

    def add(self, top: int, band: Image.Image) -> None:
        """Add the band whose first row is `top` (a multiple of the factor)."""
        converted = self.convert(band)
        if self.alpha:
            converted = converted.convert("RGBa")
        if self.factor > 1:
            converted = converted.reduce(self.factor)
        self.reduced.paste(converted, (0, top // self.factor))

    def result(self) -> Image.Image:
        """The image at the target size, RGB or RGBA."""
        img = self.reduced
        if img.size != self.target:
            img = img.resize(self.target, Image.Resampling.BOX)
        self.reduced = Image.new(self.work_mode, (1, 1))    # free it before converting
        return img.convert("RGBA") if self.alpha else img


def strips(img: Image.Image, rows: int) -> Iterable[tuple[int, Image.Image]]:
    """Bands of an already decoded image, `rows` high, as (first row, band)."""
    for top in range(0, img.height, rows):
        yield top, img.crop((0, top, img.width, min(img.height, top + rows)))


def upright(img: Image.Image, info: dict) -> Image.Image:
    """Apply the EXIF orientation that `info` (the source's) names, as ImageOps would."""
    probe = Image.new("1", (1, 1))
    probe.info.update({k: v for k, v in info.items()
                       if k in ("exif", "xmp", "XML:com.adobe.xmp", "Raw profile type exif")})
    try:
        orientation = probe.getexif().get(0x0112, 1)
    except (SyntaxError, ValueError, OSError, TypeError, KeyError):
        return img                          # unreadable EXIF: as a viewer would, show it as is
    method = _UPRIGHT.get(orientation) if isinstance(orientation, int) else None
    return img.transpose(method) if method is not None else img
