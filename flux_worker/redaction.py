"""Keep secrets out of text: one implementation for logs, quoted upstream errors and URLs.

Every configured secret (API keys, tokens, passwords in URLs) and any `Bearer <token>` is
replaced by `***` before text reaches a log line or an answer.
"""

from __future__ import annotations

import re
from typing import Iterable
from urllib.parse import unquote, urlsplit

MASK = "***"
# Possessive, so a long run of spaces after "bearer" cannot make the match backtrack.
_BEARER = re.compile(r"(?i)(bearer\s++)[A-Za-z0-9._~+/=-]{6,}")


def redact(text: str, secrets: Iterable[str]) -> str:
    """Return `text` with each secret and any bearer token replaced by `***`."""
    cleaned = _BEARER.sub(r"\1" + MASK, text)
    # Longest first, so a secret that contains another is masked whole.
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        cleaned = cleaned.replace(secret, MASK)
    return cleaned


def url_secrets(url: str) -> tuple[str, ...]:
    """The password of `url`, as written and percent-decoded (none when it has none)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return ()
    return tuple({password, unquote(password)} - {""}) if password else ()
