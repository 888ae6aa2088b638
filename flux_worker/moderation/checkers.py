"""The services that judge a prompt: Cloudflare's Llama Guard and OpenAI-compatible moderations.

Each answers the ids of the categories it flags (none: the text is safe) or raises
CheckFailed when it cannot judge: a timeout, a refused token, an HTTP error or an
answer of the wrong shape. What that means for the request is the policy's (policy.py).
Calls go through the pooled session with a total deadline, like every upstream call.
"""

from __future__ import annotations

from typing import Any, Iterable, Protocol

import requests

from ..net.upstream import UpstreamProblem, call
from .categories import from_llama_guard, from_openai

MAX_ANSWER_BYTES = 64 * 1024       # a verdict is a few hundred bytes
LLAMA_GUARD_MODEL = "@cf/meta/llama-guard-3-8b"        # MODERATION=cloudflare's default
OPENAI_MODERATION_MODEL = "omni-moderation-latest"     # MODERATION=openai's default


class CheckFailed(Exception):
    """The moderation service could not judge; the message names no URL and no token."""


class Checker(Protocol):
    """A moderation service."""

    name: str

    def flagged(self, text: str) -> tuple[str, ...]:
        """The category ids `text` is flagged for (empty: safe); raise CheckFailed."""


class LlamaGuard:
    """Llama Guard on Workers AI, on the account that draws (`/ai/run/<model>`)."""

    def __init__(self, *, api_base: str, account_id: str, token: str, model: str,
                 session: requests.Session, timeout: float):
        self.name = model
        self.url = f"{api_base}/accounts/{account_id}/ai/run/{model}"
        self._token = token
        self._session = session
        self._timeout = timeout

    def flagged(self, text: str) -> tuple[str, ...]:
        body = {"messages": [{"role": "user", "content": text}], "max_tokens": 64,
                "temperature": 0}
        answer = _post(self._session, self.url, body, self._token, self._timeout)
        response = answer.get("result", {}).get("response") if isinstance(answer, dict) else None
        if isinstance(response, dict) and isinstance(response.get("safe"), bool):
            codes = response.get("categories") or []
            if response["safe"]:
                return ()
            return _unique(from_llama_guard(str(c)) for c in codes) or ("other",)
        if isinstance(response, str) and response.strip():
            # The model's own text: "safe", or "unsafe" and a line of codes ("S1,S10").
            first, _, rest = response.strip().partition("\n")
            if first.strip().lower() == "safe":
                return ()
            if first.strip().lower() == "unsafe":
                codes = [c for c in rest.replace(" ", "").split(",") if c]
                return _unique(from_llama_guard(c) for c in codes) or ("other",)
        raise CheckFailed("Llama Guard answered in a shape that is not a verdict")


class OpenAIModeration:
    """An OpenAI-compatible `POST /v1/moderations`."""

    def __init__(self, *, api_base: str, api_key: str, model: str, session: requests.Session,
                 timeout: float):
        self.name = model
        base = api_base.rstrip("/")
        self.url = base + ("/moderations" if base.endswith("/v1") else "/v1/moderations")
        self._key = api_key
        self._model = model
        self._session = session
        self._timeout = timeout

    def flagged(self, text: str) -> tuple[str, ...]:
        answer = _post(self._session, self.url, {"input": text, "model": self._model},
                       self._key, self._timeout)
        try:
            result = answer["results"][0]
            flagged, categories = result["flagged"], result.get("categories") or {}
        except (KeyError, IndexError, TypeError) as exc:
            raise CheckFailed("the moderation answer has no results") from exc
        if not isinstance(flagged, bool) or not isinstance(categories, dict):
            raise CheckFailed("the moderation answer is not a verdict")
        if not flagged:
            return ()
        return _unique(from_openai(name) for name, on in categories.items() if on is True) or (
            "other",)


def _post(session: requests.Session, url: str, body: dict, token: str,
          timeout: float) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        answer = call(session, "POST", url, json=body, headers=headers, timeout=timeout,
                      max_bytes=MAX_ANSWER_BYTES)
    except UpstreamProblem as exc:
        raise CheckFailed(str(exc)) from exc
    except requests.RequestException as exc:
        raise CheckFailed(f"{type(exc).__name__} calling the moderation "
                                    "service") from exc
    if answer.status_code != 200:
        raise CheckFailed(f"the moderation service answered HTTP {answer.status_code}")
    try:
        return answer.json()
    except ValueError as exc:
        raise CheckFailed("the moderation service answered no JSON") from exc


def _unique(ids: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(ids))
