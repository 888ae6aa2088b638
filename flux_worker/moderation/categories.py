"""The categories a prompt can be refused for, each with the words a refusal says.

Both services' names map onto one set of ids, so MODERATION_LOW, the metrics and the refusal
speak the same language whichever service judged: Llama Guard 3's S-codes (the MLCommons hazard
taxonomy) and OpenAI's category names.
"""

from __future__ import annotations

# id -> the words a refusal uses
WORDS: dict[str, str] = {
    "violence": "violence or violent crimes",
    "crime": "non-violent crimes",
    "sex-crimes": "sex-related crimes",
    "minors": "child sexual exploitation",
    "defamation": "defamation",
    "advice": "specialized advice",
    "privacy": "privacy",
    "intellectual-property": "intellectual property",
    "weapons": "indiscriminate weapons",
    "hate": "hate",
    "harassment": "harassment",
    "self-harm": "suicide and self-harm",
    "sexual": "sexual content",
    "elections": "elections",
    "code-abuse": "code interpreter abuse",
    "other": "unsafe content",
}

LLAMA_GUARD: dict[str, str] = {
    "S1": "violence", "S2": "crime", "S3": "sex-crimes", "S4": "minors", "S5": "defamation",
    "S6": "advice", "S7": "privacy", "S8": "intellectual-property", "S9": "weapons",
    "S10": "hate", "S11": "self-harm", "S12": "sexual", "S13": "elections", "S14": "code-abuse",
}

# OpenAI's names; a sub-category ("hate/threatening") counts as its parent unless named here.
OPENAI: dict[str, str] = {
    "sexual": "sexual", "sexual/minors": "minors", "harassment": "harassment", "hate": "hate",
    "illicit": "crime", "illicit/violent": "violence", "self-harm": "self-harm",
    "violence": "violence",
}


def from_llama_guard(code: str) -> str:
    """The id of a Llama Guard category code (`S12`); unknown codes are `other`."""
    return LLAMA_GUARD.get(code.strip().upper(), "other")


def from_openai(name: str) -> str:
    """The id of an OpenAI moderation category (`violence/graphic` counts as `violence`)."""
    name = name.strip().lower()
    return OPENAI.get(name) or OPENAI.get(name.split("/", 1)[0], "other")


def parse_categories(text: str) -> frozenset[str]:
    """MODERATION_LOW's list: ids, Llama Guard codes or OpenAI names; raise ValueError."""
    found = set()
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item.lower() in WORDS:
            found.add(item.lower())
        elif item.upper() in LLAMA_GUARD:
            found.add(LLAMA_GUARD[item.upper()])
        elif item.lower() in OPENAI or item.lower().split("/", 1)[0] in OPENAI:
            found.add(from_openai(item))
        else:
            raise ValueError(f"{item!r} is not a moderation category; use one of "
                             f"{', '.join(sorted(WORDS))}")
    return frozenset(found)


def in_words(ids: tuple[str, ...]) -> str:
    """`sexual content, hate`: the categories as a refusal names them."""
    return ", ".join(WORDS.get(i, WORDS["other"]) for i in ids)
