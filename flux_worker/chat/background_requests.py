"""Recognise chat clients' background requests (titles, summaries, tags) sent to the image model.

NextChat asks the current model for a conversation title and a summary; Open WebUI sends its
"### Task:" prompts (title, tags, follow-ups, search queries, autocomplete) to the current model
unless a task model is set. Generating an image for those would spend the user's quota on
pictures nobody sees, so they get a short text answer instead. All patterns live here.

Every pattern runs over user text of up to MAX_BODY_BYTES, so none may backtrack more than
linearly: runs of whitespace are taken with possessive quantifiers (`++`, `*+`; Python 3.11+), which
never give back what they took, and no two adjacent parts can match the same characters
(tests/test_linear_regex.py times each pattern on adversarial input of the maximum size).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

# NextChat (app/locales): the title and summary prompts, English and Chinese.
_NEXTCHAT = [
    (re.compile(r"generate a four to five word title summarizing our conversation", re.I), "title"),
    (re.compile(r"使用四到五个字直接返回这句话的简要主题"), "title"),
    (re.compile(r"summarize the discussion briefly in 200 words or less", re.I), "summary"),
    (re.compile(r"简要总结一下对话内容"), "summary"),
]
# Open WebUI's task templates all start with "### Task:"; the task decides the JSON reply.
_OPEN_WEBUI = re.compile(r"^\s*+###\s*+Task:", re.I)
_OPEN_WEBUI_KINDS = [
    (re.compile(r"\btitle\b", re.I), "title"),
    (re.compile(r"\btags?\b", re.I), "tags"),
    (re.compile(r"follow[- ]?up", re.I), "follow_ups"),
    (re.compile(r"search queries|\bqueries\b", re.I), "queries"),
    (re.compile(r"autocompletion|auto-?complete", re.I), "autocomplete"),
]
# LibreChat and others: a plain instruction asking for a conversation title.
# `\s++(?:a\s++)?[\s,]*+` once read `\s+(a\s+)?[\s,]*`: "generate" and 60 KB of spaces then took
# quadratic time splitting the run between the two.
_GENERIC_TITLE = re.compile(
    r"^\s*+(?:please\s++)?(?:generate|write|create|provide)\s++(?:a\s++)?"
    r"(?:concise|short|brief)?[\s,]*+"
    r"(?:\d++[- ]word[- ]or[- ]less\s++|[\w-]++\s++word\s++)?title\b.*\bconversation\b",
    re.I | re.S)
# Option-like tokens and sizes dropped from a title: `--ar 16:9`, `1920x1080`.
_TITLE_NOISE = re.compile(r"--\w++(?:\s++\S++)?|\b\d++\s*+[:x×]\s*+\d++\b")
# Open WebUI's embedded history: a line starting with "USER:". Only spaces and tabs before it:
# `\s*` would cross line breaks, and a run of newlines then cost quadratic time.
_EMBEDDED_USER = re.compile(r"^[^\S\n]*+USER:\s*+(.+)$", re.M)


@dataclass(frozen=True)
class Housekeeping:
    """A recognised background request and the text to answer it with."""

    client: str
    kind: str
    reply: str


def detect(user_texts: list[str], last_user: str) -> Housekeeping | None:
    """Return the housekeeping reply for a background request, or None for a real prompt.

    `user_texts` are the texts of the conversation's user messages, in order, as the wire
    model extracted them; `last_user` is the last of them (the prompt).
    """
    title = _title_from(user_texts, last_user)
    for pattern, kind in _NEXTCHAT:
        if pattern.search(last_user):
            return Housekeeping("nextchat", kind, title if kind == "title" else
                                f"The user generated images from prompts such as: {title}")
    if _OPEN_WEBUI.search(last_user):
        for pattern, kind in _OPEN_WEBUI_KINDS:
            if pattern.search(last_user[:400]):
                return Housekeeping("open-webui", kind, _open_webui_reply(kind, title))
        return Housekeeping("open-webui", "task", "")
    if _GENERIC_TITLE.search(last_user):
        return Housekeeping("generic", "title", title)
    return None


def _open_webui_reply(kind: str, title: str) -> str:
    if kind == "title":
        return json.dumps({"title": f"🎨 {title}"}, ensure_ascii=False)
    if kind == "tags":
        return json.dumps({"tags": ["Image generation"]})
    if kind == "follow_ups":
        return json.dumps({"follow_ups": []})
    if kind == "queries":
        return json.dumps({"queries": []})
    return ""


def _title_from(user_texts: list[str], last_user: str) -> str:
    """A short title from the conversation's first real prompt (the image the user asked for)."""
    for text in (t.strip() for t in user_texts):
        if text and text != last_user and not _looks_like_instruction(text):
            words = _TITLE_NOISE.sub(" ", text).split()
            if words:
                return " ".join(words[:5])
    # Open WebUI embeds the history in the task prompt itself: "<chat_history> USER: ...".
    embedded = _EMBEDDED_USER.search(last_user)
    if embedded:
        return " ".join(embedded.group(1).split()[:5])
    return "Image generation"


def _looks_like_instruction(text: str) -> bool:
    return bool(_OPEN_WEBUI.search(text) or any(p.search(text) for p, _ in _NEXTCHAT))

