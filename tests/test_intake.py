"""Tests for the image intake: decoding, masks, reference size-down, sources and the SSRF guard."""

from __future__ import annotations

import base64
import http.server
import io
import struct
import threading
import zlib

import pytest
from PIL import Image

from flux_worker.errors import ImageExpired, ImageRefused
from flux_worker.inputs.intake import ImageIntake, decode, own_image_key, reference_copy, sd_mask
from flux_worker.net.fetch import RemoteFetcher, is_public_address
from flux_worker.storage.memory import MemoryStore


def encode(img: Image.Image, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def solid(size=(64, 48), colour=(200, 30, 30), mode="RGB") -> Image.Image:
    return Image.new(mode, size, colour)


def data_url(data: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64," + base64.b64encode(data).decode()


# --- decoding -----------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_decodes_each_supported_format_to_png(fmt):
    image = decode(encode(solid(), fmt), "image[0]")
    assert (image.width, image.height) == (64, 48)
    assert image.data.startswith(b"\x89PNG")
    assert image.label == "image[0]"


def test_animated_gif_uses_its_first_frame():
    frames = [solid(colour=(255, 0, 0)).convert("P"), solid(colour=(0, 0, 255)).convert("P")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    image = decode(data, "anim")
    with Image.open(io.BytesIO(image.data)) as img:
        red, green, blue = img.convert("RGB").getpixel((10, 10))
    assert red > 200 and blue < 50


@pytest.mark.parametrize("data", [b"", b"hello, not an image", b"%PDF-1.4 ...",
                                  b"BM" + b"\x00" * 60])
def test_refuses_what_is_not_a_supported_image(data):
    with pytest.raises(ImageRefused) as info:
        decode(data, "image[0]")
    assert info.value.status == 400
    assert "image[0]" in info.value.message


def test_refuses_a_truncated_image():
    data = encode(solid((300, 300)), "JPEG")
    with pytest.raises(ImageRefused, match="truncated or corrupt"):
        decode(data[: len(data) // 2], "photo")


@pytest.mark.parametrize("side", [20000, 7000])   # above Pillow's own limit, and above ours
def test_refuses_a_decompression_bomb_from_its_header(side):
    # A huge PNG header over a few bytes of IDAT: refused before decoding a pixel.
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))
    with pytest.raises(ImageRefused, match="megapixels"):
        decode(bomb, "bomb")


def test_applies_exif_rotation():
    img = solid((80, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to view
    image = decode(encode(img, "JPEG", exif=exif.tobytes()), "phone photo")
    assert (image.width, image.height) == (40, 80)


def test_converts_cmyk_to_rgb():
    image = decode(encode(solid(mode="CMYK", colour=(0, 255, 255, 0)), "JPEG"), "print")
    with Image.open(io.BytesIO(image.data)) as img:
        assert img.mode == "RGB"
        red, green, blue = img.getpixel((5, 5))
    assert red > 200 and green < 60 and blue < 60


def test_converts_16_bit_greyscale_keeping_its_brightness():
    img = Image.new("I;16", (32, 32), 40000)   # ~61% of 65535
    image = decode(encode(img, "PNG"), "scan")
    with Image.open(io.BytesIO(image.data)) as out:
        assert out.mode == "RGB"
        value = out.getpixel((3, 3))[0]
    assert 150 <= value <= 160


def test_keeps_transparency_as_rgba():
    image = decode(encode(solid(mode="RGBA", colour=(0, 0, 0, 0))), "cutout")
    assert image.alpha is True
    assert decode(encode(solid()), "opaque").alpha is False


# --- masks and references -----------------------------------------------------------------------

def test_openai_mask_becomes_white_repaint_black_keep_at_image_size():
    image = decode(encode(solid((100, 80))), "image")
    mask = Image.new("RGBA", (50, 40), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 25, 40))            # left half transparent: change it
    converted = sd_mask(decode(encode(mask), "mask"), image)
    with Image.open(io.BytesIO(converted)) as out:
        assert out.size == (100, 80)
        assert out.mode == "L"
        assert out.getpixel((10, 40)) == 255                # transparent -> white: repaint
        assert out.getpixel((90, 40)) == 0                  # opaque -> black: keep


def test_mask_without_any_transparent_pixel_is_refused():
    image = decode(encode(solid()), "image")
    opaque = decode(encode(solid(mode="RGBA", colour=(0, 0, 0, 255))), "mask")
    with pytest.raises(ImageRefused, match="no fully transparent pixels") as info:
        sd_mask(opaque, image)
    assert info.value.param == "mask"


def test_opaque_black_and_white_mask_is_read_as_white_repaint():
    image = decode(encode(solid((20, 20))), "image")
    bw = Image.new("L", (20, 20), 0)
    bw.paste(255, (0, 0, 10, 20))
    with Image.open(io.BytesIO(sd_mask(decode(encode(bw), "mask"), image))) as out:
        assert out.getpixel((2, 2)) == 255 and out.getpixel((18, 2)) == 0


@pytest.mark.parametrize("size, expected", [((2000, 1000), (511, 256)), ((300, 900), (170, 511)),
                                            ((200, 100), (200, 100))])
def test_reference_copy_fits_under_512_keeping_proportions(size, expected):
    image = decode(encode(solid(size)), "ref")
    with Image.open(io.BytesIO(reference_copy(image))) as out:
        assert out.format == "JPEG"
        assert out.size == expected


# --- sources ------------------------------------------------------------------------------------

@pytest.fixture
def store():
    return MemoryStore(max_bytes=1 << 24)


def make_intake(store, **kw) -> ImageIntake:
    kw.setdefault("max_bytes", 1 << 20)
    kw.setdefault("fetch_remote", False)
    return ImageIntake(store, expiration=600, **kw)


def test_data_url_is_decoded(store):
    image = make_intake(store).from_url(data_url(encode(solid(), "WEBP"), "image/webp"), "att")
    assert image.size == "64x48"
    assert image.link is None


def test_data_url_with_bad_base64_is_refused(store):
    with pytest.raises(ImageRefused, match="base64"):
        make_intake(store).from_url("data:image/png;base64,@@@not-base64@@@", "att")


def test_data_url_over_the_byte_cap_is_refused(store):
    big = encode(Image.effect_noise((300, 300), 60).convert("RGB"), "PNG")
    with pytest.raises(ImageRefused, match="MAX_INPUT_IMAGE_BYTES"):
        make_intake(store, max_bytes=len(big) - 1).from_url(data_url(big), "att")


@pytest.mark.parametrize("host", ["http://localhost:8080", "https://images.example.net",
                                  "http://[::1]", ""])
def test_own_link_is_read_from_storage_under_any_host(store, host):
    key = "A" * 22
    store.put(key, encode(solid((30, 20)), "JPEG"), "image/jpeg", 60)
    image = make_intake(store).from_url(f"{host}/image/{key}", "ref")
    assert image.size == "30x20"
    assert image.link == (f"{host}/image/{key}" if host else None)


def test_expired_own_link_says_it_expired(store):
    with pytest.raises(ImageExpired, match="expired") as info:
        make_intake(store).from_url("https://img.example.com/image/" + "B" * 22, "ref")
    assert info.value.status == 400 and info.value.code == "image_expired"


def test_own_link_shape_is_recognised_strictly():
    assert own_image_key("https://x.example/image/" + "C" * 22) == "C" * 22
    assert own_image_key("https://x.example/prefix/image/" + "C" * 22) == "C" * 22
    assert own_image_key("https://x.example/image/short") is None
    assert own_image_key("https://x.example/image/" + "C" * 22 + "?x=1") is None
    assert own_image_key("ftp://x.example/image/" + "C" * 22) is None


def test_remote_link_with_fetching_off_names_the_option(store):
    with pytest.raises(ImageRefused, match="FETCH_REMOTE_IMAGES"):
        make_intake(store).from_url("https://example.com/cat.png", "ref")


def test_other_schemes_are_refused(store):
    with pytest.raises(ImageRefused, match="data: URL or an http"):
        make_intake(store, fetch_remote=True).from_url("file:///etc/passwd", "ref")


# --- the SSRF guard -----------------------------------------------------------------------------

@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.0.10", "172.16.5.5",
                                     "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1",
                                     "fd00:ec2::254", "fe80::1", "::ffff:127.0.0.1",
                                     "224.0.0.1", "::7f00:1", "::127.0.0.1", "64:ff9b::7f00:1",
                                     "64:ff9b:1::a01:203", "fec0::1", "2002:7f00:1::1",
                                     "::a9fe:a9fe"])
def test_internal_addresses_are_not_public(address):
    assert not is_public_address(address)


@pytest.mark.parametrize("address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111",
                                     "64:ff9b::101:101", "::ffff:1.1.1.1"])
def test_internet_addresses_are_public(address):
    assert is_public_address(address)


@pytest.mark.parametrize("address", [
    "::7f00:1", "::127.0.0.1", "::a9fe:a9fe",         # IPv4-compatible (deprecated)
    "64:ff9b::7f00:1", "64:ff9b::10.0.0.1",           # NAT64, well-known prefix
    "64:ff9b:1::8.8.8.8",                             # NAT64 for local use: inside by definition
    "::ffff:0:7f00:1",                                # IPv4-translated (SIIT)
    "2002:7f00:1::1", "2002:a9fe:a9fe::",             # 6to4 of 127.0.0.1, 169.254.169.254
    "fec0::1", "fec0:0:0:ffff::1",                    # site-local (deprecated)
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",           # Teredo
])
def test_embedded_and_site_local_inside_addresses_are_not_public(address):
    assert not is_public_address(address)


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "::ffff:8.8.8.8", "2002:808:808::1",
                                     "2606:4700:4700::1111"])
def test_embedded_public_addresses_stay_public(address):
    assert is_public_address(address)


@pytest.mark.parametrize("inside", ["10.20.30.40", "::7f00:1", "fec0::1"])
def test_a_refusal_does_not_say_where_a_name_points(inside):
    fetcher = RemoteFetcher(max_bytes=1000, resolver=lambda name, port: [inside])
    with pytest.raises(ImageRefused, match="internal address") as info:
        fetcher.fetch("http://intranet.example.test/cat.png", "ref")
    assert inside not in info.value.message
    assert "intranet.example.test" in info.value.message    # the caller's own name is fine


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves /cat.png, a redirect to another host, a same-host redirect and a big body."""

    png = encode(solid((40, 30), (10, 200, 10)))
    hosts: list = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).hosts.append(self.headers.get("Host"))
        if self.path == "/cat.png":
            self._send(200, self.png)
        elif self.path == "/elsewhere":
            self.send_response(302)
            self.send_header("Location", "http://other.example.test/cat.png")
            self.end_headers()
        elif self.path == "/same":
            self.send_response(301)
            self.send_header("Location", "/cat.png")
            self.end_headers()
        elif self.path == "/big":
            self._send(200, b"x" * 5000)
        else:
            self._send(404, b"no")

    def _send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def local_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def pictures_resolver(host: str, port: int) -> list[str]:
    """A resolver in which pics.example.test (and every name) points at 127.0.0.1."""
    return ["127.0.0.1"]


def test_a_dns_name_resolving_to_loopback_is_refused(local_server):
    fetcher = RemoteFetcher(max_bytes=1 << 20)
    with pytest.raises(ImageRefused, match="internal address"):
        fetcher.fetch(f"http://localhost:{local_server}/cat.png", "ref")
    assert not _Handler.hosts or "localhost" not in str(_Handler.hosts[-1])


def test_a_name_pointing_inside_through_any_resolver_is_refused(local_server):
    before = len(_Handler.hosts)
    fetcher = RemoteFetcher(max_bytes=1 << 20, resolver=pictures_resolver)
    with pytest.raises(ImageRefused, match="internal address") as info:
        fetcher.fetch(f"http://pics.example.test:{local_server}/cat.png", "ref")
    assert "127.0.0.1" not in info.value.message   # where a name points is not told
    assert len(_Handler.hosts) == before       # nothing was requested


def test_literal_metadata_address_is_refused():
    with pytest.raises(ImageRefused, match="internal address"):
        RemoteFetcher(max_bytes=1000).fetch("http://169.254.169.254/latest/meta-data/", "ref")


def _open_fetcher(**kw) -> RemoteFetcher:
    # The guard is a parameter: allowing loopback here lets a local server play "the internet".
    return RemoteFetcher(max_bytes=kw.pop("max_bytes", 1 << 20), resolver=pictures_resolver,
                         allowed=lambda address: True, **kw)


def test_fetch_connects_to_the_checked_address_with_the_original_host(local_server):
    data = _open_fetcher().fetch(f"http://pics.example.test:{local_server}/cat.png", "ref")
    assert data == _Handler.png
    assert _Handler.hosts[-1] == f"pics.example.test:{local_server}"


def test_fetch_follows_a_same_host_redirect(local_server):
    data = _open_fetcher().fetch(f"http://pics.example.test:{local_server}/same", "ref")
    assert data == _Handler.png


def test_fetch_refuses_a_redirect_to_another_host(local_server):
    with pytest.raises(ImageRefused, match="another host"):
        _open_fetcher().fetch(f"http://pics.example.test:{local_server}/elsewhere", "ref")


def test_fetch_refuses_a_body_over_the_cap(local_server):
    with pytest.raises(ImageRefused, match="MAX_INPUT_IMAGE_BYTES"):
        _open_fetcher(max_bytes=1000).fetch(f"http://pics.example.test:{local_server}/big", "r")


def test_fetch_reports_an_http_error(local_server):
    with pytest.raises(ImageRefused, match="HTTP 404"):
        _open_fetcher().fetch(f"http://pics.example.test:{local_server}/missing", "ref")


def test_intake_fetches_remote_links_when_allowed(store, local_server):
    source = make_intake(store, fetch_remote=True, fetcher=_open_fetcher())
    url = f"http://pics.example.test:{local_server}/cat.png"
    image = source.from_url(url, "ref")
    assert image.size == "40x30" and image.link == url


def test_default_guard_is_the_public_address_check():
    assert RemoteFetcher(max_bytes=1)._allowed is is_public_address


def test_bucket_links_count_as_own_under_direct_or_presigned_links():
    key = "D" * 22
    bucket = "https://pics.r2.example"
    assert own_image_key(f"{bucket}/flux/{key}", bucket) == key
    assert own_image_key(f"{bucket}/bucket/{key}?X-Amz-Signature=abc", bucket) == key
    assert own_image_key(f"https://elsewhere.example/{key}", bucket) is None
    assert own_image_key(f"{bucket}/flux/not-a-key", bucket) is None
