"""The container files read as text: Dockerfile, .dockerignore, compose.yaml and its env files.

tests/e2e/test_container.py builds and runs the image; here the files are tied to the code
(every variable exists and its value passes the service's own check, the command is the
Procfile's, the grace period covers gunicorn's) and compose.yaml is checked by Debian's
`docker-compose` (1.29, which reads profiles and validates the file against the Compose
specification's schema it carries) with each profile and its env file. Without docker-compose
that check skips, unless FLUX_REQUIRE_CONTAINER=1 (CI), where it fails.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

from flux_worker.config import VARIABLES, Config

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"
ENV_FILES = {"redis": ROOT / "deploy/compose/redis.env", "minio": ROOT / "deploy/compose/minio.env"}
# Read by gunicorn's settings, not by Config.
GUNICORN_VARIABLES = {"PORT", "HOST", "WEB_CONCURRENCY", "GUNICORN_THREADS"}
KNOWN = {v.name for v in VARIABLES} | GUNICORN_VARIABLES
# compose.yaml's own interpolation variables (ports), not the service's.
COMPOSE_VARIABLES = {"FLUX_WORKER_PORTS", "FLUX_WORKER_BIND"}
GRACEFUL_TIMEOUT = 130  # gunicorn's graceful_timeout with the default UPSTREAM_TIMEOUT (120 + 10)


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of each Dockerfile line, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1])
            for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _env_file(path: pathlib.Path) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#")]
    return {key: value for key, value in pairs}


def test_dockerfile_runs_the_procfile_command_as_a_user_with_a_volume():
    lines = _dockerfile()
    instructions = [name for name, _ in lines]
    assert lines[0] == ("ARG", "BASE=python:3.13-slim")
    assert instructions.count("FROM") == 2, "a build stage and the image"
    assert all(args.startswith("${BASE}") for name, args in lines if name == "FROM")
    final = lines[max(i for i, name in enumerate(instructions) if name == "FROM"):]
    last = {name: args for name, args in final}
    procfile = (ROOT / "Procfile").read_text(encoding="utf-8").split(":", 1)[1].split()
    assert yaml.safe_load(last["CMD"]) == procfile
    assert last["USER"] not in ("root", "0")
    assert last["STOPSIGNAL"] == "SIGTERM"
    assert last["VOLUME"] == "/data"
    assert "/healthz" in last["HEALTHCHECK"] and "urllib" in last["HEALTHCHECK"]
    env = dict(re.findall(r"(\w+)=(\S+)", last["ENV"]))
    assert env["STORAGE_URL"] == "disk:///data" and env["HOST"] == "0.0.0.0"
    assert set(env) - {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"} <= KNOWN
    # The image's defaults are a configuration the service accepts.
    Config.from_env({k: v for k, v in env.items() if k in KNOWN - GUNICORN_VARIABLES})


def test_dockerignore_keeps_secrets_virtualenvs_and_data_out():
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    for needed in (".env", ".env.*", ".venv*", "data/", ".git", "node_modules/",
                   "**/node_modules/"):
        assert needed in patterns, needed


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def test_compose_services_profiles_and_their_settings():
    services = _compose()["services"]
    assert set(services) == {"flux-worker", "redis", "minio", "minio-bucket"}
    worker = services["flux-worker"]
    # `docker compose up` starts the service alone; each profile adds its own.
    assert "profiles" not in worker
    assert services["redis"]["profiles"] == ["redis"]
    assert services["minio"]["profiles"] == services["minio-bucket"]["profiles"] == ["minio"]
    assert worker["build"] == "."
    assert "/healthz" in " ".join(worker["healthcheck"]["test"])
    assert worker["volumes"] == ["flux-data:/data"]
    assert set(_compose()["volumes"]) == {"flux-data", "minio-data"}
    # No fixed host port for --scale to collide on: a range can be given; this machine only.
    assert worker["ports"] == ["${FLUX_WORKER_BIND:-127.0.0.1}:${FLUX_WORKER_PORTS:-8000}:8000"]
    assert worker["stop_signal"] == "SIGTERM"
    assert int(worker["stop_grace_period"].rstrip("s")) >= GRACEFUL_TIMEOUT
    for name, value in worker["environment"].items():
        assert name in KNOWN, name
        assert value == f"${{{name}:-}}" or name == "STORAGE_URL", (name, value)


def test_env_files_configure_the_service_the_service_accepts():
    for profile, path in ENV_FILES.items():
        values = _env_file(path)
        assert set(values) <= KNOWN | COMPOSE_VARIABLES, path
        # Every setting the file makes reaches the service through compose.yaml.
        passed = set(_compose()["services"]["flux-worker"]["environment"])
        assert set(values) - COMPOSE_VARIABLES <= passed, path
        config = Config.from_env({k: v for k, v in values.items() if k not in COMPOSE_VARIABLES})
        assert config.storage.scheme == {"redis": "redis", "minio": "s3"}[profile]
        # Several replicas share counts (Redis); S3's counters stay on the volume.
        assert config.counters.shared_by_hosts == (profile == "redis")
    minio = _compose()["services"]["minio"]["environment"]
    assert "${AWS_ACCESS_KEY_ID" in minio["MINIO_ROOT_USER"]


def _docker_compose() -> str:
    found = shutil.which("docker-compose")
    if not found:
        if os.environ.get("FLUX_REQUIRE_CONTAINER") == "1":
            pytest.fail("docker-compose not found (FLUX_REQUIRE_CONTAINER=1)", pytrace=False)
        pytest.skip("docker-compose not found: apt-get install docker-compose")
    return found


@pytest.mark.parametrize("profile", [None, "redis", "minio"])
def test_docker_compose_config_accepts_each_profile(profile, tmp_path):
    command = [_docker_compose(), "--project-directory", str(ROOT), "-f", str(COMPOSE)]
    if profile:
        command += ["--profile", profile, "--env-file", str(ENV_FILES[profile])]
    else:  # no .env of the developer's may leak into the check
        empty = tmp_path / "empty.env"
        empty.write_text("")
        command += ["--env-file", str(empty)]
    done = subprocess.run([*command, "config"], capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    # 1.29's `config` lists the services of every profile; which profile starts which service
    # is checked on the YAML above.
    assert set(resolved["services"]) == set(_compose()["services"])
    worker = resolved["services"]["flux-worker"]
    storage = worker["environment"]["STORAGE_URL"]
    assert storage == {None: "disk:///data", "redis": "redis://redis:6379/0",
                       "minio": "s3://flux-images/images"}[profile]
    published = "8000-8002" if profile == "redis" else "8000"
    assert worker["ports"] == [f"127.0.0.1:{published}:8000/tcp"]
