"""Who is calling: the Bearer key, read once per request, and whom the rate limits count.

The Authorization header is parsed once per request (`presented_key`, kept in `g`); the key
check, the usage page's admin check, the rate-limit identity and the budget key all read that
one value. The /mcp mount, which runs without Flask, parses its request's header once with
`bearer_of_header` and calls the same Flask-free `check_api_key`, `identity_of` and `budget_key`.
"""

from __future__ import annotations

from flask import g, request
from werkzeug.datastructures import Authorization

from ..auth import key_matches
from ..errors import AuthenticationError
from .context import services


def presented_key() -> str | None:
    """The Bearer token this request presents, parsed from its header on the first call only."""
    if "bearer" not in g:
        g.bearer = bearer_token(request.authorization)
    return g.bearer


def require_api_key() -> None:
    """Raise AuthenticationError unless the request presents one of the configured keys."""
    keys = services().config.api_keys
    token = presented_key()
    check_api_key(keys, token)
    # Set only once the key passed: a refused key never becomes an identity or a budget.
    g.api_key = token
    if keys:
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


def check_api_key(keys: tuple[str, ...], token: str | None) -> None:
    """Raise AuthenticationError unless `token` is one of `keys` (no keys: anyone may call).

    No Flask: the /mcp mount checks its requests with it too.
    """
    if not keys:
        return
    if not token:
        raise AuthenticationError(
            "You didn't provide an API key. Send it in the header `Authorization: Bearer <key>` "
            "(the key is the API_KEY configured on this server).")
    if not key_matches(keys, token):
        raise AuthenticationError(
            "Incorrect API key provided. Use one of the keys in this server's API_KEY, sent as "
            "`Authorization: Bearer <key>`.")


def identity_of(keys: tuple[str, ...], token: str | None, address: str | None) -> str:
    """Whom rate limits count: the checked key when keys are configured, else the address."""
    if keys and token:
        return token
    return address or "anonymous"


def budget_key(keys: tuple[str, ...], token: str | None) -> str | None:
    """Whose budget a generation counts against: the checked key when keys are configured."""
    return token if keys else None


def caller_identity() -> str:
    """Whom rate limits count: the API key when keys are configured, else the client address."""
    return identity_of(services().config.api_keys, g.get("api_key"), request.remote_addr)


def caller_key() -> str | None:
    """Whose budget a generation counts against: the API key when keys are configured."""
    return budget_key(services().config.api_keys, g.get("api_key"))
