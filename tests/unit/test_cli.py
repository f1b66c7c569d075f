"""The command-line contract: --help everywhere, exit codes 0/1/2, data on stdout, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from chamberlain.cli.main import app
from tests.conftest import CORPUS, run_cli


def _all_commands(typer_app: typer.Typer, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = [prefix]
    for cmd in typer_app.registered_commands:
        name = cmd.name or (cmd.callback.__name__.replace("_", "-") if cmd.callback else "")
        found.append((*prefix, name))
    for group in typer_app.registered_groups:
        assert group.typer_instance is not None and group.name
        found.extend(_all_commands(group.typer_instance, (*prefix, group.name)))
    return found


COMMANDS = _all_commands(app)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "chamberlain")
def test_every_command_has_help(command: tuple[str, ...]) -> None:
    result = run_cli(*command, "--help")
    assert result.code == 0, result.err
    assert "Usage" in result.out


def test_usage_error_exits_2() -> None:
    assert run_cli("validate").code == 2
    assert run_cli("validate", str(CORPUS / "base"), "-o", "xml").code == 2
    assert run_cli("no-such-command").code == 2


def test_missing_repository_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("validate", str(tmp_path / "nope"))
    assert result.code == 2
    assert "no such directory" in result.err
    assert "Traceback" not in result.err


def test_validate_json_goes_to_stdout() -> None:
    result = run_cli("validate", str(CORPUS / "base"), "-o", "json")
    assert result.code == 0
    data = json.loads(result.out)
    assert data["ok"] is True and data["results"] == []


def test_render_refuses_invalid_repository_and_writes_nothing(tmp_path: Path) -> None:
    from tests.unit.test_corpus import materialize

    repo = materialize(CORPUS / "bad" / "CH061-duplicate-vault-path", tmp_path)
    out = tmp_path / "out"
    result = run_cli("render", str(repo), "-o", str(out))
    assert result.code == 1
    assert not out.exists()


def test_version() -> None:
    result = run_cli("--version")
    assert result.code == 0 and "chamberlain" in result.out


def test_console_script_runs_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "chamberlain.cli.main", "validate", str(tmp_path / "missing")],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_lab_env_prints_exports_only(tmp_path: Path) -> None:
    result = run_cli("lab", "env", "--lab-dir", str(tmp_path))
    assert result.code == 0, result.err
    names = [line.split("=", 1)[0] for line in result.out.splitlines()]
    assert names == ["export KUBECONFIG", "export VAULT_ADDR", "export VAULT_CACERT", "export PATH"]
    assert "TOKEN" not in result.out.upper()
