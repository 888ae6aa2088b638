"""Big input images are decoded to the largest side a model takes, in bounded memory.

PNG bands must give exactly the pixels of a full decode, for every colour type and filter; JPEGs
are drafted; GIF frames are never counted; decodes share the process's pixel budget; a big full
decode takes the machine-wide lock; a decode of 8000x5000 stays far below its full size in RSS.
"""

from __future__ import annotations

import io
import os
import random
import struct
import threading
import time
import zlib
from pathlib import Path

import pytest
from PIL import GifImagePlugin, Image, JpegImagePlugin

from flux_worker.errors import ImageRefused
from flux_worker.generation.planner import input_ratio
from flux_worker.inputs import intake, pixel_work, png_bands, shrinking
from flux_worker.inputs.image import InputImage
from harness.big_uploads import measure_decode, plain_png

_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


# --- a PNG encoder that uses every filter type (Pillow's picks its own) -------------------------

def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _filtered(kind: int, row: bytes, above: bytes, bpp: int) -> bytes:
    out = bytearray(len(row))
    for i, x in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = above[i]
        c = above[i - bpp] if i >= bpp else 0
        predictor = (0, a, b, (a + b) // 2, _paeth(a, b, c))[kind]
        out[i] = (x - predictor) & 0xFF
    return bytes(out)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind))))


def noise_png(width: int, height: int, colour: int, *, seed: int = 1, trns: bool = False,
              idat_pieces: int = 3) -> bytes:
    """Random pixels; row r uses filter r % 5; the data split over several IDAT chunks."""
    rng = random.Random(seed)
    bpp = _CHANNELS[colour]
    rows, above = [], bytes(width * bpp)
    for r in range(height):
        raw = bytes(rng.randrange(16 if colour == 3 else 256) for _ in range(width * bpp))
        rows.append(bytes([r % 5]) + _filtered(r % 5, raw, above, bpp))
        above = raw
    packed = zlib.compress(b"".join(rows), 9)
    step = -(-len(packed) // idat_pieces)
    parts = [b"\x89PNG\r\n\x1a\n",
             _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0))]
    if colour == 3:
        parts.append(_chunk(b"PLTE", bytes(rng.randrange(256) for _ in range(16 * 3))))
    if trns:
        parts.append(_chunk(b"tRNS", {0: b"\x00\x07", 2: b"\x00\x07\x00\x08\x00\x09",
                                      3: bytes(rng.randrange(256) for _ in range(16))}[colour]))
    parts += [_chunk(b"IDAT", packed[i:i + step]) for i in range(0, len(packed), step)]
    parts.append(_chunk(b"IEND", b""))
    return b"".join(parts)


KINDS = [(0, False), (0, True), (2, False), (2, True), (3, False), (3, True), (4, False),
         (6, False)]


def full(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


# --- PNG bands -----------------------------------------------------------------------------------

@pytest.mark.parametrize("colour, trns", KINDS)
@pytest.mark.parametrize("rows", [1, 2, 3, 7, 100])
def test_bands_are_exactly_the_rows_of_a_full_decode(colour, trns, rows):
    data = noise_png(37, 23, colour, trns=trns, seed=colour * 10 + rows)
    reference = full(data)
    layout = png_bands.layout(data)
    assert layout is not None
    got = list(png_bands.bands(layout, rows))
    assert [top for top, _ in got] == list(range(0, 23, rows))
    assert all(band.mode == reference.mode for _, band in got)
    assert b"".join(band.tobytes() for _, band in got) == reference.tobytes()
    assert all(band.info.get("transparency") == reference.info.get("transparency")
               for _, band in got)


@pytest.mark.parametrize("colour, trns", KINDS)
@pytest.mark.parametrize("size", [(263, 151), (151, 263), (101, 100)])
def test_shrinking_in_bands_equals_a_full_decode_and_the_same_shrink(colour, trns, size,
                                                                      monkeypatch):
    """The banded decode against Pillow's full decode + reduce + box resize (limit 50 px)."""
    monkeypatch.setattr(shrinking, "BAND_PIXELS", 900)     # bands of a few rows each
    data = noise_png(*size, colour, trns=trns, seed=sum(size) + colour)
    target = shrinking.target_size(*size, limit=50)
    assert target is not None
    layout = png_bands.layout(data)
    assert layout is not None
    reference = full(data)
    alpha = reference.mode in ("RGBA", "LA") or "transparency" in reference.info
    shrink = shrinking.Reduction(*size, alpha, target, lambda b: b.convert(
        "RGBA" if alpha else "RGB"))
    rows = shrinking.band_rows(size[0], shrink.factor)
    assert rows < size[1] and rows % shrink.factor == 0
    for top, band in png_bands.bands(layout, rows):
        shrink.add(top, band)
    got = shrink.result()
    expected = reference.convert("RGBA" if alpha else "RGB")
    if alpha:
        expected = expected.convert("RGBa")
    expected = expected.reduce(shrink.factor).resize(target, Image.Resampling.BOX)
    if alpha:
        expected = expected.convert("RGBA")
    assert got.size == target and got.mode == expected.mode
    assert got.tobytes() == expected.tobytes()


def test_decode_shrinks_a_wide_png_to_the_largest_side_exactly_as_a_full_decode(monkeypatch):
    monkeypatch.setattr(shrinking, "BAND_PIXELS", 40_000)
    img = Image.frombytes("RGBA", (5003, 24), os.urandom(5003 * 24 * 4))
    out = io.BytesIO()
    img.save(out, "PNG")                    # Pillow's adaptive filters
    bands_seen = []
    real_bands = png_bands.bands
    monkeypatch.setattr(png_bands, "bands", lambda *a: (bands_seen.append(a[1]) or
                                                        real_bands(*a)))
    got = intake.decode(out.getvalue(), "image")
    assert bands_seen, "a big 8-bit PNG is decoded in bands"
    assert (got.width, got.height, got.alpha) == (2500, 12, True)
    expected = img.convert("RGBa").reduce(2).resize((2500, 12), Image.Resampling.BOX)
    assert full(got.data).tobytes() == expected.convert("RGBA").tobytes()


def test_pngs_of_other_bit_depths_are_decoded_whole_and_shrunk():
    deep, bits = io.BytesIO(), io.BytesIO()
    Image.new("I;16", (30, 2600), 40000).save(deep, "PNG")
    Image.new("1", (2600, 30), 1).save(bits, "PNG")
    assert png_bands.layout(deep.getvalue()) is None and png_bands.layout(bits.getvalue()) is None
    tall, wide = intake.decode(deep.getvalue(), "a"), intake.decode(bits.getvalue(), "b")
    assert (tall.width, tall.height) == (29, 2500)
    assert full(tall.data).getpixel((5, 5)) == (156, 156, 156)   # the top 8 bits of 40000
    assert (wide.width, wide.height) == (2500, 29)
    assert full(wide.data).getpixel((5, 5)) == (255, 255, 255)


def test_an_interlaced_png_is_not_banded():
    data = noise_png(20, 10, 2)
    header = bytearray(data[16:29])
    header[12] = 1                          # Adam7
    interlaced = data[:8] + _chunk(b"IHDR", bytes(header)) + data[33:]
    assert png_bands.layout(data) is not None
    assert png_bands.layout(interlaced) is None


def test_a_png_whose_rows_end_early_is_refused_as_truncated():
    data = noise_png(2600, 4, 2, idat_pieces=3)
    first = data.index(b"IDAT") - 4
    length = struct.unpack(">I", data[first:first + 4])[0]
    one_piece = data[:first + 12 + length] + _chunk(b"IEND", b"")     # 1 of 3 IDAT chunks
    not_zlib = data[:first + 8] + b"junk" + data[first + 12:]
    for broken in (one_piece, not_zlib):
        with pytest.raises(ImageRefused, match="truncated or corrupt"):
            intake.decode(broken, "image")


def test_a_png_that_inflates_without_end_is_read_a_piece_at_a_time():
    """256 MB of zeros behind a 2600x10 header: only the rows needed are ever inflated."""
    packer = zlib.compressobj(9)
    bomb = b"".join(packer.compress(bytes(1 << 24)) for _ in range(16)) + packer.flush()
    data = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 2600, 10, 8, 2,
                                                                0, 0, 0))
            + _chunk(b"IDAT", bomb) + _chunk(b"IEND", b""))
    got = intake.decode(data, "image")
    assert (got.width, got.height) == (2500, 10)


# --- aspect ratio, masks -------------------------------------------------------------------------

@pytest.mark.parametrize("size, ratio", [((8000, 5000), (8, 5)), ((5000, 8000), (5, 8)),
                                         ((7999, 2667), (3, 1))])
def test_a_shrunk_input_keeps_its_proportions_for_the_plan(size, ratio):
    target = shrinking.target_size(*size)
    assert target is not None and max(target) == pixel_work.LARGEST_SIDE
    shrunk = InputImage(b"", target[0], target[1], False, "image")
    assert input_ratio(shrunk).ratio == ratio


def test_a_mask_is_shrunk_exactly_as_its_image():
    image = Image.new("RGBA", (6000, 4000), (200, 10, 10, 255))
    mask = Image.new("RGBA", (6000, 4000), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 3000, 4000))
    decoded = []
    for picture in (image, mask):
        out = io.BytesIO()
        picture.save(out, "PNG")
        decoded.append(intake.decode(out.getvalue(), "x"))
    assert (decoded[0].width, decoded[0].height) == (2500, 1667)
    assert (decoded[1].width, decoded[1].height) == (2500, 1667)
    sd = full(intake.sd_mask(decoded[1], decoded[0]))
    assert sd.size == (2500, 1667)
    assert sd.getpixel((0, 0)) == 255 and sd.getpixel((2499, 0)) == 0
    assert sd.getpixel((1249, 800)) == 255 and sd.getpixel((1251, 800)) == 0


# --- JPEG, GIF, WebP ----------------------------------------------------------------------------

def test_a_big_jpeg_is_drafted_by_libjpeg_then_shrunk(monkeypatch):
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6                        # shown rotated a quarter turn
    Image.new("RGB", (8000, 5000), (30, 90, 200)).save(out, "JPEG", exif=exif.tobytes())
    drafts = []
    real = JpegImagePlugin.JpegImageFile.draft
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft",
                        lambda self, mode, size: drafts.append(size) or real(self, mode, size))
    got = intake.decode(out.getvalue(), "photo")
    assert drafts == [(2500, 1562)]
    assert (got.width, got.height) == (1562, 2500)      # upright after shrinking


def test_a_gif_is_never_walked_to_count_its_frames(monkeypatch):
    frames = [Image.new("P", (2600, 20), i) for i in range(3)]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:])

    def walked(self):
        raise AssertionError("the GIF's frames were counted")

    monkeypatch.setattr(GifImagePlugin.GifImageFile, "n_frames", property(walked))
    monkeypatch.setattr(GifImagePlugin.GifImageFile, "is_animated", property(walked))
    got = intake.decode(out.getvalue(), "gif")
    assert (got.width, got.height) == (2500, 19)
    small = io.BytesIO()
    frames[0].resize((20, 20)).save(small, "GIF", save_all=True, append_images=[
        f.resize((20, 20)) for f in frames[1:]])
    assert intake.decode(small.getvalue(), "gif").width == 20


def test_a_big_full_decode_takes_the_machine_wide_lock_and_gives_memory_back(monkeypatch):
    taken, given = [], []
    real_lock = pixel_work.machine_wide
    monkeypatch.setattr(pixel_work, "machine_wide",
                        lambda: taken.append(1) or real_lock())
    monkeypatch.setattr(pixel_work, "give_back", lambda: given.append(1))
    out = io.BytesIO()
    Image.new("RGB", (4000, 4096), (1, 2, 3)).save(out, "WEBP", lossless=True)
    got = intake.decode(out.getvalue(), "webp")
    assert (got.width, got.height) == (2441, 2500)
    assert (taken, given) == ([1], [1])
    small = io.BytesIO()
    Image.new("RGB", (500, 400)).save(small, "WEBP")
    intake.decode(small.getvalue(), "webp")
    assert (taken, given) == ([1], [1])      # small images: neither


def test_a_webp_is_decoded_whole_so_a_big_one_is_refused():
    out = io.BytesIO()
    Image.new("RGB", (5000, 4000), (1, 2, 3)).save(out, "WEBP", lossless=True)
    with pytest.raises(ImageRefused, match="WebP of 5000x4000 pixels.*PNG or JPEG"):
        intake.decode(out.getvalue(), "webp")


def test_a_too_large_image_is_refused_from_its_header():
    data = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 8001, 5000, 8, 6,
                                                                0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b""))
    with pytest.raises(ImageRefused, match="8001x5000 pixels; at most 40 megapixels"):
        intake.decode(data, "image")


# --- the pixel budget and the machine-wide lock --------------------------------------------------

def test_the_budget_lets_small_jobs_share_it_and_serialises_big_ones():
    budget = pixel_work.PixelBudget(total=100, share=25)
    assert [budget.cost(p) for p in (1, 25, 60, 1000)] == [25, 25, 60, 100]
    running, most = [0], [0]
    lock = threading.Lock()

    def job(pixels: int) -> None:
        with budget.hold(pixels):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.05)
            with lock:
                running[0] -= 1

    for pixels, expected in ((10, 4), (60, 1), (1000, 1)):
        running[0] = most[0] = 0
        threads = [threading.Thread(target=job, args=(pixels,)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert most[0] == expected, pixels
        assert budget.free == 100


def test_the_budget_serves_callers_in_order_and_a_failure_gives_pixels_back():
    budget = pixel_work.PixelBudget(total=100, share=10)
    order: list[str] = []
    with budget.hold(100):
        waiters = []
        for name, pixels in (("big", 100), ("small", 10)):
            def wait(name=name, pixels=pixels):
                with budget.hold(pixels):
                    order.append(name)
            waiters.append(threading.Thread(target=wait))
            waiters[-1].start()
            time.sleep(0.1)                 # "big" queues before "small"
    for t in waiters:
        t.join(10)
    assert order == ["big", "small"]
    with pytest.raises(RuntimeError):
        with budget.hold(50):
            raise RuntimeError
    assert budget.free == 100


def test_decodes_hold_what_they_keep_in_memory(monkeypatch):
    held = []
    real = pixel_work.BUDGET.hold
    monkeypatch.setattr(pixel_work.BUDGET, "hold", lambda p: held.append(p) or real(p))
    intake.decode(plain_png(8000, 5000, (200, 40, 40, 255)), "image")
    (pixels,) = held
    # the reduced image (2667x1667), the target (2500x1562) and bands at full width
    assert 2667 * 1667 + 2500 * 1562 < pixels < 8000 * 5000 // 2


def test_the_machine_wide_lock_excludes_another_holder(tmp_path):
    """flock on its own open file: another process (or thread) waits until it is released."""
    path = str(tmp_path / "lock")
    got_it = []

    def other():
        with pixel_work.machine_wide(path):
            got_it.append(time.monotonic())

    with pixel_work.machine_wide(path):
        thread = threading.Thread(target=other)
        thread.start()
        time.sleep(0.3)
        assert not got_it
        released = time.monotonic()
    thread.join(10)
    assert got_it and got_it[0] >= released


# --- memory ------------------------------------------------------------------------------------

@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_decoding_a_40_megapixel_png_holds_a_fraction_of_its_pixels(tmp_path):
    """Full size it is 160 MB of RGBA (the old decode peaked above 500 MB); bands need ~60."""
    path = tmp_path / "big.png"
    path.write_bytes(plain_png(8000, 5000, (200, 40, 40, 255)))
    got = measure_decode(path, timeout=120)
    assert (got.width, got.height) == (2500, 1562)
    assert got.grown < 100 * 2**20, f"peak RSS grew {got.grown / 2**20:.0f} MiB"
