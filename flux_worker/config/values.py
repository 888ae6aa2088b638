"""How each kind of variable is read: the parsers that variables.py attaches to its fields.

A parser gets the variable's text, stripped (a blank value has already become the default, unless
the variable is marked BLANK_MEANS_NONE), and returns the typed value. On a bad value it raises
ValueError with the rest of a sentence whose subject is the variable ("must be a whole number,
got 'x'"); `config_error` puts the variable's name in front. So every message a user sees names
the variable to fix and says what to set, and none carries pydantic's own wording.

Parsers that need `cost/` import it when called: cost/ loads prometheus_client, and importing the
configuration loads neither it, Flask nor Pillow (bench/run.py imports it for VARIABLES alone).
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Annotated, Callable
from urllib.parse import urlsplit

from pydantic import PlainValidator, ValidationError

from ..storage.location import CountersLocation, StorageLocation

if TYPE_CHECKING:
    from ..cost.accounts import Account

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


class _BlankMeansNone:
    """Marks a variable whose blank value means "none" rather than its default."""

    def __repr__(self) -> str:
        return "BLANK_MEANS_NONE"


# In a field's Annotated type: `TRUSTED_PROXIES=` trusts no proxy, while unset trusts loopback.
BLANK_MEANS_NONE = _BlankMeansNone()


def config_error(exc: ValidationError) -> ConfigError:
    """The first problem pydantic found, worded for the person starting the service."""
    problem = exc.errors()[0]
    cause = (problem.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):
        return cause  # a check across variables: already a whole sentence
    name = ".".join(str(part) for part in problem["loc"])  # the variable: the field's alias
    if isinstance(cause, ValueError):
        return ConfigError(f"{name} {cause}")
    # Only a field declared without a parser of its own gets here; its input may be a secret.
    return ConfigError(f"{name} cannot be read: set it as docs/configuration.md says")


# ---- numbers ---------------------------------------------------------------------------------

def read_whole(text: str, minimum: int, maximum: int) -> int:
    """A whole number from `minimum` to `maximum`."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"must be a whole number, got {text!r}") from None
    if not minimum <= value <= maximum:
        raise ValueError(f"must be between {minimum} and {maximum}, got {value}")
    return value


def whole(minimum: int, maximum: int) -> PlainValidator:
    """The parser of a whole number from `minimum` to `maximum`."""
    return PlainValidator(lambda text: read_whole(text, minimum, maximum))


def seconds(minimum: float, maximum: float) -> PlainValidator:
    """The parser of a duration in seconds from `minimum` to `maximum`."""

    def read(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"must be a number of seconds, got {text!r}") from None
        if not minimum <= value <= maximum:
            raise ValueError(f"must be between {minimum:g} and {maximum:g}, got {text}")
        return value

    return PlainValidator(read)


def _budget(parse_name: str, wording: str) -> Callable[[str], float | None]:
    """A daily budget's parser (cost/budgets.py's `parse_name`): blank is none."""

    def read(text: str) -> float | None:
        if not text:
            return None
        from ..cost import budgets

        try:
            return float(getattr(budgets, parse_name)(text, "budget"))
        except ValueError:
            raise ValueError(f"must be a daily budget in {wording}; got {text!r}") from None

    return read


_neurons = _budget("parse_neurons", "neurons, 0 or more, such as 10000")
_dollars = _budget("parse_dollars", "US dollars, 0 or more, such as 5 or $2.50")


def _price(text: str) -> float:
    from ..cost.budgets import parse_dollars

    try:
        return parse_dollars(text or "0", "price")
    except ValueError:
        raise ValueError(f"must be a price in US dollars, 0 or more, such as 0.002 or $0.01; "
                         f"got {text!r}") from None


# ---- words -----------------------------------------------------------------------------------

def _flag(text: str) -> bool:
    if text.lower() in TRUE_WORDS:
        return True
    if text.lower() in FALSE_WORDS:
        return False
    raise ValueError(f"must be true or false, got {text!r}")


def choose(text: str, allowed: tuple[str, ...]) -> str:
    """One of `allowed`, spelt as there; any case is accepted, and `_` for `-` (zh_cn)."""
    wanted = text.lower().replace("_", "-")
    for value in allowed:
        if value.lower().replace("_", "-") == wanted:
            return value
    raise ValueError(f"must be one of {', '.join(allowed)}, got {text!r}")


def one_of(*allowed: str) -> PlainValidator:
    """The parser of one word out of `allowed`."""
    return PlainValidator(lambda text: choose(text, allowed))


def _names(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _origins(text: str) -> tuple[str, ...]:
    return _names(text) or ("*",)


def _model_names(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(name.lower() for name in _names(text)))
    for name in names:
        if not re.fullmatch(r"[a-z0-9@/._:-]+", name):
            raise ValueError(f"must list model names such as gpt-image-1, got {name!r}")
    return names


# CF_PARTNER_MODELS=true: every partner model of the catalog (kept as this one name).
ALL_MODELS = "*"


def _model_choice(text: str) -> tuple[str, ...]:
    """`true`/`false`, or a comma list of model ids (`openai/gpt-image-2,google/imagen-4`)."""
    if text.lower() in TRUE_WORDS:
        return (ALL_MODELS,)
    if not text or text.lower() in FALSE_WORDS:
        return ()
    return _model_names(text)


def _fallbacks(text: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """`model=alt1,alt2;model2=alt3` -> ((model, (alt1, alt2)), (model2, (alt3,))).

    Names are checked against the catalog when the services are built; here only the shape.
    """
    chains: dict[str, tuple[str, ...]] = {}
    for position, item in enumerate((p.strip() for p in text.split(";")), start=1):
        if not item:
            continue
        model, sep, alternatives = item.partition("=")
        names = _model_names(alternatives)
        if not sep or not model.strip() or not names:
            raise ValueError(f"entry {position} must look like <model>=<alternative>[,<another>]")
        key = _model_names(model)[0]
        if key in chains:
            raise ValueError(f"entry {position} repeats {key!r}: give each model one list")
        chains[key] = names
    return tuple(chains.items())


def _hosts(text: str) -> tuple[str, ...]:
    """`host` or `host:port` entries, lower-cased (PROVIDER_FILE_HOSTS)."""
    hosts = tuple(dict.fromkeys(name.lower() for name in _names(text)))
    for host in hosts:
        if not re.fullmatch(r"(\[[0-9a-f:]+\]|[a-z0-9._-]+)(:[0-9]{1,5})?", host):
            raise ValueError(f"must list hosts such as files.example.com or 127.0.0.1:9000, "
                             f"got {host!r}")
    return hosts


def _proxies(text: str) -> tuple[str, ...]:
    items = _names(text)
    for item in items:
        if item == "*":
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"must list IP addresses or networks (or *), got {item!r}") from None
    return items


# ---- addresses -------------------------------------------------------------------------------

def _http_url(text: str) -> str:
    if not text:
        return ""
    try:
        parts = urlsplit(text)
    except ValueError:  # such as a bracketed IPv6 address left open
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http(s) URL such as https://host/path, got {text!r}")
    return text


def _storage(text: str) -> StorageLocation:
    try:
        return StorageLocation.parse(text)
    except ValueError as exc:
        raise ValueError(f"is invalid: {exc}") from None  # the message hides a password


def read_counters(text: str) -> CountersLocation:
    """A COUNTERS_URL that is set (its default follows STORAGE_URL: see variables.py)."""
    try:
        return CountersLocation.parse(text)
    except ValueError as exc:
        raise ValueError(f"is invalid: {exc}") from None


def _rate_limit(text: str) -> str:
    if not text:
        return text
    from limits import parse_many  # loaded only when limits are set: it takes ~0.1 s

    try:
        # The call cost/throttle.py's RateLimiter makes, so a value accepted here is one it reads.
        parse_many(text.replace(";", ","))
    except ValueError:
        raise ValueError(f"must look like 30/minute;500/day, got {text!r}") from None
    return text


def _categories(text: str) -> frozenset[str]:
    from ..moderation.categories import parse_categories

    return parse_categories(text)


def _accounts(text: str) -> tuple[Account, ...]:
    if not text:
        return ()
    from ..cost.accounts import read_accounts

    # Its messages follow the variable's name ("entry 2 must look like ...") and hold no token.
    return read_accounts(text)


Flag = Annotated[bool, PlainValidator(_flag)]
Names = Annotated[tuple[str, ...], PlainValidator(_names)]
Origins = Annotated[tuple[str, ...], PlainValidator(_origins)]
ModelNames = Annotated[tuple[str, ...], PlainValidator(_model_names)]
Proxies = Annotated[tuple[str, ...], PlainValidator(_proxies)]
ModelChoice = Annotated[tuple[str, ...], PlainValidator(_model_choice)]
Fallbacks = Annotated[tuple[tuple[str, tuple[str, ...]], ...], PlainValidator(_fallbacks)]
Hosts = Annotated[tuple[str, ...], PlainValidator(_hosts)]
Neurons = Annotated[float | None, PlainValidator(_neurons)]
Dollars = Annotated[float | None, PlainValidator(_dollars)]
# A price in US dollars, 0 or more (empty: 0).
UsdAmount = Annotated[float, PlainValidator(_price)]
# An http(s) URL or nothing; a BaseURL loses its trailing slashes, as paths are appended to it.
HttpURL = Annotated[str, PlainValidator(_http_url)]
BaseURL = Annotated[str, PlainValidator(lambda text: _http_url(text).rstrip("/"))]
Storage = Annotated[StorageLocation, PlainValidator(_storage)]
RateLimit = Annotated[str, PlainValidator(_rate_limit)]
# Moderation categories (MODERATION_LOW), by id, Llama Guard code or OpenAI name.
Categories = Annotated[frozenset[str], PlainValidator(_categories)]
# `Account` is named as a string: variables.py resolves it when the configuration is first read.
Accounts = Annotated["tuple[Account, ...]", PlainValidator(_accounts)]

