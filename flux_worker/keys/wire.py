"""The admin API's wire formats for run-time keys: what a create or change sends, and the
key object every answer shows (never the secret, except once in the create's answer)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..config.values import RateLimit
from ..cost.terms import KeyTerms
from .records import IssuedKey

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Amount = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Unix = Annotated[int, Field(ge=0, le=253402300799)]   # up to year 9999
Days = Annotated[float, Field(gt=0, le=36500, allow_inf_nan=False)]
ModelIds = Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=200)]],
                     Field(min_length=1, max_length=100)]


class KeyChange(BaseModel):
    """PATCH /v1/admin/keys/{id}: the fields to change; `null` clears a limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name | None = Field(None, description="A name to recognise the key by (who has it).")
    daily_neurons: Amount | None = Field(
        None, description="The key's daily budget in neurons (replaces KEY_DAILY_NEURONS).")
    daily_usd: Amount | None = Field(
        None, description="The key's daily budget in US dollars (replaces KEY_DAILY_USD).")
    rate_limit: RateLimit | None = Field(
        None, description="The key's rate limit in images, such as `10/minute;200/day` "
                          "(replaces RATE_LIMIT).")
    models: ModelIds | None = Field(None, description="The model ids the key may use.")
    expires_at: Unix | None = Field(None, description="When the key stops working (unix s).")
    expires_in_days: Days | None = Field(
        None, description="Or: how many days from now the key stops working.")


class KeyCreate(KeyChange):
    """POST /v1/admin/keys: a new key; only `name` is required."""

    name: Name = Field(description="A name to recognise the key by (who has it).")


def terms_of(change: KeyChange, current: KeyTerms | None = None) -> KeyTerms:
    """The terms after `change`: the fields it sent (null clears), the rest as they were."""
    kept = current or KeyTerms()
    sent = change.model_fields_set
    rate = change.rate_limit or None
    return KeyTerms(
        daily_neurons=change.daily_neurons if "daily_neurons" in sent else kept.daily_neurons,
        daily_usd=change.daily_usd if "daily_usd" in sent else kept.daily_usd,
        rate_limit=rate if "rate_limit" in sent else kept.rate_limit,
        models=tuple(dict.fromkeys(change.models)) if change.models is not None
        else (None if "models" in sent else kept.models))


def expiry_of(change: KeyChange, now: int, current: int | None = None) -> int | None:
    """The expiry after `change`: `expires_in_days` from now, `expires_at`, or as it was."""
    if change.expires_in_days is not None:
        return now + round(change.expires_in_days * 86400)
    if "expires_at" in change.model_fields_set:
        return change.expires_at
    return current


def key_object(key: IssuedKey, now: float) -> dict[str, Any]:
    """A key as the admin API shows it: its terms and state, never its secret or hash."""
    terms = key.terms
    return {"id": key.id, "object": "api_key", "name": key.name, "prefix": key.prefix,
            "owner": key.owner, "created": key.created, "expires_at": key.expires_at,
            "revoked_at": key.revoked_at, "status": key.status(now),
            "daily_neurons": terms.daily_neurons, "daily_usd": terms.daily_usd,
            "rate_limit": terms.rate_limit,
            "models": list(terms.models) if terms.models is not None else None}
