"""Who is calling: the Bearer key, read once per request, and whom the rate limits count.

The Authorization header is parsed once per request (`presented_key`, kept in `g`); the key
check (`KeyRing.check`: API_KEY's keys and the run-time ones), the admin check, the rate-limit
identity and the budget key all read that one value. The /mcp mount, which runs without Flask,
parses its request's header once with `bearer_of_header` and calls the same `KeyRing.check`.
"""

from __future__ import annotations

from flask import g, request
from werkzeug.datastructures import Authorization

from ..auth import key_matches
from ..cost.terms import KeyTerms
from .context import services


def presented_key() -> str | None:
    """The Bearer token this request presents, parsed from its header on the first call only."""
    if "bearer" not in g:
        g.bearer = bearer_token(request.authorization)
    return g.bearer


def require_api_key() -> None:
    """Raise AuthenticationError unless the request presents a key this service takes
    (API_KEY's or a run-time key; none on an open service): the one check, `KeyRing.check`."""
    access = services().keyring.check(presented_key())
    # Set only once the key passed: a refused key never becomes an identity or a budget.
    g.api_key = access.key
    g.key_terms = access.terms
    if access.key:
        prove_key()


def prove_key() -> None:
    """Record that this request proved a configured key (ADMIN_API_KEY or an API_KEY).

    Errors then answer it in full: a storage error may name its host (`errors.public_error`).
    """
    g.key_proved = True


def prove_presented_key() -> None:
    """On an open route: prove the request's key when it is a configured one (API_KEY or
    ADMIN_API_KEY), so errors answer it in full; any other key, or none, stays anonymous.

    Probes and scrapers send no key and must never get a 401, so nothing here refuses.
    """
    config = services().config
    keys = config.api_keys + ((config.admin_api_key,) if config.admin_api_key else ())
    token = presented_key()
    if keys and token and key_matches(keys, token):
        prove_key()


def key_proved() -> bool:
    """Whether this request proved a configured key (see `prove_key`)."""
    return bool(g.get("key_proved"))


def bearer_token(auth: Authorization | None) -> str | None:
    """The Bearer token of a parsed Authorization header; anything else counts as no key."""
    token = auth.token if auth is not None and auth.type == "bearer" else None
    return token.strip() if token else None


def bearer_of_header(header: str | None) -> str | None:
    """The Bearer token of a raw Authorization header value (no Flask: the /mcp mount)."""
    return bearer_token(Authorization.from_header(header))


def caller_identity() -> str:
    """Whom rate limits count: the checked key, else (an open service) the client address."""
    return g.get("api_key") or request.remote_addr or "anonymous"


def caller_key() -> str | None:
    """Whose budget a generation counts against: the checked key, if any."""
    return g.get("api_key")


def caller_terms() -> KeyTerms | None:
    """A run-time key's own limits and models (None: the configured settings apply)."""
    return g.get("key_terms")
