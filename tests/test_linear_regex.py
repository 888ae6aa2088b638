"""Every pattern over user (or upstream) text runs in linear time on input of the largest size.

A pattern that backtracks quadratically froze a gunicorn worker for minutes on one 60 KB request
("generate" followed by spaces). These tests run each pattern, and each function built on them, on
adversarial text as long as the largest body the service accepts, and allow a generous 2 s: a
linear scan of 1 MB takes a few hundred milliseconds on a busy machine, a quadratic one minutes.
"""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flux_worker import redaction
from flux_worker.backends.cloudflare import failures, payloads
from flux_worker.chat import background_requests
from flux_worker.config import Config
from flux_worker.errors import InvalidRequest
from flux_worker.generation import prompt, sizes, translate

MAX_BODY = Config.from_env({}).max_body_bytes
BOUND = 2.0  # seconds; generous on purpose (a shared, slow CI machine must not flake)

# Patterns run with search/sub over the whole text.
PATTERNS: dict[str, re.Pattern] = {
    **{f"background_requests.nextchat[{i}]": p
       for i, (p, _) in enumerate(background_requests._NEXTCHAT)},
    **{f"background_requests.open_webui_kinds[{i}]": p
       for i, (p, _) in enumerate(background_requests._OPEN_WEBUI_KINDS)},
    "background_requests.open_webui": background_requests._OPEN_WEBUI,
    "background_requests.generic_title": background_requests._GENERIC_TITLE,
    "background_requests.title_noise": background_requests._TITLE_NOISE,
    "background_requests.embedded_user": background_requests._EMBEDDED_USER,
    "prompt.trailing_ratio": prompt._TRAILING_RATIO,
    "prompt.trailing_wxh": prompt._TRAILING_WXH,
    "prompt.option_start": prompt._OPTION_START,
    "prompt.hspace": prompt._HSPACE,
    "prompt.space_around_newline": prompt._SPACE_AROUND_NEWLINE,
    "translate.open_tag": translate._OPEN_TAG,
    "translate.close_tag": translate._CLOSE_TAG,
    "translate.label": translate._LABEL,
    "cloudflare.code_in_text": failures._CODE_IN_TEXT,
    "cloudflare.data_url": payloads._DATA_URL,
    "redaction.bearer": redaction._BEARER,
}
# Patterns the code only ever anchors with .match at one position (a field's start, the end of
# an option's name): searching with them at every position is not how they run.
ANCHORED: dict[str, re.Pattern] = {
    "sizes.ratio_value": sizes._RATIO_VALUE,
    "sizes.wxh_value": sizes._WXH_VALUE,
    "prompt.int_value": prompt._INT_VALUE,
    "prompt.ar_value": prompt._AR_VALUE,
}

# Words the patterns look for, so generated text reaches deep into each one before failing.
KEYWORDS = ["generate", "please", "write a", "title", "conversation", "USER:", "### Task:",
            "<think>", "</think>", "<reasoning>", "english", "image", "prompt", "--seed", "--ar",
            "--no", "—steps", "16:9", "1:", "12x", "1920x1080", "5-word-or-less", "word",
            "bearer", "data:", "image/png", ";base64", "3030:", "follow-up", "tags"]
FILLER = [" ", "\n", "\t", "  \n", "1", "a", "-", ":", ",", "x", "=", "<", "/", ";", "\u3000"]

ADVERSARIAL = {
    "generate+spaces": "generate" + " " * MAX_BODY,
    "please generate a +spaces": "please generate a " + " " * MAX_BODY + "x",
    "newlines": "\n" * MAX_BODY,
    "USER:+spaces": "USER:" + " " * MAX_BODY,
    "USER: lines": "USER:\n" * (MAX_BODY // 6),
    "digits": "1" * MAX_BODY,
    "ratio+spaces": "1:1" + " " * MAX_BODY + "x",
    "think openers": "<think>" * (MAX_BODY // 7),
    "mixed openers": "<think><reasoning><thinking>" * (MAX_BODY // 28),
    "option+spaces": "--seed" + " " * MAX_BODY + "x",
    "options": "--seed --steps --ar --no " * (MAX_BODY // 25),
    "english+spaces": "english" + " " * MAX_BODY,
    "bearer+spaces": "bearer" + " " * MAX_BODY + "!",
    "data url": "data:" + "a" * MAX_BODY,
}


def _exercise(pattern: re.Pattern, text: str) -> float:
    """Seconds taken by search and sub (every match, as finditer) of pattern over text."""
    started = time.perf_counter()
    pattern.search(text)
    pattern.sub("", text)
    return time.perf_counter() - started


def _exercise_all(text: str) -> dict[str, float]:
    """Seconds taken by each pattern over text, the way the code runs it."""
    times = {name: _exercise(p, text) for name, p in PATTERNS.items()}
    for name, pattern in ANCHORED.items():
        started = time.perf_counter()
        pattern.match(text)
        pattern.match(text, 1)
        times[name] = time.perf_counter() - started
    return times


def _functions(text: str) -> float:
    """Seconds taken by the functions that run the patterns on a request's text."""
    started = time.perf_counter()
    background_requests.detect([text + "x", text], text)
    prompt.parse_prompt(text)
    try:
        sizes.parse_size_param(text)
    except InvalidRequest:
        pass
    translate.clean_reply(text)
    return time.perf_counter() - started


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_every_pattern_is_linear_on_targeted_input(name):
    text = ADVERSARIAL[name]
    slow = {key: round(t, 2) for key, t in _exercise_all(text).items() if t > BOUND}
    assert not slow, f"{name}: patterns slower than {BOUND}s: {slow}"


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_request_text_functions_are_linear_on_targeted_input(name):
    took = _functions(ADVERSARIAL[name])
    assert took < BOUND * 2, f"{name}: {took:.2f}s"


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.lists(st.sampled_from(KEYWORDS), max_size=3),
       unit=st.lists(st.sampled_from(FILLER + KEYWORDS), min_size=1, max_size=4),
       suffix=st.sampled_from(["", "x", "title", " conversation", "</think>", "16:9", "!"]))
def test_every_pattern_is_linear_on_generated_input(prefix, unit, suffix):
    head, piece = "".join(prefix), "".join(unit)
    text = head + piece * max(1, (MAX_BODY - len(head)) // len(piece)) + suffix
    for name, took in _exercise_all(text).items():
        assert took < BOUND, f"{name} took {took:.2f}s on {head!r} + {piece!r}*n + {suffix!r}"
    assert _functions(text) < BOUND * 2


def test_generic_title_still_recognised():
    """The possessive rewrite keeps what the pattern accepted (LibreChat and similar titles)."""
    for text in ("Please generate a concise, 5-word-or-less title for the conversation",
                 "write a short three word title for this conversation",
                 "Generate title for conversation"):
        assert background_requests._GENERIC_TITLE.search(text), text
    assert not background_requests._GENERIC_TITLE.search("generate a cat wearing a title belt")


def test_embedded_user_line_found_without_crossing_lines():
    found = background_requests._EMBEDDED_USER.search(
        "### Task:\n<chat_history>\n  USER: a red fox\n")
    assert found and found.group(1) == "a red fox"


def test_clean_reply_keeps_its_meaning():
    assert translate.clean_reply("<think>hmm</think>A fox") == "A fox"
    assert translate.clean_reply("<THINK>a</think> <reasoning>b</reasoning>A fox") == "A fox"
    assert translate.clean_reply("plan it</thinking>A fox") == "A fox"
    assert translate.clean_reply("<think>never closed A fox") == "<think>never closed A fox"
    assert translate.clean_reply("<think>x <reasoning>y</reasoning>A fox") == "<think>x A fox"
    assert translate.clean_reply("Prompt: 'A fox'") == "A fox"


def test_translation_is_cut_to_a_bounded_length():
    long = "word " * 2000
    cut = translate.limit_length(long)
    assert len(cut) <= translate.MAX_TRANSLATION_CHARS and cut.endswith("word")
    assert translate.limit_length("short") == "short"
