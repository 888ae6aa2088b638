"""Who is calling: the Bearer key, read once per request, and whom the rate limits count."""

from __future__ import annotations

from flask import g, request
from werkzeug.datastructures import Authorization

from ..auth import key_matches
from ..errors import AuthenticationError
from .context import services


def require_api_key() -> None:
    """Read the Bearer key once per request; raise AuthenticationError unless it is configured."""
    g.api_key = bearer_token(request.authorization)
    check_api_key(services().config.api_keys, g.api_key)


def bearer_token(auth: Authorization | None) -> str | None:
    """The Bearer token of a parsed Authorization header; anything else counts as no key."""
    token = auth.token if auth is not None and auth.type == "bearer" else None
    return token.strip() if token else None


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


def caller_identity() -> str:
    """Whom rate limits count: the API key when keys are configured, else the client address."""
    if services().config.api_keys and getattr(g, "api_key", None):
        return g.api_key
    return request.remote_addr or "anonymous"


def caller_key() -> str | None:
    """Whose budget a generation counts against: the API key when keys are configured."""
    if services().config.api_keys:
        return getattr(g, "api_key", None)
    return None
