"""Configuration: defaults, aliases, validation that names the variable, documentation coverage."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest
from pydantic import AliasChoices

from flux_worker.config import VARIABLES, Config, ConfigError, default_max_inflight

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The full variable table: the table under "## All variables" of the configuration page.
CONFIGURATION = ROOT / "docs" / "configuration.md"
TABLE_HEADING = "\n## All variables"


def test_defaults_match_the_worker():
    cfg = Config.from_env({})
    assert cfg.image_backend == "demo" and not cfg.auth_required
    assert cfg.flux_num_steps == 4 and cfg.image_expiration == 1800
    assert cfg.flux_model == "@cf/black-forest-labs/flux-1-schnell"
    assert cfg.translate is False and cfg.language == "en"
    assert cfg.storage.scheme == "disk" and cfg.storage.path == os.path.abspath("data")
    assert cfg.cf_api_base == "https://api.cloudflare.com/client/v4"


def test_keys_and_alias():
    cfg = Config.from_env({"API_KEY": " a1234, b5678 ,", "PROMPT_OPTIMIZATION": "true",
                           "EXTERNAL_API_BASE": "http://llm", "EXTERNAL_MODEL": "m"})
    assert cfg.api_keys == ("a1234", "b5678") and cfg.translate
    # CF_IS_TRANSLATE wins over its alias.
    both = Config.from_env({"CF_IS_TRANSLATE": "false", "PROMPT_OPTIMIZATION": "true"})
    assert not both.translate


def test_credentials_select_cloudflare_and_require_api_key():
    env = {"CF_ACCOUNT_ID": "a", "CF_API_TOKEN": "t"}
    with pytest.raises(ConfigError, match="API_KEY"):
        Config.from_env(env)
    assert Config.from_env(dict(env, API_KEY="k")).image_backend == "cloudflare"
    with pytest.raises(ConfigError, match="CF_API_TOKEN"):
        Config.from_env({"CF_ACCOUNT_ID": "a", "API_KEY": "k"})


@pytest.mark.parametrize("name,value", [
    ("FLUX_NUM_STEPS", "abc"), ("FLUX_NUM_STEPS", "0"), ("IMAGE_EXPIRATION", "-5"),
    ("CF_IS_TRANSLATE", "maybe"), ("STORAGE_URL", "ftp://x"), ("STORAGE_URL", "disk://"),
    ("LANGUAGE", "klingon"), ("UPSTREAM_TIMEOUT", "soon"), ("PUBLIC_BASE_URL", "example.com"),
    ("CF_API_BASE", "not a url"), ("TRUSTED_PROXIES", "somewhere"), ("RATE_LIMIT", "lots"),
    ("IMAGE_BACKEND", "dalle"), ("MAX_IMAGES", "11"), ("UPSTREAM_RETRIES", "-1"),
])
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        Config.from_env({name: value})


def test_unknown_model_stops_the_start():
    from flux_worker.services import build_models
    with pytest.raises(ConfigError, match="IMAGE_MODELS"):
        build_models(Config.from_env({"IMAGE_MODELS": "flux-1-schnell,nope"}))
    with pytest.raises(ConfigError, match="FLUX_MODEL"):
        build_models(Config.from_env({"FLUX_MODEL": "nope"}))


def test_secrets_are_listed_for_redaction():
    cfg = Config.from_env({"API_KEY": "client-key-1", "CF_ACCOUNT_ID": "a",
                           "CF_API_TOKEN": "cf-token-1"})
    assert set(cfg.secrets()) >= {"client-key-1", "cf-token-1"}


def _variables_section() -> str:
    """The configuration page's section that holds the full variable table."""
    text = CONFIGURATION.read_text(encoding="utf-8")
    return text.split(TABLE_HEADING, 1)[1].split("\n## ", 1)[0]


def test_the_configuration_page_documents_every_variable():
    table = set(re.findall(r"^\|\s*`([A-Z][A-Z0-9_]+)`\s*\|", _variables_section(), re.M))
    names = {v.name for v in VARIABLES}
    assert names - table == set(), "variables missing from docs/configuration.md's table"
    assert table - names - {"PORT", "HOST", "WEB_CONCURRENCY", "GUNICORN_THREADS"} == set(), \
        "docs/configuration.md documents variables the code does not read"


def _table_rows() -> dict[str, tuple[str, str]]:
    """The full variable table: variable -> (default cell, meaning cell)."""
    rows = re.findall(r"^\|\s*`([A-Z][A-Z0-9_]+)`\s*\|(.*?)\|(.*)\|\s*$", _variables_section(),
                      re.M)
    return {name: (default.strip(), meaning.strip()) for name, default, meaning in rows}


def test_the_declaration_is_the_documented_table():
    # One declaration (config/variables.py) gives each variable's default and help; the
    # configuration page shows both, so a default or a help text changed in one place only
    # fails here.
    rows = _table_rows()
    threads = int(next(v.default for v in VARIABLES if v.name == "GUNICORN_THREADS"))
    for variable in VARIABLES:
        assert variable.name in rows, f"{variable.name} is missing from the variable table"
        default, meaning = rows[variable.name]
        expected = f"`{variable.default}`" if variable.default else ""
        if variable.name == "MAX_INFLIGHT":  # its default follows GUNICORN_THREADS
            expected = f"`GUNICORN_THREADS` minus an eighth (`{default_max_inflight(threads)}`)"
        assert default == expected, variable.name
        assert meaning == variable.help, variable.name


def test_variables_come_from_the_fields_of_config():
    declared = []
    for field in Config.model_fields.values():
        alias = field.validation_alias
        declared += alias.choices if isinstance(alias, AliasChoices) else [alias]
    assert [v.name for v in VARIABLES] == declared
    assert all(v.help for v in VARIABLES)


@pytest.mark.parametrize("variable", VARIABLES, ids=lambda v: v.name)
def test_setting_a_default_changes_nothing(variable):
    # The default is the text a user would set, read the way a set value is.
    assert Config.from_env({variable.name: variable.default}) == Config.from_env({})


def test_only_the_given_environment_is_read(monkeypatch):
    monkeypatch.setenv("FLUX_NUM_STEPS", "9")
    monkeypatch.setenv("CF_ACCOUNT_ID", "account")
    cfg = Config.from_env({})
    assert cfg.flux_num_steps == 4 and cfg.image_backend == "demo"


def test_blank_means_the_default_except_where_it_means_none():
    cfg = Config.from_env({"FLUX_MODEL": "  ", "MAX_IMAGES": "", "TRUSTED_PROXIES": " ",
                           "EDIT_MODEL": "", "GPT_IMAGE_ALIASES": ""})
    assert cfg.flux_model == "@cf/black-forest-labs/flux-1-schnell" and cfg.max_images == 4
    assert cfg.trusted_proxies == () and cfg.edit_model == "" and cfg.gpt_image_aliases == ()
    # A blank CF_IS_TRANSLATE is still the one read: its alias does not take over.
    assert not Config.from_env({"CF_IS_TRANSLATE": "", "PROMPT_OPTIMIZATION": "true"}).translate


def test_values_that_follow_from_others():
    assert Config.from_env({"GUNICORN_THREADS": "64"}).max_inflight == 56
    assert Config.from_env({"GUNICORN_THREADS": "64", "MAX_INFLIGHT": "0"}).max_inflight == 0
    assert Config.from_env({"STORAGE_URL": "memory://"}).counters.scheme == "memory"
    with pytest.raises(ConfigError, match="^GUNICORN_THREADS"):
        Config.from_env({"GUNICORN_THREADS": "many"})


@pytest.mark.parametrize("env, message", [
    ({"FLUX_NUM_STEPS": "abc"}, "FLUX_NUM_STEPS must be a whole number, got 'abc'"),
    ({"MAX_IMAGES": "11"}, "MAX_IMAGES must be between 1 and 10, got 11"),
    ({"UPSTREAM_TIMEOUT": "soon"}, "UPSTREAM_TIMEOUT must be a number of seconds, got 'soon'"),
    ({"PROMPT_OPTIMIZATION": "maybe"}, "PROMPT_OPTIMIZATION must be true or false, got 'maybe'"),
    ({"LOG_LEVEL": "loud"}, "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, got 'loud'"),
    ({"CF_API_BASE": "http://[::1"}, "CF_API_BASE must be an http(s) URL"),
    ({"STORAGE_URL": "ftp://x"}, "STORAGE_URL is invalid: unknown storage URL 'ftp://x'"),
    ({"DAILY_NEURONS": "-5"}, "DAILY_NEURONS must be a daily budget in neurons"),
])
def test_messages_name_the_variable_in_the_services_words(env, message):
    with pytest.raises(ConfigError) as caught:
        Config.from_env(env)
    assert str(caught.value).startswith(message)
    assert "alidation error" not in str(caught.value) and "Value error" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize("value", ["30/minute;500/day", "5 per 2 hours", "1/second|10/minute"])
def test_rate_limit_accepts_what_the_limiter_reads(value):
    from flux_worker.cost.throttle import RateLimiter

    cfg = Config.from_env({"RATE_LIMIT": value, "STORAGE_URL": "memory://"})
    assert RateLimiter(cfg.rate_limit, cfg.counters).items


@pytest.mark.parametrize("value", ["lots", "30/minute,,", "1/fortnight", "30/minute garbage"])
def test_rate_limit_refuses_what_the_limiter_cannot_read(value):
    with pytest.raises(ConfigError, match="RATE_LIMIT must look like 30/minute;500/day"):
        Config.from_env({"RATE_LIMIT": value})


def test_secrets_stay_out_of_the_repr():
    cfg = Config.from_env({"API_KEY": "sk-client-secret", "AWS_SECRET_ACCESS_KEY": "aws-secret",
                           "CF_ACCOUNTS": "acct:cf-secret-token", "ADMIN_API_KEY": "admin-secret"})
    for secret in ("sk-client-secret", "aws-secret", "cf-secret-token", "admin-secret"):
        assert secret not in repr(cfg) and secret in cfg.secrets()


def test_importing_the_configuration_loads_no_web_imaging_or_metrics_library():
    script = ("import sys, flux_worker.config\n"
              "loaded = sorted({'flask', 'PIL', 'prometheus_client'} & set(sys.modules))\n"
              "assert not loaded, loaded\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
