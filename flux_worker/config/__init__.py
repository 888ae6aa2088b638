"""Configuration: every environment variable declared once, read once at start.

variables.py declares each variable as a field of `Config`, with its default and help; values.py
holds the parsers of each kind of value. `Config.from_env()` is the only place that reads the
environment, and a bad value raises `ConfigError` naming the variable, so the service refuses to
start instead of failing per request. `VARIABLES` (name, default, help of each variable) is
derived from the declaration; docs/configuration.md's table is checked against it.

Importing this package loads neither Flask, Pillow nor prometheus_client.
"""

from .values import FALSE_WORDS, TRUE_WORDS, ConfigError
from .variables import (
    BACKENDS,
    DEFAULT_CF_API_BASE,
    DEFAULT_FLUX_MODEL,
    DEFAULT_TRANSLATE_MODEL,
    IMAGE_LINK_MODES,
    LANGUAGES,
    VARIABLES,
    Config,
    Variable,
    default_max_inflight,
)

__all__ = ["BACKENDS", "DEFAULT_CF_API_BASE", "DEFAULT_FLUX_MODEL", "DEFAULT_TRANSLATE_MODEL",
           "FALSE_WORDS", "IMAGE_LINK_MODES", "LANGUAGES", "TRUE_WORDS", "VARIABLES", "Config",
           "ConfigError", "Variable", "default_max_inflight"]
