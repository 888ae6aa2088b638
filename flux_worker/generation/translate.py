"""Prompt translators: turn any-language prompts into a rich English image prompt.

A translator is optional (microblog's habit: off is `None`, every caller copes). Whatever goes
wrong here raises `TranslationFailed`; the pipeline then falls back to the original prompt and
says so in the answer, because a missing translation must never cost the user their image.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import requests

from ..net.upstream import MAX_UPSTREAM_BYTES, UpstreamProblem, call

log = logging.getLogger(__name__)

SYSTEM_MESSAGE = (
    "You write prompts for a text-to-image model.\n"
    "Turn the user's request, in whatever language it is written, into one English image prompt.\n"
    "Keep every subject, count, colour, style and piece of text the user asked for; add concrete "
    "visual\ndetail (composition, lighting, mood, medium) that suits the requested aspect ratio.\n"
    "Answer with the prompt only: no preamble, no quotes, no explanations, no markdown, at most "
    "120 words.")

# Reasoning blocks are cut with plain searches (see _strip_reasoning), not `<(think)>.*?</\1>`:
# a reply of many unclosed `<think>` made that lazy scan run to the end once per tag (quadratic).
_OPEN_TAG = re.compile(r"<(think|thinking|reasoning)>", re.I)
_CLOSE_TAG = re.compile(r"</(think|thinking|reasoning)>", re.I)
_CLOSERS = {name: re.compile(f"</{name}>", re.I) for name in ("think", "thinking", "reasoning")}
_LABEL = re.compile(r"^(?:english\s++)?(?:image\s++)?prompt\s*+:\s*+", re.I)
# The longest prompt taken from the LLM: its answer is asked to be 120 words; a model that
# rambles on must not send pages to the image model (models without a limit of their own).
MAX_TRANSLATION_CHARS = 2000
_VERSION_SEGMENT = re.compile(r"/v\d+[a-z0-9]*(/|$)", re.I)


# An edit's text is an instruction about a picture the model also gets.
EDIT_SYSTEM_MESSAGE = """\
You write instructions for an image-editing model that gets the user's picture.
Turn the user's request, in whatever language, into one short English editing instruction.
Keep it an instruction about the given picture ("make the cat wear a red hat", "turn the sky
pink"): do not describe a new scene and do not invent changes the user did not ask for.
Answer with the instruction only: no preamble, quotes, explanations or markdown; at most
60 words."""


# CHAT_EDITS=auto: the LLM tells a follow-up that changes the last picture from a new picture.
DECIDE_SYSTEM_MESSAGE = """\
The user already has a picture from an image generator and sends a message.
Answer EDIT if the message asks to change that picture (e.g. "make it blue", "add a hat",
"now at night"), or NEW if it describes a different, new picture. Answer with the one word only."""


class TranslationFailed(Exception):
    """The LLM could not deliver a usable prompt (timeout, HTTP error, empty answer)."""


@dataclass(frozen=True)
class Translation:
    """An English prompt and the name of the model that wrote it."""

    prompt: str
    model: str


class Translator(Protocol):
    """Turns a prompt and its aspect ratio into an English image prompt."""

    model: str

    def translate(self, prompt: str, ratio: str, *, edit: bool = False) -> Translation:
        """Return the translated prompt (an instruction when `edit`); raise TranslationFailed."""

    def decide_edit(self, message: str) -> bool:
        """Whether a follow-up message edits the previous image (CHAT_EDITS=auto)."""


def chat_completions_url(base: str) -> str:
    """Return the chat completions URL for a base given with or without `/v1`."""
    base = base.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    # Bases that already carry a version (`/v1`, `/v1beta/openai`, Cloudflare's `/ai/v1`) are
    # complete; a bare host such as https://api.openai.com needs `/v1`.
    if not _VERSION_SEGMENT.search(urlsplit(base).path):
        base += "/v1"
    return base + "/chat/completions"


def clean_reply(text: str) -> str:
    """Strip reasoning blocks, labels, quotes and markdown from an LLM's answer."""
    text = _strip_reasoning(text or "")
    text = text.strip().strip("`").strip()
    text = _LABEL.sub("", text).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'“”":
        text = text[1:-1].strip()
    return text.strip("“”").strip()


def _strip_reasoning(text: str) -> str:
    """Remove `<think>...</think>` blocks, and everything before a closing tag left unopened."""
    kept: list[str] = []
    pos = 0
    unclosed: set[str] = set()   # tags known to have no closer after the current position
    while match := _OPEN_TAG.search(text, pos):
        name = match.group(1).lower()
        close = None if name in unclosed else _CLOSERS[name].search(text, match.end())
        if close is None:
            # An opener without its closer stays, as the regex it replaces left it.
            unclosed.add(name)
            kept.append(text[pos:match.end()])
            pos = match.end()
            continue
        kept.append(text[pos:match.start()])
        pos = close.end()
    kept.append(text[pos:])
    text = "".join(kept)
    # Some models omit the opening tag: everything up to the first closer left is reasoning.
    closer = _CLOSE_TAG.search(text)
    return text[closer.end():] if closer else text


def limit_length(text: str, limit: int = MAX_TRANSLATION_CHARS) -> str:
    """Cut text to at most `limit` characters, at a word boundary when there is one."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    return (cut.rsplit(None, 1)[0] if " " in cut else cut).rstrip()


class ChatTranslator:
    """Translates through any OpenAI-compatible chat completions endpoint."""

    def __init__(self, *, api_base: str, model: str, api_key: str, session: requests.Session,
                 timeout: float = 20.0, system_message: str = "", label: str | None = None):
        self.url = chat_completions_url(api_base)
        self.model = label or model
        self._model_id = model
        self._api_key = api_key
        self._session = session
        self._timeout = timeout
        self._system = system_message or SYSTEM_MESSAGE

    def translate(self, prompt: str, ratio: str, *, edit: bool = False) -> Translation:
        """Ask the LLM for an English prompt; raise TranslationFailed on any failure."""
        started = time.monotonic()
        if edit:
            text = self._ask(EDIT_SYSTEM_MESSAGE, prompt)
        else:
            text = self._ask(self._system, f"{prompt}\n\nAspect ratio: {ratio}")
        log.info("translated prompt with %s in %.0f ms", self._model_id,
                 (time.monotonic() - started) * 1000)
        return Translation(prompt=text, model=self.model)

    def decide_edit(self, message: str) -> bool:
        """Ask whether a follow-up message edits the previous image (False on any failure)."""
        try:
            answer = self._ask(DECIDE_SYSTEM_MESSAGE, message)
        except TranslationFailed as exc:
            log.warning("edit decision skipped (%s): a new picture", exc)
            return False
        return answer.strip().upper().startswith("EDIT")

    def _ask(self, system: str, user: str) -> str:
        """Send one system and one user message; return the cleaned reply."""
        body = {
            "model": self._model_id,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "temperature": 0.6,
            # Reasoning models spend tokens on <think>; leave room for the prompt itself.
            "max_tokens": 1024,
            "stream": False,
        }
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        started = time.monotonic()
        try:
            # TRANSLATE_TIMEOUT bounds the whole call: an LLM trickling its answer is cut too.
            resp = call(self._session, "POST", self.url, json=body, headers=headers,
                        timeout=self._timeout, max_bytes=MAX_UPSTREAM_BYTES // 8)
        except UpstreamProblem as exc:
            raise TranslationFailed(str(exc)) from exc
        except requests.RequestException as exc:
            took = time.monotonic() - started
            raise TranslationFailed(f"{type(exc).__name__} after {took:.1f}s") from exc
        if resp.status_code != 200:
            raise TranslationFailed(f"HTTP {resp.status_code}")
        try:
            content = resp.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise TranslationFailed("malformed answer") from exc
        text = limit_length(clean_reply(content if isinstance(content, str) else ""))
        if not text:
            raise TranslationFailed("empty answer")
        return text
