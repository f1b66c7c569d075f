"""The handover, provision and audit commands through the real error boundary: help, usage errors (exit 2) and
invalid repositories (exit 1) — everything that must fail before any server is contacted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, run_cli


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    """Register the commands the way main.py will (until the lead wires them), and restore the app after."""
    from chamberlain.cli import main as m
    from chamberlain.cli.audit import audit_app
    from chamberlain.cli.handover import handover_cmd, provision_cmd

    commands, groups = list(m.app.registered_commands), list(m.app.registered_groups)
    names = {c.name for c in commands} | {g.name for g in groups}
    if "handover" not in names:
        m.app.command("handover")(handover_cmd)
    if "provision" not in names:
        m.app.command("provision")(provision_cmd)
    if "audit" not in names:
        m.app.add_typer(audit_app, name="audit")
    yield
    m.app.registered_commands[:], m.app.registered_groups[:] = commands, groups


ACME = str(EXAMPLES / "acme")


@pytest.mark.parametrize("args", [["handover", "--help"], ["provision", "--help"], ["audit", "--help"],
                                  ["audit", "show", "--help"], ["audit", "verify", "--help"]],
                         ids=lambda a: " ".join(a))
def test_help(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.code == 0 and "Usage" in result.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["handover", ACME, "--vault-token-file", "t"], "--cluster", id="cluster-needed"),
        pytest.param(["handover", ACME, "--cluster", "nowhere"], "unknown cluster", id="unknown-cluster"),
        pytest.param(["handover", ACME, "--cluster", "dev1", "--vault-token-file", "/nonexistent",
                      "--kubeconfig", "/nonexistent"], "no such kubeconfig", id="missing-kubeconfig"),
        pytest.param(["handover", "/nonexistent", "--cluster", "dev1"], "no such directory", id="missing-repo"),
        pytest.param(["provision", ACME, "--vault-token-file", "/nonexistent"], "token file", id="missing-token"),
        pytest.param(["provision", ACME, "--environment", "staging"], "unknown environment", id="unknown-env"),
        pytest.param(["audit", "show", "no-such-secret", ACME, "--vault-token-file", "t"], "no SecretIntent",
                     id="unknown-secret"),
        pytest.param(["audit", "verify", ACME], "--vault-token-file", id="no-credentials"),
    ],
)
def test_usage_errors_exit_2_before_contacting_anything(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.code == 2, result.err
    assert message in result.err and "Traceback" not in result.err


def test_empty_token_file_is_a_usage_error(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("\n")
    result = run_cli("provision", ACME, "--vault-token-file", str(token))
    assert result.code == 2 and "empty" in result.err


def test_invalid_repository_applies_nothing(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("apiVersion: chamberlain.dev/v1alpha1\nkind: SecretIntent\n")
    result = run_cli("handover", str(tmp_path), "--cluster", "dev1")
    assert result.code == 1 and "nothing was done" in result.err
