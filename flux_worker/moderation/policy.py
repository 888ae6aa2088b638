"""The server's moderation rule: judge a prompt, refuse what is flagged, say why, count it.

`Moderation.check` runs before any paid image call (generation/pipeline.py: the user's prompt
before translation, the translated prompt after it). A flagged prompt is a 400
content_policy_violation that names the categories in words; nothing is drawn or stored and
the reserved budget is given back. `moderation: "low"` (OpenAI's request field) lets through
only what MODERATION_LOW lists. A service that cannot judge follows MODERATION_ON_ERROR: refuse
(503) or let through with a WARNING, each counted; never a silent pass. No Flask here.
"""

from __future__ import annotations

import logging

from .. import metrics
from ..errors import ModerationRefused, ModerationUnavailable
from .categories import in_words
from .checkers import Checker, CheckFailed

log = logging.getLogger(__name__)

REFUSE, ALLOW = "refuse", "allow"          # MODERATION_ON_ERROR's values


class Moderation:
    """A moderation service and what this server makes of its verdicts."""

    def __init__(self, checker: Checker, *, low_allows: frozenset[str] = frozenset(),
                 on_error: str = REFUSE):
        self.checker = checker
        self.low_allows = low_allows
        self.on_error = on_error

    def check(self, text: str, *, low: bool = False) -> None:
        """Raise ModerationRefused when `text` is flagged (`low`: the request asked for
        `moderation: "low"`), ModerationUnavailable when the service cannot judge and failures
        refuse."""
        if not text.strip():
            return
        try:
            flagged = self.checker.flagged(text)
        except CheckFailed as exc:
            self._failed(exc)
            return
        refused = tuple(c for c in flagged if not (low and c in self.low_allows))
        for category in flagged:
            outcome = "refused" if category in refused else "relaxed"
            metrics.MODERATION.labels(outcome, category).inc()
        if not flagged:
            metrics.MODERATION.labels("passed", "-").inc()
        if refused:
            log.info("moderation refused a prompt: %s", ", ".join(refused))
            raise ModerationRefused(
                f"This prompt was refused by this server's moderation: {in_words(refused)}. "
                "Nothing was drawn and nothing was charged; change the prompt and try again.",
                categories=refused)

    def _failed(self, exc: CheckFailed) -> None:
        if self.on_error == ALLOW:
            metrics.MODERATION.labels("error_allowed", "-").inc()
            log.warning("moderation could not judge a prompt (%s); let through, as "
                        "MODERATION_ON_ERROR=allow says", exc)
            return
        metrics.MODERATION.labels("error_refused", "-").inc()
        log.warning("moderation could not judge a prompt (%s); refused, as "
                    "MODERATION_ON_ERROR=refuse says", exc)
        raise ModerationUnavailable(
            "This server checks prompts before drawing, and its moderation service cannot "
            "answer now, so nothing was drawn or charged. Try again shortly.", retry_after=5)
