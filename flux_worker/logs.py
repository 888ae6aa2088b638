"""Logging set-up, with a filter that keeps every configured secret out of the logs."""

from __future__ import annotations

import logging
import re

_BEARER = re.compile(r"(?i)(bearer\s++)[A-Za-z0-9._~+/=-]{6,}")


class RedactSecrets(logging.Filter):
    """Replace configured secrets and bearer tokens in log records with `***`."""

    def __init__(self, secrets: tuple[str, ...]):
        super().__init__()
        # Longest first, so a secret that contains another is masked whole.
        self.secrets = sorted(set(secrets), key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = _BEARER.sub(r"\1***", message)
        for secret in self.secrets:
            cleaned = cleaned.replace(secret, "***")
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
    for handler in root.handlers + logging.getLogger("gunicorn.error").handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(redact)
    logging.getLogger("flux_worker").setLevel(level)
    if root.level == logging.NOTSET or root.level > logging.getLevelName(level):
        root.setLevel(level)
    # urllib3 logs full URLs at DEBUG; keep it quiet unless asked.
    logging.getLogger("urllib3").setLevel(max(logging.INFO, logging.getLevelName(level)))
