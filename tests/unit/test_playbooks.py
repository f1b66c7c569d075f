"""The playbooks' decisions (pure: what a compromise exposes, what a custody change needs, what a retired key still
opens) and the Git side of ``root rotate`` / ``root gitops-key --rotate`` with the real sops and age binaries.

The authority side (the custody rekey, the rekey of shares sealed to the root, the compromise's rotations) runs
against the real servers in tests/lab (test_authority_custody.py, test_playbooks.py); here the in-cluster key's
replacement goes through ``FakeKube`` (a fake: said so).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from chamberlain.bootstrap import Tools
from chamberlain.errors import UsageError
from chamberlain.intent.loader import load_repository
from chamberlain.intent.model import Platform, SecretIntent
from chamberlain.playbook import custody
from chamberlain.playbook.compromise import Scope, affected, manual_step
from chamberlain.playbook.root import BootstrapFile, exposed, replaced
from chamberlain.root.repo import swap_recipient
from chamberlain.settings import tool_env
from tests.conftest import EXAMPLES, run_cli
from tests.unit.test_bootstrap_helpers import make_repo, need_tools

R1 = "age1alv9cmp24g55wasnmzrfm3rspphz5u8ay6e5ujdujr99yf27xyssrczjjk"
R2 = "age1den0g69ak623sjkfceaufaw98k2cvllshtvulsmq0mkchyd29cjqdm3d33"

PLATFORM = Platform.model_validate({
    "apiVersion": "chamberlain.dev/v1alpha1", "kind": "Platform", "metadata": {"name": "p"},
    "spec": {"environments": [{"name": "dev", "clusters": ["d1"]}],
             "authority": {"address": "https://vault.vault.svc:8200"},
             "rootOfTrust": {"ageRecipients": [R1]},
             "tenancy": {"platformOwners": ["platform"],
                         "owners": [{"name": "platform", "namespaces": ["infra"]},
                                    {"name": "shop", "namespaces": ["shop", "shop-batch"]}]}},
})


def intent(name: str, *, owner: str = "shop", consumers: tuple[str, ...] = (), published: str | None = None,
           bootstrap: bool = False, admin: str | None = None, fixed_only: bool = False) -> SecretIntent:
    source: dict[str, Any] = {"generate": {"password": {"type": "password"}}}
    if published:
        source = {"publication": {"namespace": published, "secretName": name}}
    elif bootstrap:
        source = {"bootstrap": {"file": f"bootstrap/{name}.sops.yaml"}}
    elif fixed_only:
        source = {"generate": {"username": {"type": "fixed-name", "name": "app"}}}
    elif admin:
        source = {"generate": {"username": {"type": "fixed-name", "name": "app"}, "password": {"type": "password"}}}
    spec: dict[str, Any] = {"owner": owner, "purpose": "tests", "source": source,
                            "classification": "derived" if published else "bootstrap" if bootstrap else "runtime",
                            "consumers": [{"namespace": ns, "secretName": name} for ns in consumers]}
    if admin:
        spec["target"] = {"postgres": {"host": "db", "role": "app", "adminIntent": admin}}
    return SecretIntent.model_validate({"apiVersion": "chamberlain.dev/v1alpha1", "kind": "SecretIntent",
                                        "metadata": {"name": name}, "spec": spec})


INTENTS = [
    intent("api-token", consumers=("shop",)),
    intent("batch-token", consumers=("shop-batch",)),
    intent("feed", consumers=("shop",), published="producers"),
    intent("smtp", owner="platform", bootstrap=True, consumers=("mail",)),
    intent("pg-admin", owner="platform", consumers=("infra",)),
    intent("app-db", consumers=("reports",), admin="pg-admin"),
    intent("app-user", owner="platform", consumers=("reports",), fixed_only=True),
]


def names(scope: Scope, boot: dict[str, list[str]] | None = None) -> list[str]:
    return [a.secret for a in affected(PLATFORM, INTENTS, scope, boot)]


# ------------------------------------------------------------------------------------------------ compromise


@pytest.mark.parametrize("scope, boot, expected", [
    pytest.param(Scope("namespace", "shop"), None, ["api-token", "feed"], id="consumers-in-the-namespace"),
    pytest.param(Scope("namespace", "producers"), None, ["feed"], id="published-from-the-namespace"),
    pytest.param(Scope("namespace", "chamberlain-bootstrap"), {"smtp": ["chamberlain-bootstrap"]}, ["smtp"],
                 id="bootstrap-secret-applied-there"),
    pytest.param(Scope("namespace", "infra"), None, ["pg-admin", "app-db"],
                 id="admin-exposed-then-what-it-administers"),
    pytest.param(Scope("namespace", "nowhere"), None, [], id="unrelated-namespace"),
    pytest.param(Scope("owner", "shop"), None, ["api-token", "app-db", "batch-token", "feed"],
                 id="owner-intents-and-namespaces"),
    pytest.param(Scope("owner", "platform"), None, ["pg-admin", "app-db", "app-user", "smtp"],
                 id="owner-with-an-admin-credential"),
    pytest.param(Scope("all"), None, ["api-token", "pg-admin", "app-db", "app-user", "batch-token", "feed", "smtp"],
                 id="everything-admins-first"),
])
def test_what_a_compromise_exposes(scope: Scope, boot: dict[str, list[str]] | None, expected: list[str]) -> None:
    assert names(scope, boot) == expected


@pytest.mark.parametrize("namespace", ["external-secrets", "flux-system", "kube-system", "chamberlain-system",
                                       "vault"])
def test_a_platform_namespace_exposes_everything(namespace: str) -> None:
    found = affected(PLATFORM, INTENTS, Scope("namespace", namespace))
    assert len(found) == len(INTENTS)
    assert all("its controllers read every secret" in a.because[0] for a in found)


def test_each_secret_says_why_and_whether_a_rotator_can_rotate_it() -> None:
    by_name = {a.secret: a for a in affected(PLATFORM, INTENTS, Scope("owner", "platform"))}
    assert by_name["pg-admin"].because == ("owned by platform", "consumer Secret infra/pg-admin")
    assert by_name["app-db"].because == ("its admin credential pg-admin is exposed: its holder can set this "
                                         "password",)
    assert by_name["pg-admin"].automatic and by_name["app-db"].automatic
    assert by_name["smtp"].manual is not None and "chamberlain import smtp" in by_name["smtp"].manual
    assert by_name["app-user"].manual is not None and "fixed-name" in by_name["app-user"].manual
    assert manual_step(INTENTS[2]) is not None and "producers/feed" in str(manual_step(INTENTS[2]))
    plugin = INTENTS[3].model_copy(update={"metadata": INTENTS[3].metadata.model_copy(
        update={"annotations": {"chamberlain.dev/rotator": "my-plugin"}})})
    assert manual_step(plugin) is None  # an explicit rotator may rotate any source


def test_scope_selection_is_exactly_one_and_an_unknown_owner_is_refused() -> None:
    with pytest.raises(UsageError, match="exactly one"):
        Scope.of(namespace="a", owner="b", everything=False)
    with pytest.raises(UsageError, match="exactly one"):
        Scope.of(namespace=None, owner=None, everything=False)
    assert Scope.of(namespace=None, owner=None, everything=True).describe() == "everything"
    with pytest.raises(UsageError, match="no such owner"):
        affected(PLATFORM, INTENTS, Scope("owner", "ghosts"))


def test_cli_dry_run_lists_what_would_rotate_and_contacts_nothing() -> None:
    result = run_cli("playbook", "compromise", str(EXAMPLES / "acme"), "--namespace", "monitoring", "--dry-run",
                     "-e", "dev", "--cluster", "dev1", "-o", "json",
                     "--vault-addr", "https://127.0.0.1:1", "--kubeconfig", "/nonexistent")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["dryRun"] and data["toRotate"] == ["grafana-admin"]
    assert data["secrets"][0]["because"] == ["consumer Secret monitoring/grafana-admin"]
    text = run_cli("playbook", "compromise", str(EXAMPLES / "acme"), "--namespace", "databases", "--dry-run",
                   "-e", "dev", "--cluster", "dev1")
    assert text.code == 0 and "MANUAL" in text.out and "orders-db-app" in text.out


def test_cli_refuses_without_reason_or_confirmation_before_contacting_anything() -> None:
    base = ("playbook", "compromise", str(EXAMPLES / "acme"), "--namespace", "monitoring", "-e", "dev",
            "--cluster", "dev1", "--vault-addr", "https://127.0.0.1:1", "--kubeconfig", "/nonexistent")
    missing = run_cli(*base)
    assert missing.code == 2 and "--reason is required" in missing.err
    unconfirmed = run_cli(*base, "--reason", "INC-1")
    assert unconfirmed.code == 2 and "pass --yes" in unconfirmed.err


# ------------------------------------------------------------------------------------------------ custody


def test_a_lost_key_needs_a_changed_platform_and_k_remaining_holders() -> None:
    stored = ("alice", "bob", "carol")
    with pytest.raises(UsageError, match="still declares the custody in force"):
        custody.plan(stored, 2, stored, 2, matches_platform=True, lost=["bob"])
    with pytest.raises(UsageError, match="not a holder"):
        custody.plan(stored, 2, stored, 2, matches_platform=False, lost=["dave"])
    with pytest.raises(UsageError, match="cannot be rekeyed"):
        custody.plan(stored, 2, ("alice", "erin", "frank"), 2, matches_platform=False, lost=["bob", "carol"])
    same_name = custody.plan(stored, 2, stored, 2, matches_platform=False, lost=["bob"])
    assert same_name.can_open == ["alice", "carol"] and same_name.kept == ["alice", "bob", "carol"]
    assert any("bob stays declared" in w for w in same_name.warnings)


def test_replacing_a_custodian_reads_as_added_removed_kept() -> None:
    p = custody.plan(("alice", "bob", "carol"), 2, ("alice", "bob", "dave"), 2, matches_platform=False)
    assert (p.added, p.removed, p.kept) == (["dave"], ["carol"], ["alice", "bob"])
    assert p.warnings == ()
    fresh = custody.plan(("share-1", "share-2"), 2, ("alice", "bob"), 2, matches_platform=False)
    assert fresh.removed == ["share-1", "share-2"] and fresh.added == ["alice", "bob"]
    noop = custody.plan(("alice", "bob"), 2, ("alice", "bob"), 2, matches_platform=True)
    assert "already match the Platform" in noop.warnings[0]


# ------------------------------------------------------------------------------------------------ root (pure)


def test_what_a_retired_key_still_opens() -> None:
    intents = {i.metadata.name: i for i in INTENTS}
    files = [BootstrapFile("smtp", "bootstrap/smtp.sops.yaml", frozenset({R1})),
             BootstrapFile("feed", "bootstrap/other.sops.yaml", frozenset({R2}))]
    found = exposed(files, R1, intents)
    assert [a.secret for a in found] == ["smtp"] and not found[0].automatic
    assert "Git history" in found[0].because[0]
    assert replaced([R1, R2], R1, "age1new") == ["age1new", R2]
    assert replaced([R1, R2], R1, R2) == [R2]


def test_swap_recipient_edits_in_place_and_is_idempotent() -> None:
    text = (EXAMPLES / "acme" / "platform.yaml").read_text()
    new, recipients, changed = swap_recipient(text, R1, R2)
    assert changed and recipients == [R2] and R1 not in new
    assert [ln for ln in new.splitlines() if "ageRecipients" not in ln] == \
           [ln for ln in text.splitlines() if "ageRecipients" not in ln]
    again, _, changed_again = swap_recipient(new, R1, R2)
    assert not changed_again and again == new
    with pytest.raises(UsageError, match="not the root in force"):
        swap_recipient(text, "age1" + "q" * 58, "age1" + "p" * 58)


# ------------------------------------------------------------------------------- root rotate with real sops/age


def _keygen(tools: Tools, path: Path) -> str:
    subprocess.run([str(tools.find("age-keygen")), "-o", str(path)], check=True, capture_output=True)
    path.chmod(0o600)
    return subprocess.run([str(tools.find("age-keygen")), "-y", str(path)], check=True, capture_output=True,
                          text=True).stdout.strip()


def _opens(tools: Tools, repo: Path, rel: str, identity: Path) -> bool:
    env = {**tool_env(tools.env), "SOPS_AGE_KEY_FILE": str(identity)}
    proc = subprocess.run([str(tools.find("sops")), "--config", "/dev/null", "decrypt", rel], cwd=repo, env=env,
                          capture_output=True, check=False, timeout=60)
    return proc.returncode == 0


def _age_recipients(repo: Path, rel: str) -> set[str]:
    import yaml

    doc = yaml.safe_load((repo / rel).read_text())
    return {a["recipient"] for a in doc["sops"]["age"]}


@pytest.fixture
def encrypted_repo(tmp_path: Path, tools: Tools) -> tuple[Path, Path]:
    """A repository with one bootstrap file encrypted to a root identity made here (outside the repository)."""
    need_tools("age-keygen", "sops")
    repo = make_repo(tmp_path / "repo", "canary-value-7f3a")
    old = tmp_path / "keys" / "old.agekey"
    old.parent.mkdir(mode=0o700)
    assert run_cli("root", "init", "--repo", str(repo), "--identity-file", str(old)).code == 0
    enc = run_cli("bootstrap", "encrypt", str(repo / "bootstrap" / "smtp-relay.sops.yaml"), "--repo", str(repo),
                  "--intent", "smtp-relay")
    assert enc.code == 0, enc.err
    return repo, old


def test_root_rotate_moves_git_to_the_new_root_and_lists_what_the_old_one_opens(
        encrypted_repo: tuple[Path, Path], tools: Tools, tmp_path: Path) -> None:
    repo, old = encrypted_repo
    rel = "bootstrap/smtp-relay.sops.yaml"
    new = tmp_path / "keys" / "new.agekey"
    args = ("root", "rotate", "--repo", str(repo), "--identity", str(old), "--new-identity-file", str(new),
            "--reason", "yearly rotation", "--offline")
    assert run_cli(*args, "-o", "json").code == 2  # no terminal: --yes is required
    assert not new.exists()
    result = run_cli(*args, "--yes", "-o", "json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["created"] and data["reencrypted"] == [rel]
    assert (new.stat().st_mode & 0o777) == 0o600
    assert data["oldRecipient"] not in (repo / "platform.yaml").read_text()
    assert data["newRecipient"] in (repo / "platform.yaml").read_text()
    assert data["newRecipient"] in (repo / ".sops.yaml").read_text()
    assert data["oldRecipient"] not in (repo / ".sops.yaml").read_text()
    assert _age_recipients(repo, rel) == {data["newRecipient"]}
    assert _opens(tools, repo, rel, new) and not _opens(tools, repo, rel, old)
    [smtp] = data["exposed"]
    assert smtp["secret"] == "smtp-relay" and not smtp["automatic"] and "chamberlain import" in smtp["manual"]
    assert "not rekeyed (offline)" in data["unsealShares"]
    assert any("authority rekey" in t for t in data["todo"]) and any("no ledger entry" in t for t in data["todo"])
    assert "canary-value-7f3a" not in result.out + result.err and "AGE-SECRET-KEY" not in result.out + result.err
    assert load_repository(repo).platform is not None
    # Resumable and idempotent: the same two files again change nothing and still name what is exposed.
    before = (repo / rel).read_bytes()
    again = json.loads(run_cli(*args, "--yes", "-o", "json").out)
    assert not again["created"] and again["reencrypted"] == [] and [a["secret"] for a in again["exposed"]] == \
        ["smtp-relay"]
    assert (repo / rel).read_bytes() == before
    # The old identity is no longer the root in force: a second rotation from it is refused, nothing written.
    other = tmp_path / "keys" / "other.agekey"
    refused = run_cli("root", "rotate", "--repo", str(repo), "--identity", str(old), "--new-identity-file",
                      str(other), "--reason", "r", "--offline", "--yes")
    assert refused.code == 2 and "not the root in force" in refused.err
    same = run_cli("root", "rotate", "--repo", str(repo), "--identity", str(new), "--new-identity-file", str(new),
                   "--reason", "r", "--offline", "--yes")
    assert same.code == 2 and "is the key being rotated" in same.err


def test_gitops_key_rotate_reencrypts_the_clusters_files_and_swaps_the_flux_key(
        encrypted_repo: tuple[Path, Path], tools: Tools, tmp_path: Path) -> None:
    from chamberlain.kube.fake import FakeKube
    from chamberlain.service import playbooks

    repo, root_key = encrypted_repo
    rel = "bootstrap/smtp-relay.sops.yaml"
    first = tmp_path / "gitops" / "lab1.agekey"
    created = run_cli("root", "gitops-key", "lab1", "--identity-file", str(first), "--repo", str(repo))
    assert created.code == 0, created.err
    old_rec = created.out.strip()
    from chamberlain.bootstrap.sops import Sops

    Sops.locate(tools).updatekeys(repo, rel, identity_file=root_key)
    assert _opens(tools, repo, rel, first)

    class Servers:  # only what the in-cluster step needs; FakeKube stands in for the API server (a fake)
        def __init__(self) -> None:
            self.k = FakeKube()

        def kube(self) -> FakeKube:
            return self.k

    servers = Servers()
    servers.k.create_secret("flux-system", "sops-age", {"identity.agekey": first.read_text()})
    second = tmp_path / "gitops" / "lab1-2.agekey"
    result = playbooks.gitops_key_rotate(repo, "lab1", second, root_key, "key on a lost laptop", tools,
                                         servers=servers, caller=None)  # type: ignore[arg-type]
    assert result.reencrypted == [rel] and result.old_recipient == old_rec
    assert _opens(tools, repo, rel, second) and not _opens(tools, repo, rel, first)
    assert _opens(tools, repo, rel, root_key)
    assert old_rec not in (repo / "platform.yaml").read_text() + (repo / ".sops.yaml").read_text()
    assert [a.secret for a in result.exposed] == ["smtp-relay"]
    stored = servers.k.get_secret("flux-system", "sops-age")
    assert stored is not None and stored.data["identity.agekey"] == second.read_text()
    assert stored.data[playbooks.PREVIOUS_KEY] == first.read_text()  # Flux still opens the commit it is on
    retired = playbooks.gitops_key_rotate(repo, "lab1", second, root_key, "key on a lost laptop", tools,
                                          servers=servers, caller=None,  # type: ignore[arg-type]
                                          retire_old=True)
    assert retired.in_cluster_key == "old key retired" and retired.reencrypted == []
    assert [a.secret for a in retired.exposed] == ["smtp-relay"]  # still named: Git history is unchanged
    stored = servers.k.get_secret("flux-system", "sops-age")
    assert stored is not None and set(stored.data) == {"identity.agekey"}
    with pytest.raises(UsageError, match="root-of-trust recipient"):
        playbooks.gitops_key_rotate(repo, "lab1", root_key, root_key, "r", tools, servers=None, caller=None,
                                    old_recipient=result.new_recipient)


def test_a_cluster_of_several_environments_needs_environment_to_act() -> None:
    from chamberlain.service.playbooks import compromise_plan

    # acme's dev1 serves dev and the ephemeral preview environments
    plan = compromise_plan(EXAMPLES / "acme", Scope("namespace", "monitoring"), cluster="dev1")
    assert plan.environment == "*" and plan.to_rotate == ["grafana-admin"]
    with pytest.raises(UsageError, match="pass --environment"):
        plan.check_actionable()
    compromise_plan(EXAMPLES / "acme", Scope("namespace", "monitoring"), environment="dev",
                    cluster="dev1").check_actionable()
