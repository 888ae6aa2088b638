"""The start-up warning about a demo open to the network (serving/startup.py, gunicorn_settings)."""

from __future__ import annotations

import logging
import pathlib
import runpy
import types

import pytest
from gunicorn.config import Config as GunicornConfig

from flux_worker.config import Config
from flux_worker.serving.startup import exposure_warning

DEMO = Config.from_env({})
KEYED = Config.from_env({"API_KEY": "sk-one"})


@pytest.mark.parametrize("address, shown", [
    (("0.0.0.0", 8000), "0.0.0.0:8000"),
    (("::", 8000), "[::]:8000"),
    (("", 9000), ":9000"),            # gunicorn's ":9000": every interface as well
    (("0:0:0:0:0:0:0:0", 8000), "[0:0:0:0:0:0:0:0]:8000"),
])
def test_every_interface_without_a_key_warns_and_names_the_fix(address, shown):
    message = exposure_warning([address], DEMO)
    assert message is not None
    assert f"Listening on {shown} " in message
    assert "Set API_KEY" in message and "HOST=127.0.0.1" in message


@pytest.mark.parametrize("address", [
    ("127.0.0.1", 8000), ("::1", 8000), ("localhost", 8000), ("10.1.2.3", 8000),
    "/run/flux-worker.sock", 3,        # a Unix socket, an inherited file descriptor
])
def test_a_local_or_chosen_address_does_not_warn(address):
    assert exposure_warning([address], DEMO) is None


def test_a_key_silences_the_warning():
    assert exposure_warning([("0.0.0.0", 8000)], KEYED) is None


def test_only_the_open_addresses_are_named():
    message = exposure_warning([("127.0.0.1", 8000), ("::", 8001)], DEMO)
    assert message is not None and "[::]:8001" in message and "127.0.0.1:8000" not in message


def start_logs(bind: str, env: dict[str, str], tmp_path, monkeypatch, caplog) -> list[str]:
    """Run gunicorn's on_starting hook for `bind` and `env`; the warnings it logged."""
    for name in ("API_KEY", "CF_ACCOUNT_ID", "CF_API_TOKEN", "CF_ACCOUNTS", "IMAGE_BACKEND",
                 "HOST", "WEB_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STORAGE_URL", f"disk://{tmp_path / 'images'}")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # Run afresh: the module reads the environment when it is loaded, as under gunicorn.
    settings = runpy.run_module("flux_worker.serving.gunicorn_settings")
    cfg = GunicornConfig()
    cfg.set("bind", [bind])
    log = logging.getLogger("test.gunicorn.error")
    server = types.SimpleNamespace(cfg=cfg, log=log, master_pid=0)
    with caplog.at_level(logging.WARNING, logger=log.name):
        settings["on_starting"](server)
    return [r.getMessage() for r in caplog.records
            if r.name == log.name and r.levelno == logging.WARNING]


def test_gunicorn_logs_the_warning_for_an_open_demo(tmp_path, monkeypatch, caplog):
    warnings = start_logs("0.0.0.0:8000", {}, tmp_path, monkeypatch, caplog)
    assert [w for w in warnings if "without API_KEY" in w and "HOST=127.0.0.1" in w]


def test_gunicorn_stays_quiet_on_loopback_or_with_a_key(tmp_path, monkeypatch, caplog):
    assert not [w for w in start_logs("127.0.0.1:8000", {}, tmp_path, monkeypatch, caplog)
                if "without API_KEY" in w]
    caplog.clear()
    assert not [w for w in start_logs("0.0.0.0:8000", {"API_KEY": "sk-one"}, tmp_path,
                                      monkeypatch, caplog) if "without API_KEY" in w]


def test_the_documentation_quotes_the_warning_as_logged():
    quoted = "Listening on 0.0.0.0:8000 (every network interface) without API_KEY"
    message = exposure_warning([("0.0.0.0", 8000)], DEMO)
    assert message is not None and message.startswith(quoted)
    docs = pathlib.Path(__file__).resolve().parent.parent / "docs"
    for page in ("configuration.md", "deployment.md", "operations.md"):
        text = " ".join((docs / page).read_text(encoding="utf-8").split())
        assert quoted in text, page
