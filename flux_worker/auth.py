"""Client keys: whether a presented Bearer token is one of the configured API keys (no Flask)."""

from __future__ import annotations

import hmac


def key_matches(keys: tuple[str, ...], token: str | None) -> bool:
    """Tell whether `token` is one of `keys`, in constant time whichever key nearly matched."""
    if not token:
        return False
    presented = token.encode("utf-8", "surrogatepass")
    matched = False
    # Compare against every key so the time taken does not tell which one nearly matched.
    for key in keys:
        matched |= hmac.compare_digest(presented, key.encode("utf-8", "surrogatepass"))
    return matched
