"""A backend for any OpenAI-compatible Images API (OpenAI, Together, a local Stable Diffusion).

The same storage, sizing and answers apply: this backend asks for the nearest size such servers
commonly accept (multiples of 64) and the pipeline crops and scales to the exact size asked for.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import math
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from PIL import Image

from ..catalog.providers import OPENAI
from ..catalog.spec import ModelSpec, SizeRange
from ..errors import (
    ContentPolicy,
    QuotaExceeded,
    RateLimited,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
)
from ..generation import fitting
from ..generation.backend import GeneratedImage, GenerationRequest
from ..generation.translate import chat_completions_url
from ..net.upstream import Answer, UpstreamProblem, call, retry_after_seconds
from ..redaction import redact

log = logging.getLogger(__name__)


# Beside other providers, the upstream's models carry this prefix, so their ids never meet
# another provider's; alone (IMAGE_BACKEND=openai, as before) they keep their bare names.
ID_PREFIX = "image-api:"


def generic_model(name: str, prefixed: bool = False) -> ModelSpec:
    """A catalog entry for a model behind an OpenAI-compatible Images API."""
    # Edits and variations are forwarded to the upstream's own endpoints, which take images
    # and a mask; 4 is what this service's /v1/images/edits accepts.
    id, aliases = (ID_PREFIX + name, (name,)) if prefixed else (name, ())
    return ModelSpec(id, aliases, "openai-compatible", f"{name} through IMAGE_API_BASE",
                     size=SizeRange(256, 2048), steps_field=None, reference_images=4,
                     mask=True, provider=OPENAI)


def upstream_name(model: ModelSpec) -> str:
    """The name the upstream knows a model by (its id without this service's prefix)."""
    return model.id.removeprefix(ID_PREFIX)


def images_url(base: str, endpoint: str = "generations") -> str:
    """The images/<endpoint> URL for a base given with or without `/v1`."""
    return (chat_completions_url(base).removesuffix("/chat/completions")
            + f"/images/{endpoint}")


class OpenAIImagesBackend:
    """Generates through POST {IMAGE_API_BASE}/v1/images/generations."""

    name = "openai"

    def __init__(self, *, api_base: str, api_key: str, session: requests.Session,
                 timeout: float = 120.0):
        self.url = images_url(api_base)
        self.edits_url = images_url(api_base, "edits")
        self.variations_url = images_url(api_base, "variations")
        self._key = api_key
        self._session = session
        self._timeout = timeout

    def generate(self, request: GenerationRequest) -> GeneratedImage:
        """Ask the upstream for one image; map its errors to ours."""
        if request.images:
            return self._with_images(request)
        body = {"model": upstream_name(request.model), "prompt": request.prompt, "n": 1,
                "size": f"{_round64(request.width)}x{_round64(request.height)}",
                "response_format": "b64_json"}
        # UPSTREAM_TIMEOUT bounds the whole generation, a download of its image included.
        deadline = time.monotonic() + self._timeout
        resp = self._send(self.url, upstream_name(request.model), deadline, json=body)
        if resp.status_code == 400 and "response_format" in resp.text:
            # gpt-image models refuse response_format (they always answer in base64).
            body.pop("response_format")
            resp = self._send(self.url, upstream_name(request.model), deadline, json=body)
        return self._image_from(resp, deadline)

    def _with_images(self, request: GenerationRequest) -> GeneratedImage:
        """Forward an edit to /images/edits, a variation to /images/variations (multipart)."""
        size = f"{_round64(request.width)}x{_round64(request.height)}"
        form = {"model": upstream_name(request.model), "n": "1", "size": size,
                "response_format": "b64_json"}
        files: list[tuple[str, tuple]] = []
        if request.variation:
            url = self.variations_url
            files.append(("image", ("image.png", request.images[0].data, "image/png")))
        else:
            url = self.edits_url
            form["prompt"] = request.prompt
            name = "image[]" if len(request.images) > 1 else "image"
            files += [(name, (f"image_{i}.png", image.data, "image/png"))
                      for i, image in enumerate(request.images)]
            if request.mask is not None:
                files.append(("mask", ("mask.png", _openai_mask(request.mask), "image/png")))
        deadline = time.monotonic() + self._timeout
        resp = self._send(url, upstream_name(request.model), deadline, data=form, files=files)
        if resp.status_code == 400 and "response_format" in resp.text:
            form.pop("response_format")
            resp = self._send(url, upstream_name(request.model), deadline, data=form, files=files)
        return self._image_from(resp, deadline)

    def _image_from(self, resp: Answer, deadline: float) -> GeneratedImage:
        """The image of an Images API answer (b64_json or url); map errors to ours."""
        if resp.status_code != 200:
            raise _error(resp, self._key)
        try:
            item = resp.json()["data"][0]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise UpstreamError("The image API returned a malformed answer (no data[0]).") from exc
        if not isinstance(item, dict):
            raise UpstreamError("The image API returned a malformed answer (data[0]).")
        if item.get("b64_json"):
            try:
                image = GeneratedImage(base64.b64decode(item["b64_json"], validate=True))
            except (binascii.Error, ValueError, TypeError) as exc:
                raise UpstreamError("The image API returned invalid base64.") from exc
        elif isinstance(item.get("url"), str):
            image = self._download(item["url"], deadline)
        else:
            raise UpstreamError("The image API answered without b64_json or url.")
        size = fitting.oversized(image.data)
        if size is not None:
            raise UpstreamError(
                f"The image API returned a {size[0]}x{size[1]} image; no image model makes more "
                f"than {fitting.MAX_GENERATED_SIDE} pixels a side, so it was refused undecoded.")
        return image

    def _send(self, url: str, model: str, deadline: float, **payload: Any) -> Answer:
        """POST one request (`json=` or `data=`/`files=`) within the deadline; map failures."""
        started = time.monotonic()
        try:
            resp = call(self._session, "POST", url, timeout=_left(deadline, self._timeout),
                        headers={"Authorization": f"Bearer {self._key}"}, **payload)
        except requests.Timeout as exc:
            raise UpstreamTimeout(
                f"The image API did not answer within {self._timeout:g} s.") from exc
        except UpstreamProblem as exc:
            raise UpstreamError(f"The image API's answer was refused: {exc}.") from exc
        except requests.RequestException as exc:
            raise UpstreamError(
                f"Could not reach the image API ({type(exc).__name__}).") from exc
        log.info("images api %s %s -> %d in %.0f ms", url.rsplit("/", 1)[-1], model,
                 resp.status_code, (time.monotonic() - started) * 1000)
        return resp

    def _download(self, url: str, deadline: float) -> GeneratedImage:
        """Fetch the image the upstream links to, bounded like any upstream answer."""
        if urlsplit(url).scheme not in ("http", "https"):
            raise UpstreamError("The image API linked its image with a scheme other than "
                                "http(s); it was not fetched.")
        try:
            # No Authorization: the link is a capability of its own, often on another host.
            resp = call(self._session, "GET", url, timeout=_left(deadline, self._timeout))
        except requests.Timeout as exc:
            raise UpstreamTimeout(
                f"The generated image was not downloaded within {self._timeout:g} s.") from exc
        except UpstreamProblem as exc:
            raise UpstreamError(f"The generated image was refused: {exc}.") from exc
        except requests.RequestException as exc:
            raise UpstreamError(
                f"Could not download the generated image ({type(exc).__name__}).") from exc
        if resp.status_code != 200:
            raise UpstreamError(
                f"Downloading the generated image failed with HTTP {resp.status_code}.")
        return GeneratedImage(resp.content, resp.headers.get("Content-Type"))


def _left(deadline: float, timeout: float) -> float:
    """Seconds left before `deadline` (a little at least, so the call fails as a timeout)."""
    return max(0.001, min(timeout, deadline - time.monotonic()))


def _openai_mask(sd_mask: bytes) -> bytes:
    """Turn an SD mask (white repaint) back into OpenAI's (transparent = change)."""
    with Image.open(io.BytesIO(sd_mask)) as img:
        grey = img.convert("L")
    rgba = Image.new("RGBA", grey.size, (0, 0, 0, 255))
    rgba.putalpha(grey.point(lambda v: 0 if v >= 128 else 255))
    out = io.BytesIO()
    rgba.save(out, "PNG")
    return out.getvalue()


def _round64(side: int) -> int:
    return max(64, (side + 32) // 64 * 64)


_MAX_QUOTED = 200   # characters of the upstream's message quoted to clients


def _quoted(text: str, key: str) -> str:
    """The upstream's message as clients may see it: one line, bounded, without secrets.

    Some servers echo request headers in their errors; the server's key (and any bearer token)
    is masked, control characters dropped, and the text cut to _MAX_QUOTED characters.
    """
    text = redact(" ".join(str(text).split()), (key,))
    text = "".join(c for c in text if c.isprintable())
    return text if len(text) <= _MAX_QUOTED else text[:_MAX_QUOTED - 1] + "…"


def _error(resp: Answer, key: str) -> Exception:
    try:
        err = resp.json().get("error") or {}
    except (ValueError, AttributeError):
        err = {}
    code = err.get("code") if isinstance(err, dict) else None
    text = (err.get("message") if isinstance(err, dict) else None) or resp.text[:1000]
    if resp.status_code in (401, 403):
        return UpstreamAuthFailed("The image API rejected this server's IMAGE_API_KEY; "
                                  "your API key was accepted.")
    if code == "content_policy_violation":
        return ContentPolicy("The image API's safety system rejected this prompt. Rephrase it.")
    if code == "insufficient_quota":
        return QuotaExceeded("The image API account has no quota left.")
    if resp.status_code == 429:
        after = retry_after_seconds(resp.headers.get("Retry-After"))
        return RateLimited("The image API is rate limiting this server; try again shortly.",
                           retry_after=math.ceil(after) if after is not None else 60)
    # A 4xx refuses the request itself: another model would be refused too (no fallback).
    failed = UpstreamRejected if 400 <= resp.status_code < 500 else UpstreamError
    return failed(
        f"The image API failed with HTTP {resp.status_code}: {_quoted(text, key)}")
