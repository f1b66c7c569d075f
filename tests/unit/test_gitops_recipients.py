"""Per-cluster GitOps decryption recipients (``spec.gitops.decryptionRecipients``): bootstrap files are encrypted
to the root recipients plus their clusters' GitOps keys, unseal shares to the root only, and the checks say so."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from chamberlain.checks.gate import validate_repository
from chamberlain.errors import UsageError
from chamberlain.intent.model import GitOps, Platform
from chamberlain.intent.paths import bootstrap_recipients
from chamberlain.root.repo import GENERIC_RULE, desired_rules, exact_rule, update_sops_config
from chamberlain.service.authority import share_recipients
from tests.conftest import CORPUS

ROOT = "age1alv9cmp24g55wasnmzrfm3rspphz5u8ay6e5ujdujr99yf27xyssrczjjk"
OTHER = "age1uje6yutxcw4r8qt9yrcm2x98zpljfgvsn7w3e46vfla77w8cmv7qyzkcaz"  # tests/fixtures/age/other-identity.txt
ANCHOR = "  defaults: {rotationPolicy: standard}\n"


def _repo(tmp_path: Path, gitops: str) -> Path:
    """The corpus base with the bootstrap intent whose file is encrypted to ROOT and OTHER."""
    repo = tmp_path / "repo"
    shutil.copytree(CORPUS / "base", repo)
    case = CORPUS / "bad" / "CH022-extra-recipient"
    shutil.copytree(case / "bootstrap", repo / "bootstrap")
    shutil.copy(case / "intents" / "bootstrap.yaml", repo / "intents" / "bootstrap.yaml")
    platform = repo / "platform.yaml"
    platform.write_text(platform.read_text().replace(ANCHOR, ANCHOR + gitops))
    return repo


def _rules(repo: Path) -> list[str]:
    return sorted(f.rule for f in validate_repository(repo).findings)


def test_a_file_encrypted_to_the_root_and_its_clusters_gitops_key_is_clean(tmp_path: Path) -> None:
    repo = _repo(tmp_path, f"  gitops:\n    decryptionRecipients:\n      dev1: [{OTHER}]\n      prod-eu1: [{OTHER}]\n")
    assert _rules(repo) == []


def test_without_the_declaration_the_extra_recipient_is_still_refused(tmp_path: Path) -> None:
    repo = _repo(tmp_path, "")
    findings = validate_repository(repo).findings
    assert [f.rule for f in findings] == ["CH022"]
    assert "spec.gitops.decryptionRecipients" in findings[0].message


def test_a_declared_gitops_key_the_file_lacks_is_reported(tmp_path: Path) -> None:
    third = "age1" + "q" * 58
    repo = _repo(tmp_path, f"  gitops:\n    decryptionRecipients:\n      dev1: [{OTHER}, {third}]\n"
                           f"      prod-eu1: [{OTHER}]\n")
    findings = validate_repository(repo).findings
    assert [f.rule for f in findings] == ["CH022"] and third in findings[0].message


def test_a_cluster_without_a_gitops_key_is_a_warning_once_any_is_declared(tmp_path: Path) -> None:
    repo = _repo(tmp_path, f"  gitops:\n    decryptionRecipients:\n      dev1: [{OTHER}]\n")
    result = validate_repository(repo)
    # prod-eu1 lacks its key: CH018 (warning) names it; the file carries OTHER only for dev1's sake, which is fine.
    assert [f.rule for f in result.findings] == ["CH018"]
    assert "prod-eu1" in result.findings[0].message
    assert result.blocking() == [] and [f.rule for f in result.blocking(strict=True)] == ["CH018"]


def _platform(gitops: dict[str, list[str]]) -> Platform:
    return Platform.model_validate({
        "apiVersion": "chamberlain.dev/v1alpha1", "kind": "Platform", "metadata": {"name": "p"},
        "spec": {"environments": [{"name": "prod", "clusters": ["eu", "us"]}, {"name": "dev", "clusters": ["d1"]}],
                 "authority": {"address": "https://vault:8200"},
                 "rootOfTrust": {"ageRecipients": [ROOT]},
                 "gitops": {"decryptionRecipients": gitops}},
    })


def test_bootstrap_recipients_are_the_root_then_each_placed_clusters_keys_once() -> None:
    from chamberlain.intent.model import SecretIntent

    platform = _platform({"eu": [OTHER], "us": [OTHER], "d1": ["age1" + "d" * 58]})
    intent = SecretIntent.model_validate({
        "apiVersion": "chamberlain.dev/v1alpha1", "kind": "SecretIntent", "metadata": {"name": "smtp"},
        "spec": {"owner": "t", "purpose": "p", "classification": "bootstrap", "environments": ["prod"],
                 "source": {"bootstrap": {"file": "b.sops.yaml"}}}})
    assert bootstrap_recipients(platform, intent) == [ROOT, OTHER]


def test_unseal_shares_are_sealed_to_the_root_only() -> None:
    platform = _platform({"eu": [OTHER]})
    assert share_recipients(platform) == [ROOT]


@pytest.mark.parametrize("path", [".", "deploy", "./deploy/chamberlain", "deploy/"])
def test_gitops_path_accepts_relative_paths(path: str) -> None:
    assert GitOps(path=path).path == path


@pytest.mark.parametrize("path", ["/abs", "../up", "a/../b", "a//b", "", "a b", "~/x"])
def test_gitops_path_refuses_paths_that_could_leave_the_repository(path: str) -> None:
    with pytest.raises(ValidationError):
        GitOps(path=path)


def test_sops_rules_give_a_file_with_gitops_keys_its_own_exact_rule() -> None:
    rel = "bootstrap/smtp.sops.yaml"  # matches the generic rule, yet needs its own recipients
    assert desired_rules([rel]) == [GENERIC_RULE]
    rules = desired_rules([rel], {rel})
    assert rules == [exact_rule(rel), GENERIC_RULE]
    text, changed = update_sops_config(None, rules, [ROOT], {exact_rule(rel): [OTHER]})
    assert changed and f"age: {ROOT},{OTHER}" in text and f"age: {ROOT}\n" in text
    again, changed = update_sops_config(text, rules, [ROOT], {exact_rule(rel): [OTHER]})
    assert not changed and again == text


def test_declaring_a_clusters_gitops_key_edits_the_platform_and_sops_config(tmp_path: Path) -> None:
    from chamberlain.root.repo import add_decryption_recipient, declare_decryption_recipient

    repo = _repo(tmp_path, "")
    cluster = "dev1"
    update = declare_decryption_recipient(repo, cluster, OTHER)
    assert update.recipient_added and update.sops_config_written and update.recipients == [ROOT]
    assert f"{cluster}:" in (repo / "platform.yaml").read_text()
    assert OTHER in (repo / ".sops.yaml").read_text()
    # The intent's file is already encrypted to ROOT and OTHER: nothing to re-encrypt; prod-eu1, which applies it
    # too, has no key yet (a warning).
    assert update.stale_files == [] and _rules(repo) == ["CH018"]
    again = declare_decryption_recipient(repo, cluster, OTHER)
    assert not again.recipient_added and not again.sops_config_written
    with pytest.raises(UsageError, match="root-of-trust recipient"):
        declare_decryption_recipient(repo, cluster, ROOT)
    with pytest.raises(UsageError, match="no environment lists cluster 'nope'"):
        declare_decryption_recipient(repo, "nope", OTHER)
    _, changed = add_decryption_recipient("spec: {gitops: {decryptionRecipients: {a: [x]}}}\n", "a", "x")
    assert not changed
    with pytest.raises(UsageError, match="not a list"):
        add_decryption_recipient("spec: {gitops: {decryptionRecipients: {a: oops}}}\n", "a", "x")


def test_root_gitops_key_command_creates_the_key_outside_the_repo(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    repo = _repo(tmp_path, "")
    key = tmp_path / "keys" / "dev1.agekey"
    result = run_cli("root", "gitops-key", "dev1", "--identity-file", str(key), "--repo", str(repo), "-o", "json")
    assert result.code == 0, result.err
    assert key.stat().st_mode & 0o777 == 0o600
    assert "AGE-SECRET-KEY" not in result.out + result.err
    inside = run_cli("root", "gitops-key", "dev1", "--identity-file", str(repo / "k.agekey"), "--repo", str(repo))
    assert inside.code != 0 and not (repo / "k.agekey").exists() and "Traceback" not in inside.err


def test_a_shared_yaml_list_is_never_appended_to() -> None:
    from chamberlain.root.repo import add_decryption_recipient

    text = (f"spec:\n  rootOfTrust:\n    ageRecipients: &roots [{ROOT}]\n"
            "  gitops:\n    decryptionRecipients:\n      dev1: *roots\n")
    with pytest.raises(UsageError, match="anchor or alias"):
        add_decryption_recipient(text, "dev1", OTHER)


def test_one_key_for_two_clusters_and_a_gitops_key_as_root_are_refused(tmp_path: Path) -> None:
    from chamberlain.root.repo import add_recipient, declare_decryption_recipient

    repo = _repo(tmp_path, "")
    declare_decryption_recipient(repo, "dev1", OTHER)
    before = (repo / "platform.yaml").read_text()
    with pytest.raises(UsageError, match="already the decryption key of dev1"):
        declare_decryption_recipient(repo, "prod-eu1", OTHER)
    platform_doc = before.split("---\n")[0]
    assert "decryptionRecipients" in platform_doc
    with pytest.raises(UsageError, match="GitOps decryption key"):
        add_recipient(platform_doc, OTHER)
    assert (repo / "platform.yaml").read_text() == before


@pytest.mark.parametrize("cluster", ["Dev1", "a.b", "? z", "x\ny", ""])
def test_cluster_names_are_dns_labels_before_anything_is_written(tmp_path: Path, cluster: str) -> None:
    from tests.conftest import run_cli

    repo = _repo(tmp_path, "")
    key = tmp_path / "keys" / "k.agekey"
    result = run_cli("root", "gitops-key", cluster, "--identity-file", str(key), "--repo", str(repo))
    assert result.code != 0 and "Traceback" not in result.err
    assert not key.exists(), "a refusal leaves no key file behind"


def test_the_root_identity_directory_is_refused_for_a_cluster_key(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import run_cli

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("CHAMBERLAIN_CONFIG_DIR", str(tmp_path / "config" / "chamberlain"))
    repo = _repo(tmp_path, "")
    key = tmp_path / "config" / "chamberlain" / "root-of-trust" / "acme.agekey"
    result = run_cli("root", "gitops-key", "dev1", "--identity-file", str(key), "--repo", str(repo))
    assert result.code != 0 and "root of trust" in result.err and not key.exists()


def test_a_second_key_for_a_cluster_is_refused_without_rotate(tmp_path: Path) -> None:
    from chamberlain.root.repo import declare_decryption_recipient
    from tests.conftest import run_cli
    from tests.unit.test_bootstrap_helpers import need_tools

    third = "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3ke3xh"
    repo = _repo(tmp_path, "")
    declare_decryption_recipient(repo, "dev1", OTHER)
    before = (repo / "platform.yaml").read_text()
    with pytest.raises(UsageError, match=r"dev1 already has a GitOps decryption key.*--rotate"):
        declare_decryption_recipient(repo, "dev1", third)
    assert (repo / "platform.yaml").read_text() == before

    need_tools("age-keygen")
    repo = _repo(tmp_path / "cli", "")
    first, second = tmp_path / "keys" / "dev1.agekey", tmp_path / "keys" / "dev1-new.agekey"
    made = run_cli("root", "gitops-key", "dev1", "--identity-file", str(first), "--repo", str(repo))
    assert made.code == 0, made.err
    before = (repo / "platform.yaml").read_text()
    again = run_cli("root", "gitops-key", "dev1", "--identity-file", str(first), "--repo", str(repo))
    assert again.code == 0 and again.out == made.out, "the same key again stays idempotent"
    other = run_cli("root", "gitops-key", "dev1", "--identity-file", str(second), "--repo", str(repo))
    assert other.code == 2 and "Traceback" not in other.err
    message = " ".join(other.err.split())
    assert f"dev1 already has a GitOps decryption key ({made.out.strip()})" in message
    assert "chamberlain root gitops-key dev1 --rotate" in message
    assert not second.exists(), "a refusal leaves no key file behind"
    assert (repo / "platform.yaml").read_text() == before


def test_a_key_inside_the_repository_is_named_as_the_clusters_key(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    repo = _repo(tmp_path, "")
    result = run_cli("root", "gitops-key", "dev1", "--identity-file", str(repo / "k.agekey"), "--repo", str(repo))
    message = " ".join(result.err.split())
    assert result.code == 2 and "a cluster's GitOps decryption key must never be in Git" in message
    assert "root identity" not in message and "the default" not in message  # this command has no default path
    assert "~/.config/chamberlain/gitops/dev1.agekey" in message and not (repo / "k.agekey").exists()
