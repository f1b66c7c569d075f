"""The command-line contract: --help everywhere, exit codes 0/1/2, data on stdout, no tracebacks."""

from __future__ import annotations

import inspect
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from chamberlain.cli.main import app
from chamberlain.cli.options import GROUPED, Target, target_options
from chamberlain.errors import UsageError
from chamberlain.service.context import ConnectionOptions
from tests.conftest import CORPUS, EXAMPLES, REPO_ROOT, CliResult, run_cli


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
    assert names == ["export KUBECONFIG", "export VAULT_ADDR", "export VAULT_CACERT", "export BAO_ADDR",
                     "export BAO_CACERT", "export PATH"]
    assert "TOKEN" not in result.out.upper()


def test_lab_env_exports_absolute_paths_for_a_relative_lab_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """eval "$(chamberlain lab env --lab-dir lab)" must keep working after a cd: no relative path is exported."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lab").mkdir()
    result = run_cli("lab", "env", "--lab-dir", "lab")
    assert result.code == 0, result.err
    values = dict(line.removeprefix("export ").split("=", 1) for line in result.out.splitlines())
    for name in ("KUBECONFIG", "VAULT_CACERT", "BAO_CACERT"):
        assert values[name].strip("'").startswith(str(tmp_path / "lab")), values[name]
    assert all(part.startswith("/") for part in values["PATH"].strip('"').split(":")[:-1]), values["PATH"]


def test_lab_env_output_quotes_every_directory_for_eval(tmp_path: Path) -> None:
    """A cache directory whose name holds shell syntax: eval of the exports runs none of it, and PATH gets the
    directories as they are."""
    cache = tmp_path / 'c"$(touch PWNED)"`touch PWNED2`'
    cache.mkdir()
    env = {**os.environ, "CHAMBERLAIN_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO_ROOT / "src")}
    exports = subprocess.run([sys.executable, "-m", "chamberlain.cli.main", "lab", "env", "--lab-dir",
                              str(tmp_path / "lab")], capture_output=True, text=True, check=False, env=env,
                             timeout=120)
    assert exports.returncode == 0, exports.stderr
    shown = subprocess.run(["bash", "-c", 'eval "$EXPORTS"; printf %s "$PATH"'], capture_output=True, text=True,
                           check=False, cwd=tmp_path, env={**os.environ, "EXPORTS": exports.stdout}, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "PWNED2").exists()
    assert shown.stdout.split(":")[0].startswith(str(cache)), shown.stdout


# ------------------------------------------------------------------------------------------------ options, once

SHARED = ("environment", "cluster", "vault_addr", "vault_cacert", "vault_token_file", "vault_token_env", "vault_token",
          "kubeconfig")


def _options(group: typer.core.TyperGroup, prefix: str = "") -> Iterator[tuple[str, typer.core.TyperOption]]:
    for name, command in group.commands.items():
        if isinstance(command, typer.core.TyperGroup):
            yield from _options(command, f"{prefix}{name} ")
        else:
            for param in command.params:
                if isinstance(param, typer.core.TyperOption):
                    yield f"{prefix}{name}", param


def test_shared_options_are_spelled_the_same_everywhere() -> None:
    """Every command spells a shared option with the same flags, environment variable and help."""
    spellings: dict[str, set[tuple[tuple[str, ...], str | None, str | None]]] = {}
    users: dict[str, list[str]] = {}
    for command, option in _options(typer.main.get_group(app)):
        if option.name in SHARED:
            envvar = option.envvar if isinstance(option.envvar, str | None) else ",".join(option.envvar)
            spellings.setdefault(option.name, set()).add((tuple(sorted(option.opts)), envvar, option.help))
            users.setdefault(option.name, []).append(command)
    assert {name: len(s) for name, s in spellings.items()} == dict.fromkeys(SHARED, 1)
    assert {"authority init", "authority configure", "plan", "handover", "rotate"} <= set(users["cluster"])
    assert next(iter(spellings["cluster"]))[0] == ("--cluster", "-c")
    assert next(iter(spellings["environment"]))[0] == ("--environment", "-e")
    assert next(iter(spellings["kubeconfig"]))[1] == "KUBECONFIG"


def test_short_flags_reach_the_authority_commands() -> None:
    result = run_cli("authority", "init", str(EXAMPLES / "acme"), "-c", "nowhere")
    assert result.code == 2 and "--cluster nowhere: not a cluster" in result.err


def test_connection_options_still_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VAULT_CACERT", str(tmp_path / "missing-ca.pem"))
    result = run_cli("provision", str(EXAMPLES / "acme"), "--vault-token-file", str(tmp_path / "token"))
    assert result.code == 2 and "missing-ca.pem: no such CA file" in result.err


def _plan_with_address(address: str, tmp_path: Path) -> CliResult:
    token = tmp_path / "token"
    token.write_text("hvs.placeholder\n")
    return run_cli("plan", str(EXAMPLES / "acme"), "-c", "dev1", "--vault-token-file", str(token),
                   "--vault-addr", address)


@pytest.mark.parametrize("address", ["http://127.0.0.1:99999", "http://[::1", "ftp://vault:8200", "http://:8200",
                                     "vault.example:8200", "http://127.0.0.1:port"])
def test_an_address_no_request_could_go_to_is_a_usage_error_not_an_outage(address: str, tmp_path: Path) -> None:
    result = _plan_with_address(address, tmp_path)
    assert result.code == 2, result.err
    assert "not an http:// or https:// URL with a host" in result.err and "unreachable" not in result.err


@pytest.mark.parametrize("address", ["https://admin:Sup3rS3cretPw@vault.example.com:99999",
                                     "admin:Sup3rS3cretPw@vault:8200", "https://a:Sup3rS3cretPw@[::1"])
def test_a_refused_address_never_prints_the_password_in_it(address: str, tmp_path: Path) -> None:
    result = _plan_with_address(address, tmp_path)
    assert result.code == 2 and "Sup3rS3cretPw" not in result.err + result.out and "***@" in result.err


def test_an_option_group_hands_the_command_one_object(monkeypatch: pytest.MonkeyPatch) -> None:
    @target_options(environment=False, token_file=False, token=True)
    def command(path: str, target: Target = GROUPED, output: str = "text") -> Target:
        return target

    assert list(inspect.signature(command).parameters) == [
        "path", "cluster", "vault_addr", "vault_cacert", "vault_token_file", "vault_token_env", "kubeconfig",
        "context", "vault_token", "output"]
    monkeypatch.setenv("BREAK_GLASS", "t")
    got = command("p", cluster="c1", vault_addr="https://v", vault_cacert=None, vault_token_file=None,
                  vault_token_env="BREAK_GLASS", kubeconfig=None, vault_token=None)
    assert got == Target(None, "c1", ConnectionOptions(vault_addr="https://v", vault_token="t"))
    with pytest.raises(TypeError, match="no parameter 'target'"):
        target_options()(lambda path: None)


def test_a_token_on_the_command_line_is_refused_saying_how(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_TOKEN", "hvs.ambient-token-value")
    result = run_cli("authority", "configure", str(EXAMPLES / "acme"), "--vault-token", "hvs.argv-token-value")
    assert result.code == 2 and "--vault-token-file" in result.err and "--vault-token-env" in result.err
    assert "argv-token-value" not in result.out + result.err


def test_an_ambient_vault_token_is_never_used_unless_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """VAULT_TOKEN in the environment does not make anyone the configurator: without --vault-token-env, the
    command logs in through Kubernetes (here: no kubeconfig, so it fails before any Vault call)."""
    from chamberlain.cli.options import token_from

    monkeypatch.setenv("VAULT_TOKEN", "hvs.ambient")

    @target_options(environment=False, token_file=False, token=True)
    def command(path: str, target: Target = GROUPED) -> Target:
        return target

    got = command("p", cluster=None, vault_addr=None, vault_cacert=None, vault_token_file=None,
                  vault_token_env=None, kubeconfig=None, vault_token=None)
    assert got.conn.vault_token is None
    named = command("p", cluster=None, vault_addr=None, vault_cacert=None, vault_token_file=None,
                    vault_token_env="VAULT_TOKEN", kubeconfig=None, vault_token=None)
    assert named.conn.vault_token == "hvs.ambient" and "hvs.ambient" not in repr(named)
    with pytest.raises(UsageError, match="not set or empty"):
        token_from("NOT_SET_ANYWHERE", {}, None)
    with pytest.raises(UsageError, match="not an environment variable name"):
        token_from("bad name", {}, None)
    assert token_from(None, {}, io.StringIO("hvs.from-stdin\n")) == "hvs.from-stdin"
    for bad in ("hvs.a\nhvs.b\n", "hvs.\u20ac", "hvs a"):  # would fail in an HTTP header, far from its cause
        with pytest.raises(UsageError, match="does not hold one token") as caught:
            token_from(None, {}, io.StringIO(bad))
        assert "hvs" not in str(caught.value)
        with pytest.raises(UsageError, match="--vault-token-env T: does not hold one token"):
            token_from("T", {"T": bad}, None)
    with pytest.raises(UsageError, match="stdin"):
        token_from(None, {}, io.StringIO(""))


def test_a_token_file_dash_reads_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("hvs.piped\n"))

    @target_options(environment=False)
    def command(path: str, target: Target = GROUPED) -> Target:
        return target

    got = command("p", cluster=None, vault_addr=None, vault_cacert=None, vault_token_file=Path("-"),
                  vault_token_env=None, kubeconfig=None, vault_token=None)
    assert got.conn.vault_token == "hvs.piped" and got.conn.vault_token_file is None


@pytest.mark.parametrize("command", ["validate", "inventory"])
def test_an_empty_repository_path_is_a_usage_error_not_the_current_directory(command: str) -> None:
    result = run_cli(command, "")
    assert result.code == 2 and "the repository path is empty" in result.err
    long = run_cli(command, "x" * 300)
    assert long.code == 2 and "File name too long" in long.err
