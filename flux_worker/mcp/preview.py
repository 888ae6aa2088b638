"""What an agent is shown inline: the image itself, or a scaled JPEG preview of a large one.

MCP clients put tool results into the model's context and many cap their size (about 1 MB per
result is common), and vision models downscale anything much above ~1.5 megapixels anyway. So an
image above PREVIEW_MAX_BYTES or PREVIEW_MAX_SIDE is sent as a JPEG whose longest side is
PREVIEW_SIDE, and the full image is linked instead. Both limits are documented in the README.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

PREVIEW_MAX_BYTES = 1_000_000   # raw bytes; about 1.33 MB once base64-encoded
PREVIEW_MAX_SIDE = 1568         # px; larger images are scaled by vision models anyway
PREVIEW_SIDE = 1024             # px, longest side of a preview
PREVIEW_QUALITY = 85


@dataclass(frozen=True)
class Shown:
    """The bytes sent inline, their type and size, and whether they are a scaled preview."""

    data: bytes
    content_type: str
    width: int
    height: int
    preview: bool


def inline_image(data: bytes, content_type: str, width: int, height: int) -> Shown:
    """The image as it is when small enough, else a JPEG preview within PREVIEW_SIDE."""
    if len(data) <= PREVIEW_MAX_BYTES and max(width, height) <= PREVIEW_MAX_SIDE:
        return Shown(data, content_type, width, height, preview=False)
    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", (PREVIEW_SIDE, PREVIEW_SIDE))  # JPEG: decode at a reduced scale
        small = img.convert("RGB")
    small.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    small.save(out, "JPEG", quality=PREVIEW_QUALITY, optimize=True)
    return Shown(out.getvalue(), "image/jpeg", small.width, small.height, preview=True)
