"""The container image: the project's Dockerfile built and run with podman, as a user would.

No container registry is reachable on CI machines, so the Dockerfile's base (`ARG BASE`) is made
here from Debian's own packages: `mmdebstrap` a minimal bookworm with its python3 and venv
module into a tarball, `podman import` it, then `podman build --build-arg BASE=<that>` the
unchanged Dockerfile. What only this machine needs goes into that test base, never into the
Dockerfile: the host's CA certificates (package downloads pass a TLS proxy whose CA is in the
host's store) and the host's pip index settings, so `pip install` inside the build works.

The running container is checked from outside: its image settings (user, health check, stop
signal, volume), a chat completion through the official `openai` client against the strict fake
of Cloudflare on the host (reached over slirp4netns' host loopback, 10.0.2.2), the image link
served from inside the container, and a stop that lets a generation in flight finish.

Runs as root (podman's rootful storage; `--isolation chroot` builds, `--runtime runc` runs:
Debian's crun refuses this machine's cgroup mode, and runc wants explicit ulimits). Without
podman, runc or mmdebstrap the test skips, unless FLUX_REQUIRE_CONTAINER=1 (CI), where it fails.
About 100 s: the debootstrap ~30 s, the build ~45 s (pip downloads), the run ~15 s.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid

import openai
import pytest
import requests
from PIL import Image

from harness.fakes import cloudflare
from harness.ports import free_port
from harness.service import API_KEY, CF_ACCOUNT, CF_TOKEN, LLM_KEY
from tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.container]

ROOT = pathlib.Path(__file__).resolve().parents[2]
HOST_CA_DIR = pathlib.Path("/usr/local/share/ca-certificates")
SUITE = "bookworm"
# runc applies the container's limits itself; without explicit ones it fails on these machines.
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
# The container reaches the host's 127.0.0.1 (the fake) at this address, and nothing else of it.
HOST_LOOPBACK = "10.0.2.2"
STOP_TIMEOUT = 60  # seconds `podman stop` waits before SIGKILL; a drain needs far less here
SLOW_GENERATION = 3.0  # seconds the fake takes for the generation in flight during the stop


def _unavailable(reason: str) -> None:
    if os.environ.get("FLUX_REQUIRE_CONTAINER") == "1":
        pytest.fail(f"{reason} (FLUX_REQUIRE_CONTAINER=1)", pytrace=False)
    pytest.skip(reason)


def _run(*args: str, timeout: float = 300, log: pathlib.Path | None = None,
         check: bool = True) -> subprocess.CompletedProcess:
    """Run a command; a failure shows the end of its output (all of it is in `log`)."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if log is not None:
        with log.open("a", encoding="utf-8") as out:
            out.write(f"$ {' '.join(args)}\n{done.stdout}\n{done.stderr}\n")
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(args[:3])} ... exited {done.returncode}:\n"
                    f"{(done.stdout + done.stderr)[-3000:]}", pytrace=False)
    return done


def _pip_conf() -> str:
    """pip's settings for the build inside the test base: the host's CA bundle (which the hook
    below makes hold the host's CAs) and the host's package index, if it names one over HTTP(S).
    Index settings pointing at the host's files (file://, find-links) mean nothing in there."""
    lines = ["[global]", "cert = /etc/ssl/certs/ca-certificates.crt"]
    found: dict[str, str] = {}
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                            text=True, timeout=60)
    for line in listed.stdout.splitlines():
        key, _, value = line.partition("=")
        found.setdefault(key.split(".", 1)[-1], value.strip().strip("'\""))
    for key in ("index-url", "extra-index-url", "trusted-host"):
        env_value = os.environ.get("PIP_" + key.upper().replace("-", "_"))
        value = env_value or found.get(key, "")
        kept = [v for v in value.split() if key == "trusted-host" or v.startswith("http")]
        if kept:
            lines.append(f"{key} = {' '.join(kept)}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """The project's image, built on a Debian base made here; removed afterwards."""
    if os.geteuid() != 0:
        _unavailable("the container test runs podman as root")
    for tool in ("podman", "runc", "mmdebstrap"):
        if not shutil.which(tool):
            _unavailable(f"{tool} not found: apt-get install podman runc mmdebstrap")
    tmp = tmp_path_factory.mktemp("container")
    log = tmp / "build.log"
    run_id = uuid.uuid4().hex[:10]
    base, tag = f"localhost/flux-test-base:{run_id}", f"localhost/flux-worker-test:{run_id}"
    (tmp / "pip.conf").write_text(_pip_conf(), encoding="utf-8")
    timings = {}

    started = time.monotonic()
    hooks = [f"--customize-hook=upload {tmp / 'pip.conf'} /etc/pip.conf"]
    if HOST_CA_DIR.is_dir() and any(HOST_CA_DIR.iterdir()):
        hooks += [f"--customize-hook=copy-in {HOST_CA_DIR}/. {HOST_CA_DIR}",
                  '--customize-hook=chroot "$1" update-ca-certificates']
    _run("mmdebstrap", "--quiet", "--variant=minbase",
         "--include=python3,python3-venv,ca-certificates", *hooks, SUITE,
         str(tmp / "base.tar"), log=log)
    _run("podman", "import", str(tmp / "base.tar"), base, log=log)
    (tmp / "base.tar").unlink()
    timings["base"] = time.monotonic() - started

    started = time.monotonic()
    try:
        # --format docker: the OCI image format has no HEALTHCHECK; Docker's keeps it.
        # --layers=false: no intermediate images are kept (the build stage's among them).
        _run("podman", "build", "--isolation", "chroot", "--format", "docker", "--layers=false",
             "--build-arg", f"BASE={base}", "-t", tag, str(ROOT), timeout=600, log=log)
        timings["build"] = time.monotonic() - started
        print(f"container image: base {timings['base']:.0f} s, build {timings['build']:.0f} s")
        yield tag
    finally:
        _run("podman", "rmi", "--force", tag, base, check=False)


def _inspect(tag: str) -> dict:
    return json.loads(_run("podman", "image", "inspect", tag).stdout)[0]


def test_image_settings(image):
    settings = _inspect(image)
    config = settings["Config"]
    assert config["User"] == "flux"
    assert config["StopSignal"] == "SIGTERM"
    assert config["Cmd"] == ["gunicorn", "-c", "gunicorn.conf.py", "app:app"]
    assert "/data" in config["Volumes"]
    assert "8000/tcp" in config["ExposedPorts"]
    assert "/healthz" in " ".join(settings["Healthcheck"]["Test"])
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["STORAGE_URL"] == "disk:///data" and env["HOST"] == "0.0.0.0"


@pytest.fixture
def fake():
    server = cloudflare.start(account_id=CF_ACCOUNT, api_token=CF_TOKEN, llm_key=LLM_KEY)
    yield server
    server.stop()


def test_serves_a_chat_and_its_image_then_stops_after_the_generation_in_flight(image, fake):
    port = free_port()
    name = f"flux-worker-test-{uuid.uuid4().hex[:10]}"
    _run("podman", "--runtime", "runc", "run", "--detach", "--name", name, *ULIMITS,
         "--network", "slirp4netns:allow_host_loopback=true", "-p", f"127.0.0.1:{port}:8000",
         "-e", f"API_KEY={API_KEY}", "-e", f"CF_ACCOUNT_ID={CF_ACCOUNT}",
         "-e", f"CF_API_TOKEN={CF_TOKEN}",
         "-e", f"CF_API_BASE=http://{HOST_LOOPBACK}:{fake.port}/client/v4",
         "-e", "GUNICORN_THREADS=8", "-e", "UPSTREAM_TIMEOUT=30", image)
    try:
        _check_running_container(name, f"http://127.0.0.1:{port}", fake)
    finally:
        logs = _run("podman", "logs", name, check=False)
        _run("podman", "rm", "--force", name, check=False)
    assert "Shutting down: Master" in logs.stdout + logs.stderr


def _healthy(url: str) -> bool:
    try:
        return requests.get(url + "/healthz", timeout=2).ok
    except requests.ConnectionError:
        return False


def _check_running_container(name: str, url: str, fake) -> None:
    wait_until(lambda: _healthy(url), timeout=60, interval=0.3,
               message="the container never answered /healthz")
    # The image's own HEALTHCHECK, run inside the container as the engine would.
    assert _run("podman", "healthcheck", "run", name, check=False).returncode == 0

    client = openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0, timeout=60)
    answer = client.chat.completions.create(
        model="flux-1-schnell", messages=[{"role": "user", "content": "a lighthouse at dusk"}])
    link = re.search(r"\((http://[^)\s]+/image/[^)\s]+)\)", answer.choices[0].message.content)
    assert link, answer.choices[0].message.content
    assert link.group(1).startswith(url + "/image/")
    picture = requests.get(link.group(1), timeout=10)
    assert picture.status_code == 200
    assert Image.open(io.BytesIO(picture.content)).size == (1024, 1024)
    assert fake.requests(), "the generation did not reach the fake on the host"

    # Inside: the service runs as its own user, keeps images on the volume, and the image holds
    # the app alone (no tests, secrets or virtualenvs of the build context).
    assert _run("podman", "exec", name, "id", "-u").stdout.strip() == "10001"
    assert _run("podman", "exec", name, "ls", "-A", "/data").stdout.split()
    assert set(_run("podman", "exec", name, "ls", "-A", "/app").stdout.split()) \
        == {"app.py", "gunicorn.conf.py", "flux_worker", "data", "__pycache__"}

    # A stop while a generation is in flight: gunicorn (PID 1) gets SIGTERM, finishes it, exits 0.
    fake.state.latency = SLOW_GENERATION
    seen = len(fake.requests())
    result: dict[str, object] = {}

    def generate() -> None:
        try:
            result["answer"] = requests.post(
                url + "/v1/chat/completions", timeout=60,
                headers={"Authorization": f"Bearer {API_KEY}"},
                json={"model": "flux-1-schnell", "messages": [{"role": "user",
                                                              "content": "a slow boat"}]})
        except requests.RequestException as exc:
            result["answer"] = exc

    caller = threading.Thread(target=generate)
    caller.start()
    wait_until(lambda: len(fake.requests()) > seen, timeout=20,
               message="the slow generation never reached the fake")
    started = time.monotonic()
    _run("podman", "stop", "--time", str(STOP_TIMEOUT), name, timeout=STOP_TIMEOUT + 30)
    stopped_after = time.monotonic() - started
    caller.join(30)
    answer = result.get("answer")
    assert isinstance(answer, requests.Response), answer
    assert answer.status_code == 200, answer.text
    assert "/image/" in answer.json()["choices"][0]["message"]["content"]
    state = json.loads(_run("podman", "inspect", name).stdout)[0]["State"]
    assert state["ExitCode"] == 0, state
    # It waited for the generation, and not for the kill at STOP_TIMEOUT.
    assert stopped_after < STOP_TIMEOUT - 10, stopped_after
