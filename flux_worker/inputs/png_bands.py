"""Decode a big PNG a band of rows at a time, so its full-size pixels are never all in memory.

A plain 8000x5000 RGBA PNG is a few hundred KB of zlib but 160 MB decoded, and no model takes
more than 2500 px a side. Pillow can only decode a PNG whole, so for the common kind (8-bit,
not interlaced: grey, RGB, palette, grey+alpha, RGBA) this module reads the chunks itself,
inflates IDAT piece by piece, and hands Pillow each band of still-filtered rows as a small PNG of
its own (the header with the band's height, PLTE and tRNS copied). A row's filter may refer to the
row above, so every band but the first starts with the previous band's last row, already decoded
and stored unfiltered (filter type 0); it is cropped off again after decoding. Pillow still does
every pixel's unfiltering, palette and transparency, so each band is exactly the rows a full
decode gives (tests/test_big_inputs.py checks every colour type and filter).

Everything else (bit depths below 8 or 16, Adam7 interlacing) is left to a full decode.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from typing import Iterator

from PIL import Image

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}     # colour type -> bytes per pixel at 8 bits


class BrokenPNG(ValueError):
    """The PNG's chunks or its compressed rows are cut off or malformed."""


@dataclass(frozen=True)
class Layout:
    """What banding needs from a PNG's chunks: its header, palette chunks and row data."""

    width: int
    height: int
    colour_type: int
    palette: bytes | None = field(default=None, repr=False)       # PLTE's data
    transparency: bytes | None = field(default=None, repr=False)  # tRNS's data
    exif: bytes | None = field(default=None, repr=False)          # eXIf's data, wherever it is
    idat: tuple[memoryview, ...] = field(default=(), repr=False)

    @property
    def stride(self) -> int:
        """Bytes of one filtered row: the filter type byte and the pixels."""
        return 1 + self.width * _CHANNELS[self.colour_type]


def layout(data: bytes) -> Layout | None:
    """The layout of a PNG that can be decoded in bands, or None (not a PNG, or another kind)."""
    if not data.startswith(_SIGNATURE) or len(data) < 33 or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if depth != 8 or interlace != 0 or colour not in _CHANNELS or not width or not height:
        return None
    view = memoryview(data)
    chunks: dict[bytes, bytes] = {}
    idat: list[memoryview] = []
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = view[pos + 8:pos + 8 + length]
        if len(body) < length:
            raise BrokenPNG(f"the {kind!r} chunk is cut off")
        if kind == b"IDAT":
            idat.append(body)
        elif kind in (b"PLTE", b"tRNS", b"eXIf") and kind not in chunks:
            chunks[kind] = bytes(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if not idat:
        raise BrokenPNG("the image has no pixel data")
    return Layout(width, height, colour, chunks.get(b"PLTE"), chunks.get(b"tRNS"),
                  chunks.get(b"eXIf"), tuple(idat))


def bands(png: Layout, rows: int) -> Iterator[tuple[int, Image.Image]]:
    """Yield (first row, band) for consecutive bands of `rows` rows (the last may be shorter).

    Each band is the image Pillow decodes for those rows (mode L, RGB, P, LA or RGBA, with the
    palette's transparency in its info), exactly as in a full decode.
    :raises BrokenPNG: the row data ends early or is not valid zlib.
    """
    rows_of = _Rows(png.idat)
    above: bytes | None = None          # the previous band's last row, decoded
    for top in range(0, png.height, rows):
        count = min(rows, png.height - top)
        band = _decode_band(png, rows_of.read(count * png.stride), count, above)
        above = band.crop((0, count - 1, png.width, count)).tobytes()
        yield top, band


class _Rows:
    """The inflated IDAT stream, read exactly as many bytes at a time as asked (never more:
    a bomb that inflates to gigabytes is only inflated as far as the rows go)."""

    def __init__(self, chunks: tuple[memoryview, ...]):
        self._chunks = iter(chunks)
        self._inflater = zlib.decompressobj()
        self._tail: bytes | memoryview = b""

    def read(self, size: int) -> list[bytes]:
        """The next `size` bytes, in one or a few pieces; raise BrokenPNG if they are not there."""
        pieces, missing = [], size
        try:
            while missing:
                if not self._tail:
                    self._tail = next(self._chunks, b"")
                out = self._inflater.decompress(self._tail, missing)
                self._tail = self._inflater.unconsumed_tail
                if out:
                    pieces.append(out)
                    missing -= len(out)
                elif not self._tail and (self._inflater.eof or not self._more()):
                    raise BrokenPNG("the pixel data ends before the last row")
        except zlib.error as exc:
            raise BrokenPNG(f"the pixel data is not valid zlib: {exc}") from None
        return pieces

    def _more(self) -> bool:
        self._tail = next(self._chunks, b"")
        return bool(self._tail)


def _decode_band(png: Layout, filtered: list[bytes], count: int,
                 above: bytes | None) -> Image.Image:
    if above is not None:
        filtered = [b"\x00", above, *filtered]
        count += 1
    # Level 0 stores the rows as they are: Pillow's inflater then only copies them.
    packer = zlib.compressobj(0)
    idat = [packer.compress(piece) for piece in filtered]
    idat.append(packer.flush())
    size = sum(len(piece) for piece in idat)
    header = struct.pack(">IIBBBBB", png.width, count, 8, png.colour_type, 0, 0, 0)
    parts = [_SIGNATURE, _chunk(b"IHDR", header)]
    if png.palette is not None:
        parts.append(_chunk(b"PLTE", png.palette))
    if png.transparency is not None:
        parts.append(_chunk(b"tRNS", png.transparency))
    crc = zlib.crc32(b"IDAT")
    for piece in idat:
        crc = zlib.crc32(piece, crc)
    parts += [struct.pack(">I", size), b"IDAT", *idat, struct.pack(">I", crc),
              _chunk(b"IEND", b"")]
    band = Image.open(io.BytesIO(b"".join(parts)), formats=("PNG",))
    band.load()
    # The crop keeps the info (the palette's transparency) and the palette.
    return band.crop((0, 1, png.width, count)) if above is not None else band


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind))))
