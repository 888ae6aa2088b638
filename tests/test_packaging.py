"""The package: pyproject.toml's [project], the `flux-worker` command and `python -m flux_worker`.

`pipx install .` (pipx from the dev requirements, its home in a temporary directory) must give
a command that serves; it downloads the dependencies through pip's index (its cache, after
`make test` has installed them), so it is an end-to-end test.
"""

from __future__ import annotations

import pathlib
import shutil
import signal
import subprocess
import sys
import tomllib

import pytest
import requests
from packaging.requirements import Requirement

from flux_worker.version import __version__
from harness.ports import free_port
from tests.support import wait_until

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _requirements() -> set[str]:
    lines = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return {str(Requirement(line.split("#", 1)[0])) for line in lines
            if line.split("#", 1)[0].strip()}


def test_version_and_dependencies_come_from_one_place():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["name"] == "flux-worker"
    assert set(project["project"]["dynamic"]) == {"version", "dependencies"}
    dynamic = project["tool"]["setuptools"]["dynamic"]
    assert dynamic["version"] == {"attr": "flux_worker.version.__version__"}
    assert dynamic["dependencies"] == {"file": ["requirements.txt"]}
    assert project["project"]["scripts"]["flux-worker"] == "flux_worker.serving.cli:main"
    assert _requirements(), "requirements.txt lists the runtime dependencies"


def test_python_m_flux_worker_offers_help_and_version():
    helped = subprocess.run([sys.executable, "-m", "flux_worker", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: flux-worker")
    for flag in ("--host", "--port", "--workers", "--threads", "API_KEY"):
        assert flag in helped.stdout
    version = subprocess.run([sys.executable, "-m", "flux_worker", "--version"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == f"flux-worker {__version__}"


@pytest.mark.e2e
def test_pip_install_gives_a_flux_worker_command_that_serves(tmp_path):
    # A copy of the tracked files: pip builds in the source tree (build/, *.egg-info).
    source = tmp_path / "source"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\n")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    pipx_env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                "PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(tmp_path / "bin"),
                "PIPX_MAN_DIR": str(tmp_path / "man")}
    installed = subprocess.run([sys.executable, "-m", "pipx", "install", "--python",
                                sys.executable, str(source)], capture_output=True, text=True,
                               timeout=600, env=pipx_env)
    assert installed.returncode == 0, installed.stderr[-3000:]
    venv = tmp_path / "pipx" / "venvs" / "flux-worker"

    command = tmp_path / "bin" / "flux-worker"
    # The package data came along: the playground and the example ComfyUI workflows.
    packaged = next(venv.glob("lib/python*/site-packages/flux_worker"))
    assert (packaged / "templates" / "index.html").is_file()
    assert (packaged / "catalog" / "comfyui_workflows" / "txt2img.map.json").is_file()
    helped = subprocess.run([str(command), "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: flux-worker"), helped
    metadata = subprocess.run([str(venv / "bin/python"), "-c",
                               "import importlib.metadata as m; print('\\n'.join("
                               "m.requires('flux-worker')))"], capture_output=True, text=True,
                              check=True).stdout.split("\n")
    assert {str(Requirement(line)) for line in metadata if line} == _requirements()

    # It serves from anywhere, with no file of the repository: settings and app are packaged.
    port = free_port()
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([str(command), "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1", "--threads", "4"], cwd=tmp_path, stdout=log,
                            stderr=subprocess.STDOUT,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                 "STORAGE_URL": f"disk://{tmp_path / 'images'}"})
    log.close()
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), timeout=30,
                   message=(tmp_path / "serve.log").read_text(errors="replace"))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.ConnectionError:
        return False
