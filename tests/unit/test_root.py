"""Phase 0: the root identity (created once, 0600, outside Git) and the repository edits that record it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from chamberlain.bootstrap import Tools
from chamberlain.checks import run_checks
from chamberlain.errors import UsageError
from chamberlain.intent.loader import load_repository
from chamberlain.root import default_identity_path, ensure_identity, update_repository
from chamberlain.root.repo import GENERIC_RULE, add_recipient, desired_rules, update_sops_config
from chamberlain.settings import Settings
from chamberlain.yamledit import faithful, guess_indent
from tests.conftest import EXAMPLES, run_cli
from tests.unit.test_bootstrap_helpers import make_repo, need_tools, register_cli

R1 = "age1alv9cmp24g55wasnmzrfm3rspphz5u8ay6e5ujdujr99yf27xyssrczjjk"
R2 = "age1den0g69ak623sjkfceaufaw98k2cvllshtvulsmq0mkchyd29cjqdm3d33"


# ------------------------------------------------------------------------------------------- pure edits


def test_default_identity_path_is_per_platform_under_the_config_dir() -> None:
    config_dir = Settings.from_environ({"XDG_CONFIG_HOME": "/cfg"}, Path("/h")).config_dir
    assert default_identity_path("acme", config_dir) == Path("/cfg/chamberlain/root-of-trust/acme.agekey")
    config_dir = Settings.from_environ({}, Path("/h")).config_dir
    assert default_identity_path("acme", config_dir) == Path("/h/.config/chamberlain/root-of-trust/acme.agekey")


@pytest.mark.parametrize("text, expected", [
    pytest.param("a:\n  b:\n  - x\n", (2, 2, 0), id="kubectl-style"),
    pytest.param("a:\n  b:\n    - x\n", (2, 4, 2), id="indented-dashes"),
    pytest.param("a:\n    b:\n        - x\n", (4, 6, 4), id="four-spaces"),
])
def test_indentation_is_read_off_the_text(text: str, expected: tuple[int, int, int]) -> None:
    assert guess_indent(text) == expected
    assert faithful(text)


def test_add_recipient_keeps_comments_and_layout_and_is_idempotent() -> None:
    text = (EXAMPLES / "acme" / "platform.yaml").read_text()
    assert faithful(text)
    new, recipients, changed = add_recipient(text, R2)
    assert changed and recipients == [R1, R2]
    assert f"ageRecipients: [{R1}, {R2}]" in new
    # only that line changed: every comment survives
    assert [ln for ln in new.splitlines() if "ageRecipients" not in ln] == \
           [ln for ln in text.splitlines() if "ageRecipients" not in ln]
    again, _, changed_again = add_recipient(new, R2)
    assert not changed_again and again == new


def test_sops_config_rules_are_created_and_updated_in_front() -> None:
    rules = desired_rules(["bootstrap/a.sops.yaml", "secrets/b.yaml"])
    assert rules == [r"^secrets/b\.yaml$", GENERIC_RULE]
    text, changed = update_sops_config(None, rules, [R1])
    assert changed and text.startswith("# Written by `chamberlain root init`")
    same, changed = update_sops_config(text, rules, [R1])
    assert not changed and same == text
    user = "# mine\ncreation_rules:\n  - path_regex: other/.*\n    pgp: ABC  # keep\n  - path_regex: " \
           "bootstrap/.*\\.sops\\.ya?ml$\n    pgp: DEF\n    age: old\n"
    out, changed = update_sops_config(user, [GENERIC_RULE], [R1, R2])
    assert changed
    assert "# mine" in out and "pgp: ABC  # keep" in out and "DEF" not in out
    assert f"age: {R1},{R2}" in out and "encrypted_regex: ^(data|stringData)$" in out


# ------------------------------------------------------------------------------------------- identity


def test_identity_is_created_private_and_never_regenerated(tmp_path: Path, tools: Tools) -> None:
    need_tools("age-keygen")
    path = tmp_path / "keys" / "deep" / "labco.agekey"
    first = ensure_identity(path, tools=tools)
    assert first.created and first.recipient.startswith("age1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
    content = path.read_bytes()
    second = ensure_identity(path, tools=tools)
    assert not second.created and second.recipient == first.recipient
    assert path.read_bytes() == content


def test_identity_inside_the_repository_or_a_git_tree_is_refused(tmp_path: Path, tools: Tools) -> None:
    repo = make_repo(tmp_path / "repo", "x")
    with pytest.raises(UsageError, match="inside the repository"):
        ensure_identity(repo / "keys" / "root.agekey", repo, tools=tools)
    (tmp_path / "wt" / ".git").mkdir(parents=True)
    with pytest.raises(UsageError, match="Git work tree"):
        ensure_identity(tmp_path / "wt" / "sub" / "root.agekey", tools=tools)
    assert not (repo / "keys").exists() and not (tmp_path / "wt" / "sub").exists()


# ------------------------------------------------------------------------------------------- repository


def test_update_repository_records_the_recipient_idempotently(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", "x")
    assert load_repository(repo).platform is None  # no recipient yet: the Platform does not validate
    first = update_repository(repo, R1)
    assert first.recipient_added and first.sops_config_written and first.recipients == [R1]
    text = (repo / "platform.yaml").read_text()
    assert "# public recipients only" in text and "# The platform of the test repository" in text
    assert load_repository(repo).platform is not None
    stamps = {p: p.stat().st_mtime_ns for p in (repo / "platform.yaml", repo / ".sops.yaml")}
    second = update_repository(repo, R1)
    assert not second.recipient_added and not second.sops_config_written
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_update_repository_lists_bootstrap_files_missing_the_new_recipient(tmp_path: Path) -> None:
    import shutil

    repo = tmp_path / "acme"
    shutil.copytree(EXAMPLES / "acme", repo)
    update = update_repository(repo, R2)
    assert update.recipients == [R1, R2]
    assert update.stale_files == ["bootstrap/registry-pull.sops.yaml", "bootstrap/smtp-relay.sops.yaml"]
    # CH090 (warning): two root recipients and no custody, so each opens every unseal share.
    assert {f.rule for f in run_checks(load_repository(repo))} == {"CH022", "CH090"}


def test_cli_root_init_prints_only_the_recipient(tmp_path: Path) -> None:
    need_tools("age-keygen")
    register_cli()
    repo = make_repo(tmp_path / "repo", "x")
    key = tmp_path / "offline" / "root.agekey"
    result = run_cli("root", "init", "--repo", str(repo), "--identity-file", str(key))
    assert result.code == 0, result.err
    recipient = result.out.strip()
    assert recipient.startswith("age1") and recipient in (repo / "platform.yaml").read_text()
    assert "AGE-SECRET-KEY" not in result.out + result.err
    again = run_cli("root", "init", "--repo", str(repo), "--identity-file", str(key), "--print-identity")
    assert again.code == 0 and again.out.startswith(recipient)
    assert "AGE-SECRET-KEY" in again.out and "never regenerated" in again.err
    inside = run_cli("root", "init", "--repo", str(repo), "--identity-file", str(repo / "k.agekey"))
    assert inside.code == 2 and "inside the repository" in inside.err
    assert not (repo / "k.agekey").exists()
