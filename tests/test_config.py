"""Configuration: defaults, aliases, validation that names the variable, README coverage."""

from __future__ import annotations

import os
import pathlib
import re

import pytest

from flux_worker.config import VARIABLES, Config, ConfigError

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


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


def test_readme_documents_every_variable():
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    table = set(re.findall(r"^\|\s*`([A-Z][A-Z0-9_]+)`\s*\|", section, re.M))
    names = {v.name for v in VARIABLES}
    assert names - table == set(), "variables missing from the README table"
    assert table - names - {"PORT", "HOST", "WEB_CONCURRENCY", "GUNICORN_THREADS"} == set(), \
        "README documents variables the code does not read"
