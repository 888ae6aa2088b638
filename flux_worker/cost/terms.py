"""What one run-time key may spend and use: the terms the admin gave it (keys/).

A leaf value type: admission reads the rate limit, the books read the daily budgets and the
planner reads the models, so it lives below all three. A key from API_KEY has no terms: the
configured RATE_LIMIT, KEY_DAILY_* and KEY_BUDGETS apply to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ledgers import USD, Unit


@dataclass(frozen=True)
class KeyTerms:
    """A run-time key's own limits; None in a field: the configured setting applies."""

    daily_neurons: float | None = None      # replaces KEY_DAILY_NEURONS for this key
    daily_usd: float | None = None          # replaces KEY_DAILY_USD for this key
    rate_limit: str | None = None           # replaces RATE_LIMIT for this key (`10/minute`)
    models: tuple[str, ...] | None = None   # the model ids it may use; None: every model

    def budget(self, unit: Unit) -> float | None:
        """The key's own daily budget in `unit`, or None."""
        return self.daily_usd if unit is USD else self.daily_neurons

    def allows(self, model_id: str) -> bool:
        """Whether the key may draw with `model_id`."""
        return self.models is None or model_id in self.models
