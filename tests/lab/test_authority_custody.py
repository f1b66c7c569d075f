"""Custody against the real servers (SPEC §6, issue 11 item 4): each unseal share sealed to exactly one custodian,
k of them needed to unseal, generate a root token or rekey; the GitOps controller's in-cluster key opens bootstrap
files, never a share.

The path a live installation takes is the one tested: ``authority init`` without custody (every share sealed to the
root identity), then the Platform declares custodians and ``authority rekey`` with the root identity moves the
shares to them. Then: k-1 custodians cannot unseal (the server keeps their progress), k can; generate-root and
rekey refuse k-1 and work with k; a changed custodian list is a rekey to it; finally a wiped server is initialized
with custody from the start, crashed before it was configured, and resumed only with k custodians' identities.

Own lab, ports shifted by ``CHAMBERLAIN_LAB_TEST_PORT_OFFSET`` + 1100; tests run in file order and build on each
other. Identities are generated per run (pyrage), never the repository's fixtures, except the root's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pyrage
import pytest
import yaml

from chamberlain.audit.ledger import LedgerReader
from chamberlain.authority import lifecycle
from chamberlain.authority import material as material_mod
from chamberlain.authority.errors import AuthorityError
from chamberlain.clock import SystemClock
from chamberlain.intent.loader import load_repository
from chamberlain.intent.paths import bootstrap_recipients
from chamberlain.kube.client import KubeClient
from chamberlain.lab import builds
from chamberlain.lab import lab as lab_mod
from tests.conftest import holds_authority_token, host_settings, lab_authority, lab_host, unbuilt
from tests.lab.test_authority_lifecycle import IDENTITY, NS, Env, _json, _root_tokens

pytestmark = [pytest.mark.lab, pytest.mark.vault_compat]

REPO_ROOT = Path(__file__).resolve().parents[2]
CUSTODIANS = ("alice", "bob", "carol")
THRESHOLD = 2


class Keys:
    """Generated age identities, one file each (0600), outside the repository."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.recipients: dict[str, str] = {}

    def make(self, name: str) -> Path:
        identity = pyrage.x25519.Identity.generate()
        path = self.dir / f"{name}.agekey"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(f"# {name}\n{identity}\n")
        self.recipients[name] = str(identity.to_public())
        return path

    def path(self, name: str) -> Path:
        return self.dir / f"{name}.agekey"

    def identities(self, name: str) -> list[pyrage.x25519.Identity]:
        return lifecycle.load_identities(self.path(name))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    missing = unbuilt(["etcd", "kube-apiserver", "vault", "external-secrets", "sops"])
    if missing or builds.postgres_bindir() is None:
        pytest.skip(f"lab binaries missing ({missing}); run `python -m chamberlain.lab build`")
    offset = int(os.environ.get("CHAMBERLAIN_LAB_TEST_PORT_OFFSET", "1000")) + 1100
    work = tmp_path_factory.mktemp("custody")
    config = lab_mod.LabConfig(lab_dir=work / "lab", host=lab_host(), ports=lab_mod.Ports().shifted(offset),
                               dev=False, authority=lab_authority())
    started = time.monotonic()
    lab_mod.up(config, progress=lambda _m: None)
    print(f"\n[custody lab] up in {time.monotonic() - started:.1f}s")
    lab = lab_mod.Lab(config)
    try:
        repo = work / "repo"
        shutil.copytree(REPO_ROOT / "tests" / "corpus" / "base", repo)
        kubectl = lab.apiserver.kubectl
        kubectl("create", "namespace", "vault-system")
        kubectl("-n", "vault-system", "create", "serviceaccount", "vault-auth")
        kubectl("create", "clusterrolebinding", "vault-auth-delegator", "--clusterrole=system:auth-delegator",
                "--serviceaccount=vault-system:vault-auth")
        token = kubectl("-n", "vault-system", "create", "token", "vault-auth", "--duration=24h").stdout.strip()
        reviewer = work / "reviewer.jwt"
        reviewer.write_text(token, encoding="utf-8")
        reviewer.chmod(0o600)
        kube = KubeClient.from_kubeconfig(lab.kubeconfig, clock=SystemClock())
        yield Env(lab, repo, work, reviewer, kube, [])
        kube.close()
    finally:
        lab_mod.down(config.lab_dir, lab_host(), progress=lambda _m: None)
        lab.postgres.purge()


@pytest.fixture(scope="module")
def keys(env: Env) -> Keys:
    directory = env.work / "identities"
    directory.mkdir(mode=0o700)
    k = Keys(directory)
    for name in (*CUSTODIANS, "dave", "gitops-dev1"):
        k.make(name)
    return k


def _declare(env: Env, keys: Keys, custodians: tuple[str, ...], threshold: int = THRESHOLD) -> None:
    """Write rootOfTrust.custody (and the dev1 GitOps key, which must never open a share) into the Platform."""
    path = env.repo / "platform.yaml"
    docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    spec = docs[0]["spec"]
    spec["rootOfTrust"]["custody"] = {
        "threshold": threshold,
        "custodians": [{"name": n, "ageRecipient": keys.recipients[n]} for n in custodians]}
    spec["gitops"] = {"decryptionRecipients": {"dev1": [keys.recipients["gitops-dev1"]]}}
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")


def _material(env: Env) -> lifecycle.SealedMaterial:
    material = lifecycle.SealedStore(env.kube, NS).load()
    assert material is not None and material.shares
    return material


def _assert_one_share_per_custodian(material: lifecycle.SealedMaterial, keys: Keys,
                                    custodians: tuple[str, ...]) -> list[str]:
    """Each custodian opens exactly their own share; nobody else (root, GitOps key, other names) opens any."""
    assert material.holders == custodians and len(material.shares) == len(custodians)
    shares = []
    for i, name in enumerate(custodians):
        opened = material.open_held(keys.identities(name))
        assert [j for j, _ in opened] == [i], f"{name} opens shares {[j for j, _ in opened]}"
        shares.append(opened[0][1])
    for outsider in {"alice", "bob", "carol", "dave", "gitops-dev1"} - set(custodians):
        assert material.open_held(keys.identities(outsider)) == [], f"{outsider} opens a share"
    assert material.open_held(lifecycle.load_identities(IDENTITY)) == [], "the root identity opens a share"
    assert len(set(shares)) == len(shares)
    return shares


def _no_share_leaked(env: Env, shares: list[str]) -> None:
    for text in env.outputs:
        assert not any(s in text for s in shares)
        assert not holds_authority_token(text)


def _unseal(env: Env, *names: str, keys: Keys) -> dict:  # type: ignore[type-arg]
    ids = [a for n in names for a in ("--identity", str(keys.path(n)))]
    return _json(env.cli("authority", "unseal", *ids, str(env.repo), "-o", "json"))


# ------------------------------------------------------------------------------------------------- tests


def test_an_installation_without_custody(env: Env) -> None:
    data = _json(env.cli("authority", "init", "--shares", "3", "--threshold", "2", str(env.repo),
                         *env.config_args(), "-o", "json"))
    assert data["initialized_now"] and data["root_revoked"]
    material = _material(env)
    assert material.holders == ()
    # Without custody the root identity opens every share: the threshold protects nothing, and status says so.
    assert len(material.open(lifecycle.load_identities(IDENTITY))) == 3
    text = env.cli("authority", "status", str(env.repo)).stdout
    assert "custody:        none: every share opens with any root identity" in text


def test_rekey_moves_the_installation_to_custody(env: Env, keys: Keys) -> None:
    before = _material(env)
    _declare(env, keys, CUSTODIANS)
    status = _json(env.cli("authority", "status", str(env.repo), "-o", "json"))
    assert status["sealed_material"]["matches_platform"] is False
    # The Platform decides the layout: a flag that says otherwise is refused before anything changes.
    refused = env.cli("authority", "rekey", "--cluster", "dev1", "--identity", str(IDENTITY), "--threshold", "3",
                      str(env.repo))
    assert refused.returncode == 2 and "contradicts the Platform's rootOfTrust.custody" in refused.stderr
    assert _material(env).shares == before.shares
    data = _json(env.cli("authority", "rekey", "--cluster", "dev1", "--identity", str(IDENTITY), str(env.repo),
                         "-o", "json"))
    assert data["shares"] == 3 and data["threshold"] == THRESHOLD and data["generation"] == before.generation + 1
    material = _material(env)
    shares = _assert_one_share_per_custodian(material, keys, CUSTODIANS)
    secret = env.kube.get_secret(NS, lifecycle.SECRET_NAME)
    assert secret is not None and secret.annotations[material_mod.ANNOTATION_SHARE_HOLDERS] == "alice,bob,carol"
    status = _json(env.cli("authority", "status", str(env.repo), "-o", "json"))
    assert status["sealed_material"]["matches_platform"] is True
    assert status["sealed_material"]["custodians"] == list(CUSTODIANS)
    ledger = LedgerReader(env.configurator().kv, "secret")
    rekeys = [e for e in ledger.entries() if e.event == "authority-rekey"]
    assert rekeys[-1].details["custodians"] == "alice,bob,carol"
    _no_share_leaked(env, shares)


def test_k_minus_one_custodians_cannot_unseal_k_can(env: Env, keys: Keys) -> None:
    env.restart_vault()
    assert env.anonymous().seal.status().sealed
    # The root identity no longer opens anything.
    proc = env.cli("authority", "unseal", "--identity", str(IDENTITY), str(env.repo))
    assert proc.returncode == 1 and "open none of the unseal shares" in proc.stderr
    first = _unseal(env, "alice", keys=keys)
    assert first == {**first, "was_sealed": True, "sealed": True, "submitted": 1, "progress": 1,
                     "custodians": ["alice"]}
    # The same custodian again does not count twice.
    again = _unseal(env, "alice", keys=keys)
    assert again["sealed"] is True and again["progress"] == 1
    text = env.cli("authority", "unseal", "--identity", str(keys.path("alice")), str(env.repo))
    assert "1 more custodian must run" in text.stdout
    assert env.anonymous().seal.status().sealed
    done = _unseal(env, "bob", keys=keys)
    assert done == {**done, "was_sealed": True, "sealed": False, "custodians": ["bob"]}
    assert not env.anonymous().seal.status().sealed
    _no_share_leaked(env, _assert_one_share_per_custodian(_material(env), keys, CUSTODIANS))


def test_generate_root_needs_k_custodians(env: Env, keys: Keys) -> None:
    material = _material(env)
    alice = [k for _, k in material.open_held(keys.identities("alice"))]
    both = [k for _, k in material.open_held([*keys.identities("alice"), *keys.identities("carol")])]
    vault = env.anonymous()
    with pytest.raises(AuthorityError, match="not enough valid shares"):
        vault.seal.generate_root(alice)
    root = vault.seal.generate_root(both)
    vault.use_token(root.token)
    assert "root" in vault.auth.lookup_self().policies
    vault.auth.revoke_self()
    assert _root_tokens(env.configurator()) == 0


def test_rekey_needs_k_custodians_and_reseals_one_per_custodian(env: Env, keys: Keys) -> None:
    before = _material(env)
    refused = env.cli("authority", "rekey", "--cluster", "dev1", "--identity", str(keys.path("alice")), str(env.repo))
    assert refused.returncode == 1 and "rekey needs 2 shares" in refused.stderr and "Nothing was changed" \
        in refused.stderr
    after_refusal = _material(env)
    assert after_refusal.shares == before.shares and not after_refusal.next_shares
    assert not env.configurator().seal.rekey_progress().started
    old = _assert_one_share_per_custodian(before, keys, CUSTODIANS)
    data = _json(env.cli("authority", "rekey", "--cluster", "dev1", "--identity", str(keys.path("alice")), "--identity",
                         str(keys.path("carol")), str(env.repo), "-o", "json"))
    assert data["generation"] == before.generation + 1
    new = _assert_one_share_per_custodian(_material(env), keys, CUSTODIANS)
    assert not set(new) & set(old)
    env.restart_vault()
    assert _unseal(env, "carol", keys=keys)["sealed"] is True
    assert _unseal(env, "bob", keys=keys)["sealed"] is False
    _no_share_leaked(env, [*old, *new])


def test_a_changed_custodian_list_is_a_rekey_to_it(env: Env, keys: Keys) -> None:
    _declare(env, keys, ("alice", "bob", "dave"))
    assert _json(env.cli("authority", "status", str(env.repo), "-o", "json"))["sealed_material"][
        "matches_platform"] is False
    # The shares in force are the old list's: carol (leaving) and bob open them; dave gets a share only now.
    data = _json(env.cli("authority", "rekey", "--cluster", "dev1", "--identity", str(keys.path("carol")), "--identity",
                         str(keys.path("bob")), str(env.repo), "-o", "json"))
    assert data["shares"] == 3
    new = _assert_one_share_per_custodian(_material(env), keys, ("alice", "bob", "dave"))
    env.restart_vault()
    # carol left: she holds nothing of the new set.
    proc = env.cli("authority", "unseal", "--identity", str(keys.path("carol")), str(env.repo))
    assert proc.returncode == 1 and "open none" in proc.stderr
    assert _unseal(env, "dave", keys=keys)["sealed"] is True
    assert _unseal(env, "alice", keys=keys)["sealed"] is False
    _no_share_leaked(env, new)


def test_the_gitops_key_opens_bootstrap_files_never_a_share(env: Env, keys: Keys) -> None:
    repo = load_repository(env.repo)
    assert repo.platform is not None
    intent = next(i.obj for i in repo.intents if i.obj.metadata.name == "app-db")
    recipients = bootstrap_recipients(repo.platform, intent)
    assert keys.recipients["gitops-dev1"] in recipients
    sops = str(builds.binary(host_settings().lab_cache, "sops"))
    plain = env.work / "bootstrap.yaml"
    plain.write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: b, namespace: app}\n"
                     "stringData: {password: not-a-share}\n", encoding="utf-8")
    base = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")}
    enc = subprocess.run([sops, "--encrypt", "--age", ",".join(recipients), "--encrypted-regex",
                          "^(data|stringData)$", str(plain)], capture_output=True, text=True, env=base,
                         check=True, timeout=60)
    encrypted = env.work / "bootstrap.enc.yaml"
    encrypted.write_text(enc.stdout, encoding="utf-8")
    dec = subprocess.run([sops, "--decrypt", str(encrypted)], capture_output=True, text=True, check=False,
                         env={**base, "SOPS_AGE_KEY_FILE": str(keys.path("gitops-dev1"))}, timeout=60)
    assert dec.returncode == 0 and "not-a-share" in dec.stdout
    material = _material(env)
    gitops = keys.identities("gitops-dev1")
    assert material.open_held(gitops) == [] and material.open_held(gitops, next_=True) == []
    assert all(re.match(r"-----BEGIN AGE ENCRYPTED FILE-----", c) for c in material.shares)


def test_init_with_custody_resumes_only_with_k_custodians(env: Env, keys: Keys) -> None:
    env.restart_vault(wipe=True)
    env.kube.delete_secret(NS, lifecycle.SECRET_NAME)
    custodians = ("alice", "bob", "dave")
    refused = env.cli("authority", "init", "--shares", "5", str(env.repo), *env.config_args())
    assert refused.returncode == 2 and "contradicts the Platform's rootOfTrust.custody" in refused.stderr
    assert not env.anonymous().seal.status().initialized
    init = ("authority", "init", str(env.repo), *env.config_args(), "-o", "json")
    crashed = env.cli(*init, crash_at="init.after-unseal")
    assert crashed.returncode == 137, crashed.stderr
    shares = _assert_one_share_per_custodian(_material(env), keys, custodians)
    assert _material(env).threshold == THRESHOLD
    # Not configured yet, so only a temporary root token from k shares can finish: one custodian is not enough.
    short = env.cli(*init, "--identity", str(keys.path("alice")))
    assert short.returncode == 1 and "open 1 of the 2 shares needed" in short.stderr
    data = _json(env.cli(*init, "--identity", str(keys.path("alice")), "--identity", str(keys.path("dave"))))
    assert data["authenticated_as"].startswith("temporary root token") and data["root_revoked"]
    assert _root_tokens(env.configurator()) == 0
    env.restart_vault()
    assert _unseal(env, "bob", keys=keys)["sealed"] is True
    assert _unseal(env, "dave", keys=keys)["sealed"] is False
    _no_share_leaked(env, shares)


# ------------------------------------------------------------------------------------- playbooks (issue 13)


def _declare_pairs(env: Env, pairs: list[tuple[str, str]] | None, threshold: int = THRESHOLD) -> None:
    """rootOfTrust.custody as (name, recipient) pairs (a custodian may keep their name with a new key); None: drop
    custody (shares sealed to the root recipients again)."""
    path = env.repo / "platform.yaml"
    docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    trust = docs[0]["spec"]["rootOfTrust"]
    if pairs is None:
        trust.pop("custody", None)
    else:
        trust["custody"] = {"threshold": threshold,
                            "custodians": [{"name": n, "ageRecipient": r} for n, r in pairs]}
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")


def test_playbook_lost_custodian_key_rekeys_and_the_lost_share_opens_nothing(env: Env, keys: Keys) -> None:
    keys.make("bob-laptop-2")
    before = _material(env)
    assert before.holders == ("alice", "bob", "dave")
    playbook = ("playbook", "custodians", str(env.repo), "--cluster", "dev1", "--lost", "bob")
    # Nothing changed in Git yet: a rekey would seal bob's new share to the lost key again. Refused (the plan is
    # the same for --dry-run and the real run), nothing touched.
    refused = env.cli(*playbook, "--dry-run")
    assert refused.returncode == 2 and "still declares the custody in force" in refused.stderr
    _declare_pairs(env, [("alice", keys.recipients["alice"]), ("bob", keys.recipients["bob-laptop-2"]),
                         ("dave", keys.recipients["dave"])])
    done = _json(env.cli(*playbook, "--identity", str(keys.path("alice")), "--identity", str(keys.path("dave")),
                         "--reason", "bob lost his laptop", "--yes", "-o", "json"))
    assert done["lost"] == ["bob"] and done["kept"] == ["alice", "bob", "dave"] and not done["matchesPlatform"]
    assert done["generation"] == before.generation + 1
    after = _material(env)
    assert after.holders == ("alice", "bob", "dave")
    # The rekey verified the new set with the server (the old one, bob's lost share with it, is out of force).
    assert [i for i, _ in after.open_held(keys.identities("bob-laptop-2"))] == [1]
    assert after.open_held(keys.identities("bob")) == [], "the lost key opens a share of the new set"
    [entry] = [e for e in LedgerReader(env.configurator().kv, "secret").entries() if e.event == "authority-rekey"][-1:]
    assert entry.reason is not None and "bob lost his laptop" in entry.reason and "lost: bob" in entry.reason
    _no_share_leaked(env, [k for _, k in after.open_held([*keys.identities("alice"), *keys.identities("dave")])])


def test_root_rotate_rekeys_shares_sealed_to_the_old_root(env: Env, keys: Keys) -> None:
    # Back to no custody (every share sealed to the root), the layout a root rotation must rekey.
    _declare_pairs(env, None)
    env.cli("authority", "rekey", "--cluster", "dev1", "--identity", str(keys.path("alice")), "--identity",
            str(keys.path("dave")), str(env.repo), "-o", "json").check_returncode()
    before = _material(env)
    assert before.holders == () and len(before.open(lifecycle.load_identities(IDENTITY))) == len(before.shares)
    new_root = env.work / "roots" / "root-2.agekey"
    data = _json(env.cli("root", "rotate", "--repo", str(env.repo), "--identity", str(IDENTITY),
                         "--new-identity-file", str(new_root), "--reason", "yearly root rotation", "--yes",
                         "--cluster", "dev1", "-o", "json"))
    assert data["created"] and "rekeyed to the new root" in data["unsealShares"]
    assert data["ledgerSeq"] is not None
    after = _material(env)
    assert after.generation == before.generation + 1
    assert len(after.open(lifecycle.load_identities(new_root))) == len(after.shares)
    assert after.open_held(lifecycle.load_identities(IDENTITY)) == [], "the old root opens a share"
    entries = LedgerReader(env.configurator().kv, "secret").entries()
    rekey = [e for e in entries if e.event == "authority-rekey"][-1]
    assert rekey.reason == "root of trust rotated: yearly root rotation"
    [playbook] = [e for e in entries if e.event == "playbook"]
    assert playbook.reason == "yearly root rotation" and playbook.details["playbook"] == "root-rotate"
    assert playbook.details["new_recipient"] == data["newRecipient"]
    _no_share_leaked(env, after.open(lifecycle.load_identities(new_root)))
