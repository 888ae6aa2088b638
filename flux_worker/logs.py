"""Logging set-up, with a filter that keeps every configured secret out of the logs.

The same filter escapes control characters: a request path with `%0a` or an ANSI escape, or a
model name with a newline, must not write a forged line (or recolour a terminal) in the log.
"""

from __future__ import annotations

import logging

from .redaction import redact

# C0 and C1 control characters, DEL and the Unicode line and paragraph separators.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7f, 0xa0))}
_CONTROL.update({0x2028: "\\u2028", 0x2029: "\\u2029"})


def printable(text: object, limit: int = 1000) -> str:
    """Return text with control characters escaped (`\\x0a`), cut to `limit` characters."""
    value = str(text)
    if len(value) > limit:
        value = value[:limit] + "…"
    return value.translate(_CONTROL)


class RedactSecrets(logging.Filter):
    """Replace configured secrets and bearer tokens with `***`; escape control characters."""

    def __init__(self, secrets: tuple[str, ...]):
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        # A traceback is added by the formatter after this, so its own line breaks stay.
        cleaned = redact(printable(message, limit=100_000), self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def configure(level: str, secrets: tuple[str, ...]) -> None:
    """Send flux_worker logs to stderr at `level`, with secrets redacted on every handler."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    redact = RedactSecrets(secrets)
    for each in root.handlers + logging.getLogger("gunicorn.error").handlers:
        if not any(isinstance(f, RedactSecrets) for f in each.filters):
            each.addFilter(redact)
    logging.getLogger("flux_worker").setLevel(level)
    if root.level == logging.NOTSET or root.level > logging.getLevelName(level):
        root.setLevel(level)
    # urllib3 logs full URLs at DEBUG; keep it quiet unless asked.
    logging.getLogger("urllib3").setLevel(max(logging.INFO, logging.getLevelName(level)))
