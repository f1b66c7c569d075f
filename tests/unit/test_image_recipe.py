"""The image recipe (deploy/Dockerfile) without Docker: build the wheel from what the image's build context holds,
install it into a fresh virtualenv the way the Dockerfile does (the hashed runtime lock from PyPI, then the wheel
without dependencies), and check the entry point's command line, the ENTRYPOINT and CMD of the Dockerfile included.
Slow (about 25 s with pip's cache warm, on two busy cores), and it runs in CI all the same."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from chamberlain.controller.probes import parse_address
from tests.conftest import REPO_ROOT

DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile"
RUNTIME_LOCK = REPO_ROOT / "deploy" / "requirements-runtime.txt"

pytestmark = pytest.mark.slow


def instruction(name: str) -> list[str]:
    """The exec form (a JSON array) of the Dockerfile's last ``name`` instruction."""
    found = re.findall(rf"^{name}\s+(\[.*\])\s*$", DOCKERFILE.read_text(), re.M)
    assert found, f"deploy/Dockerfile has no {name} in exec form"
    value = json.loads(found[-1])
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def _env() -> dict[str, str]:
    """This process's environment without the test run's PYTHONPATH (it points at the source tree)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _run(*argv: str | Path, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding the runtime lock and the built wheel, and nothing from this checkout."""
    root = tmp_path_factory.mktemp("image")
    context = root / "context"  # what .dockerignore lets into the build context
    context.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, context / name)
    shutil.copytree(REPO_ROOT / "src", context / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    built = _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", root / "wheels", ".",
                 cwd=context)
    assert built.returncode == 0, built.stderr
    (wheel,) = (root / "wheels").glob("chamberlain-*.whl")
    # no pip inside (ensurepip costs seconds): this pip installs into it (--python); no bytecode, the image compiles
    venv.create(root / "venv", with_pip=False)
    pip = (sys.executable, "-m", "pip", "--python", str(root / "venv" / "bin" / "python"),
           "--disable-pip-version-check")
    deps = _run(*pip, "install", "--quiet", "--no-compile", "--require-hashes", "--only-binary=:all:",
                "-r", RUNTIME_LOCK, cwd=root, timeout=300)
    assert deps.returncode == 0, deps.stderr
    own = _run(*pip, "install", "--quiet", "--no-compile", "--no-deps", wheel, cwd=root)
    assert own.returncode == 0, own.stderr
    _check_the_lock_satisfies_the_runtime_extra(wheel, pip, root)
    return root / "venv"


def _check_the_lock_satisfies_the_runtime_extra(wheel: Path, pip: tuple[str, ...], cwd: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        requires = [Requirement(line.split(":", 1)[1].strip()) for line in zf.read(meta).decode().splitlines()
                    if line.startswith("Requires-Dist:")]
    listed = _run(*pip, "list", "--format", "json", cwd=cwd)
    installed = {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(listed.stdout)}
    for req in requires:
        if req.marker is not None and not req.marker.evaluate({"extra": "runtime"}):
            continue
        name = req.name.lower().replace("_", "-")
        assert name in installed, f"the runtime lock lacks {req}"
        assert req.specifier.contains(installed[name], prereleases=True), f"{name} {installed[name]} vs {req}"
    checked = _run(*pip, "check", cwd=cwd)
    assert checked.returncode == 0, checked.stdout


def test_the_entry_point_runs_from_the_wheel_alone(image_venv: Path, tmp_path: Path) -> None:
    done = _run(image_venv / "bin" / "chamberlain", "controller", "run", "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "--metrics-address" in done.stdout and "--log-level" in done.stdout
    where = _run(image_venv / "bin" / "python", "-c", "import chamberlain; print(chamberlain.__file__)", cwd=tmp_path)
    assert where.stdout.startswith(str(image_venv))  # the wheel's copy, not this checkout


def test_the_dockerfile_entrypoint_and_cmd_are_accepted_by_that_command_line(image_venv: Path,
                                                                             tmp_path: Path) -> None:
    entrypoint, cmd = instruction("ENTRYPOINT"), instruction("CMD")
    assert entrypoint == ["chamberlain", "controller", "run"]
    # --help is eager: click parses every option first (an unknown one fails with exit 2), then prints the help
    argv = [str(image_venv / "bin" / entrypoint[0]), *entrypoint[1:], *cmd, "--help"]
    done = _run(*argv, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    # and the values: what the command checks before it connects anywhere
    flags = dict(zip(cmd[::2], cmd[1::2], strict=True))
    assert parse_address(flags["--metrics-address"]) == ("0.0.0.0", 9102)  # noqa: S104 - the pod's address
    assert flags["--log-level"] in ("debug", "info", "warning", "error")
    assert flags["--log-format"] in ("json", "console")
    bogus = _run(*argv[:-1], "--no-such-flag", "--help", cwd=tmp_path)
    assert bogus.returncode == 2 and "No such option" in bogus.stdout + bogus.stderr  # the check above can fail


def test_the_image_runs_as_a_numeric_non_root_user_from_a_pinned_base() -> None:
    text = DOCKERFILE.read_text()
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and all(part.isdigit() and int(part) > 0 for part in users[-1].split(":"))
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base.group(1))
    assert text.count("FROM ${PYTHON_IMAGE}") == 2  # multi-stage, both on the pinned base
    assert "--require-hashes" in text
