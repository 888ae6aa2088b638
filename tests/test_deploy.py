"""The deploy files: render.yaml, app.json, .python-version, the systemd unit, the Procfile.

Render's and Heroku's own schemas carry no licence that lets them live in this repository, so the
structure checks below are schemas written here from the platforms' published references
(Render's "Blueprint YAML Reference", Heroku's "app.json Schema"), limited to the fields these
files use and strict about them (no unknown keys, the documented types and values). To check
against the official schema too, download it and point RENDER_SCHEMA or HEROKU_APP_SCHEMA at the
file (Render: https://render.com/schema/render.yaml.json; for app.json, any JSON Schema of it).
The rest ties the files to the code: every variable exists, the values pass the service's own
configuration check, the start command is the Procfile's, the health check path answers.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import jsonschema
import pytest
import yaml

from flux_worker import create_app
from flux_worker.config import VARIABLES, Config

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Read by gunicorn.conf.py, not by Config; the README's table lists them too.
GUNICORN_VARIABLES = {"PORT", "HOST", "WEB_CONCURRENCY", "GUNICORN_THREADS"}
SECRETS = {"API_KEY", "CF_API_TOKEN", "CF_ACCOUNT_ID", "EXTERNAL_API_KEY", "IMAGE_API_KEY",
           "CF_AI_GATEWAY_TOKEN"}

_STR = {"type": "string", "minLength": 1}

# Render Blueprint, the fields used here (types and values from the Blueprint YAML Reference).
RENDER_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["services"],
    "properties": {"services": {"type": "array", "minItems": 1, "items": {
        "type": "object", "additionalProperties": False,
        "required": ["type", "name", "runtime", "buildCommand", "startCommand"],
        "properties": {
            "type": {"enum": ["web", "pserv", "worker", "cron", "keyvalue"]},
            "name": _STR,
            "runtime": {"enum": ["docker", "elixir", "go", "image", "node", "python", "ruby",
                                 "rust", "static"]},
            "plan": {"enum": ["free", "starter", "standard", "pro", "pro plus", "pro max",
                              "pro ultra"]},
            "buildCommand": _STR, "startCommand": _STR,
            "healthCheckPath": {"type": "string", "pattern": "^/"},
            "maxShutdownDelaySeconds": {"type": "integer", "minimum": 1, "maximum": 300},
            "disk": {"type": "object", "additionalProperties": False,
                     "required": ["name", "mountPath"],
                     "properties": {"name": _STR,
                                    "mountPath": {"type": "string", "pattern": "^/"},
                                    "sizeGB": {"type": "integer", "minimum": 1}}},
            "envVars": {"type": "array", "items": {"oneOf": [
                {"type": "object", "additionalProperties": False, "required": ["key", "value"],
                 "properties": {"key": _STR, "value": {"type": "string"}}},
                {"type": "object", "additionalProperties": False, "required": ["key", "sync"],
                 "properties": {"key": _STR, "sync": {"const": False}}},
                {"type": "object", "additionalProperties": False,
                 "required": ["key", "generateValue"],
                 "properties": {"key": _STR, "generateValue": {"const": True}}},
            ]}},
        }}}},
}

# Heroku app.json, the fields used here (from Heroku's app.json Schema reference).
APP_JSON_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["name", "env"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 30},
        "description": _STR,
        "keywords": {"type": "array", "items": _STR},
        "success_url": {"type": "string", "pattern": "^/"},
        "env": {"type": "object", "propertyNames": {"pattern": "^[A-Z][A-Z0-9_]*$"},
                "additionalProperties": {
                    "type": "object", "additionalProperties": False, "required": ["description"],
                    "properties": {"description": _STR, "value": {"type": "string"},
                                   "required": {"type": "boolean"},
                                   "generator": {"enum": ["secret"]}}}},
        "formation": {"type": "object", "additionalProperties": {
            "type": "object", "additionalProperties": False, "required": ["quantity"],
            "properties": {"quantity": {"type": "integer", "minimum": 0},
                           "size": {"enum": ["eco", "basic", "standard-1x", "standard-2x",
                                             "performance-m", "performance-l"]}}}},
        "buildpacks": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["url"],
            "properties": {"url": _STR}}},
    },
}


def render_blueprint() -> dict:
    return yaml.safe_load((ROOT / "render.yaml").read_text(encoding="utf-8"))


def render_service() -> dict:
    (service,) = render_blueprint()["services"]
    return service


def app_json() -> dict:
    return json.loads((ROOT / "app.json").read_text(encoding="utf-8"))


def procfile_command() -> str:
    (line,) = [ln for ln in (ROOT / "Procfile").read_text().splitlines() if ln.strip()]
    kind, command = line.split(":", 1)
    assert kind == "web"
    return command.strip()


def validate(document, schema: dict, official: str) -> None:
    """Check `document` against `schema`, and against the file named by $`official` when set."""
    jsonschema.validate(document, schema)
    if os.environ.get(official):
        path = pathlib.Path(os.environ[official])
        jsonschema.validate(document, json.loads(path.read_text(encoding="utf-8")))


# ---- render.yaml ----

def test_render_yaml_matches_the_blueprint_reference():
    validate(render_blueprint(), RENDER_SCHEMA, "RENDER_SCHEMA")
    broken = render_blueprint()
    broken["services"][0]["envVars"].append({"key": "API_KEY", "sync": True})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, RENDER_SCHEMA)


def test_render_yaml_runs_the_procfile_command_with_a_health_check_and_a_disk():
    service = render_service()
    assert service["type"] == "web" and service["runtime"] == "python"
    assert service["startCommand"] == procfile_command()
    assert service["buildCommand"] == "pip install -r requirements.txt"
    assert service["healthCheckPath"] in ("/readyz", "/healthz")
    env = {e["key"]: e for e in service["envVars"]}
    # The images go to the disk: STORAGE_URL is an absolute disk:// path under its mount.
    storage = env["STORAGE_URL"]["value"]
    assert storage.startswith("disk:///")
    mount = service["disk"]["mountPath"].rstrip("/")
    assert storage[len("disk://"):].startswith(mount + "/")
    # Secrets are asked for at creation, never written here; a disk needs a paid plan.
    for key in SECRETS & env.keys():
        assert env[key].get("sync") is False, key
    assert service["plan"] != "free"


def test_render_health_check_path_answers_ready():
    app = create_app(Config.from_env({"STORAGE_URL": "memory://"}))
    try:
        resp = app.test_client().get(render_service()["healthCheckPath"])
        assert resp.status_code == 200
    finally:
        app.extensions["flux_worker"].close()


# ---- app.json ----

def test_app_json_matches_the_heroku_reference():
    validate(app_json(), APP_JSON_SCHEMA, "HEROKU_APP_SCHEMA")
    broken = app_json()
    broken["env"]["IMAGE_EXPIRATION"]["value"] = 1800  # Heroku wants strings
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, APP_JSON_SCHEMA)


def test_app_json_requires_a_client_key_and_describes_every_variable():
    env = app_json()["env"]
    # A public URL without a key would let anyone spend the account: generated, required.
    assert env["API_KEY"] == {**env["API_KEY"], "generator": "secret", "required": True}
    for key, entry in env.items():
        assert len(entry["description"]) > 20, key
        assert not (key in SECRETS and "value" in entry), f"{key}: a secret needs no default"
    assert app_json()["buildpacks"] == [{"url": "heroku/python"}]


# ---- both platforms ----

@pytest.mark.parametrize("source", ["render.yaml", "app.json"])
def test_every_variable_is_one_the_service_reads_and_the_values_pass_its_check(source):
    if source == "render.yaml":
        values = {e["key"]: e.get("value") for e in render_service()["envVars"]}
    else:
        values = {k: e.get("value") for k, e in app_json()["env"].items()}
    unknown = values.keys() - {v.name for v in VARIABLES} - GUNICORN_VARIABLES
    assert not unknown, f"{source} sets variables the service does not read: {unknown}"
    # The values as the platform starts the service (secrets filled in): the start succeeds.
    env = {k: v for k, v in values.items() if v is not None}
    env.update({"API_KEY": "sk-deploy-test", "CF_ACCOUNT_ID": "account", "CF_API_TOKEN": "token"})
    config = Config.from_env(env)
    assert config.image_backend == "cloudflare" and config.auth_required


def test_python_version_is_one_ci_tests_and_the_readme_allows():
    version = (ROOT / ".python-version").read_text().strip()
    # Both platforms take a major.minor form and pick the newest patch release.
    assert re.fullmatch(r"3\.\d+", version), version
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(rf"\b{re.escape(version)}\b", ci), f".ci/run does not test Python {version}"
    oldest = re.search(r"Python (3\.\d+)\+", (ROOT / "README.md").read_text())
    assert oldest and tuple(map(int, version.split("."))) >= tuple(
        map(int, oldest[1].split(".")))


# ---- systemd ----

UNIT = ROOT / "deploy" / "flux-worker.service"


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_runs_the_procfile_command_as_a_dedicated_user():
    settings = unit_settings()
    assert settings["ExecStart"] == [f"/opt/flux-worker/.venv/bin/{procfile_command()}"]
    assert settings["User"] == ["flux-worker"] and settings["Restart"] == ["on-failure"]
    assert settings["EnvironmentFile"] == ["/etc/flux-worker/env"]
    assert settings["NoNewPrivileges"] == ["yes"] and settings["ProtectSystem"] == ["strict"]
    storage = dict(v.split("=", 1) for v in settings["Environment"])["STORAGE_URL"]
    assert storage.startswith("disk:///var/lib/" + settings["StateDirectory"][0] + "/")


def _systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if os.environ.get("FLUX_REQUIRE_SYSTEMD") == "1":
            pytest.fail("systemd-analyze not found (FLUX_REQUIRE_SYSTEMD=1): "
                        "apt-get install systemd")
        pytest.skip("systemd-analyze not found: apt-get install systemd")
    return tool


def test_unit_passes_systemd_analyze_verify(tmp_path):
    tool = _systemd_analyze()
    # verify checks that ExecStart exists, so the install folder moves to a temporary one with
    # a real gunicorn in it; every other line is verified as written.
    install = tmp_path / "opt" / "flux-worker"
    (install / ".venv" / "bin").mkdir(parents=True)
    gunicorn = pathlib.Path(sys.executable).parent / "gunicorn"
    (install / ".venv" / "bin" / "gunicorn").symlink_to(gunicorn)
    unit = tmp_path / "flux-worker.service"
    unit.write_text(UNIT.read_text().replace("/opt/flux-worker", str(install)))
    result = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60)
    # Unknown keys and bad values are only warnings to verify: any output is a failure here.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr)


def test_unit_hardening_is_rated_ok(tmp_path):
    tool = _systemd_analyze()
    result = subprocess.run([tool, "security", "--offline=yes", str(UNIT)],
                            capture_output=True, text=True, timeout=60)
    level = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert level, result.stdout + result.stderr
    assert float(level[1]) <= 2.0, result.stdout
