"""Red-team findings on issue 14 (templates, publication, existingSecret, adopt): each test is an attack that
must fail. Pure: validate on copied example repositories, fakes for the rest (no servers)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from chamberlain.checks import run_checks
from chamberlain.intent.loader import load_repository
from chamberlain.render.topology import RenderError, build_topology
from tests.conftest import CORPUS, EXAMPLES


def _rules(repo: Path) -> list[tuple[str, str]]:
    return sorted((f.rule, f.file) for f in run_checks(load_repository(repo)) if f.severity == "error")


# ------------------------------------------------------------------------------------------------ templates

GRANTOR = """apiVersion: chamberlain.dev/v1alpha1
kind: SecretIntent
metadata: {name: b-creds}
spec:
  owner: team-b
  purpose: a credential whose owner grants namespace shared its username only
  classification: runtime
  source:
    generate:
      username: {type: fixed-name, name: bee}
      password: {type: password, length: 32}
  rotation: {type: static}
  consumers:
    - namespace: shared
      secretName: b-user
      keys: {USER: username}
"""
TAKER = """---
apiVersion: chamberlain.dev/v1alpha1
kind: SecretIntent
metadata: {name: a-dsn}
spec:
  owner: team-a
  purpose: a connection string of team a's own
  classification: runtime
  source:
    generate:
      token: {type: token}
  rotation: {type: static}
  consumers:
    - namespace: shared
      secretName: a-dsn
      template:
        DSN: "x://{b-creds.KEY}@{a-dsn.token}"
"""


def _template_repo(tmp_path: Path, key: str) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(CORPUS / "base", repo)
    (repo / "intents" / "extra.yaml").write_text(GRANTOR + TAKER.replace("KEY", key))
    return repo


def test_a_template_reads_only_keys_the_grant_maps(tmp_path: Path) -> None:
    """team-b granted namespace shared its username; a template in shared must not take its password."""
    assert ("CH117", "intents/extra.yaml") not in _rules(_template_repo(tmp_path / "ok", "username"))
    repo = _template_repo(tmp_path / "bad", "password")
    assert ("CH117", "intents/extra.yaml") in _rules(repo)
    loaded = load_repository(repo)
    assert loaded.platform is not None
    with pytest.raises(RenderError, match="CH117"):
        build_topology(loaded.platform, [p.obj for p in loaded.policies], [i.obj for i in loaded.intents])


# ------------------------------------------------------------------------------------------------ relays

RELAY = """---
apiVersion: chamberlain.dev/v1alpha1
kind: SecretIntent
metadata: {name: a-relay}
spec:
  owner: team-a
  purpose: re-publishes what team-b granted namespace shared, to wherever team-a likes
  classification: SOURCEKIND
  source:
    SOURCE
  rotation: {type: static}
  consumers:
    - {namespace: elsewhere, secretName: relayed}
"""


@pytest.mark.parametrize(("kind", "source", "rule"), [
    pytest.param("config", "publication: {namespace: shared, secretName: b-user, keys: [USER]}", "CH060",
                 id="publication"),
    pytest.param("runtime", "existingSecret: {namespace: shared, secretName: b-user, keys: [USER]}", "CH121",
                 id="existing-secret"),
])
def test_another_intents_consumer_secret_is_no_source(tmp_path: Path, kind: str, source: str, rule: str) -> None:
    """A consumer Secret is the materialization of another owner's grant to one namespace: publishing or importing
    it would relay that value (and, for a publication, each of its rotations) to namespaces its owner never
    granted."""
    repo = tmp_path / "repo"
    shutil.copytree(CORPUS / "base", repo)
    (repo / "intents" / "extra.yaml").write_text(
        GRANTOR + RELAY.replace("SOURCEKIND", kind).replace("SOURCE", source))
    assert (rule, "intents/extra.yaml") in _rules(repo)  # publication: CH060 already (a second writer)


# ------------------------------------------------------------------------------------------------ adopt --out


@pytest.mark.parametrize("listed", ["ABS", "intents/../../victim.txt", "intents/link/victim.txt"])
def test_adopt_never_removes_a_file_outside_out(tmp_path: Path, listed: str) -> None:
    """The marker of an --out directory someone else prepared (a cloned repository, a shared folder) lists files
    outside it: a re-run removes only what it wrote under --out."""
    from chamberlain.adopt.write import MARKER, write

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "sub" / "out"
    (out / "intents").mkdir(parents=True)
    (out / "intents" / "link").symlink_to(tmp_path, target_is_directory=True)
    (out / MARKER).write_text(listed.replace("ABS", str(victim)) + "\n")
    write(out, {"platform.yaml": "kind: Platform\n"})
    assert victim.read_text() == "keep me"


def test_adopt_never_writes_through_a_symbolic_link_out_of_out(tmp_path: Path) -> None:
    from chamberlain.adopt.write import MARKER, write
    from chamberlain.errors import UsageError

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / MARKER).write_text("")
    (out / "intents").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UsageError, match="outside"):
        write(out, {"intents/team/x.yaml": "kind: SecretIntent\n"})
    assert list(elsewhere.iterdir()) == []


def test_adopt_refuses_a_secret_declared_twice(tmp_path: Path) -> None:
    """Two manifests of one Secret: adopt reports it and writes no intent (it used to adopt it under a made-up
    name and report it unmapped at once)."""
    from chamberlain.adopt.manifests import read_directory
    from chamberlain.adopt.mapping import Settings, adopt

    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: shop-db, namespace: shop}\n"
                                     "stringData: {password: x}\n")
    result = adopt(read_directory(tmp_path), Settings("dev", "dev1"))
    assert result.adopted == ()
    assert {(u.kind, u.namespace, u.name) for u in result.unmapped} == {("Secret", "shop", "shop-db")}
    assert all("declared 2 times" in u.reason for u in result.unmapped)


# ------------------------------------------------------------------------------------------------ not fixed

EXFILTRATE = """apiVersion: chamberlain.dev/v1alpha1
kind: SecretIntent
metadata: {name: search-loot}
spec:
  owner: team-search
  purpose: team-web accepts team-search (to deliver the search endpoint); team-search reads web's Secrets back
  classification: derived
  source:
    publication: {namespace: web, secretName: storefront-oauth, keys: [client-secret]}
  rotation: {type: event-based}
  consumers:
    - {namespace: search, secretName: storefront-oauth}
"""


def test_accepts_from_does_not_let_a_guest_publish_the_hosts_secrets(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "acme-tenancy", repo)
    (repo / "intents" / "team-search" / "loot.yaml").write_text(EXFILTRATE)
    # A warning, not an error: repositories written before acceptsPublishingFrom existed stay valid (--strict
    # fails); the grant on the holder silences it, and a publication from a namespace not accepted at all is CH081.
    loot = "intents/team-search/loot.yaml"
    found = [(f.rule, f.severity) for f in run_checks(load_repository(repo)) if f.file == loot]
    assert found == [("CH125", "warning")]
    platform = repo / "platform.yaml"
    platform.write_text(platform.read_text().replace("acceptsFrom: [team-search]", "acceptsFrom: []"))
    assert ("CH081", loot) in _rules(repo)


@pytest.mark.xfail(strict=True, reason="not fixed: a run in flight resumes over a partial push (ESO pushes the "
                   "declared keys one by one and stops at the missing one); the consumers it force-syncs fetch the "
                   "partial latest version and the run marks it done. Holding mid-run needs _hold to keep the "
                   "pending run (it overwrites the record today)")
def test_a_partial_push_during_a_run_holds_the_run() -> None:
    from chamberlain.rotation import external as ext

    record = ext.ExternalRecord(version=4, marker="m", run="r1", stage="refreshed", pending=5, started="t")
    push = ext.PushState("push", False, "Errored", "set secret failed: secret key password does not exist")
    d = ext.decide(record, 6, {}, ext.Seen(6, 0.0, 0.0), push, ["password", "username"], 10.0)
    assert d.action == "hold"


def test_adopt_takes_no_name_with_a_trailing_newline(tmp_path: Path) -> None:
    """``re.match`` with a ``$`` pattern accepts "shop-db\\n": adopt wrote intents/shop\\n/shop-db\\n.yaml, an
    invalid repository, and split its own output lines."""
    from chamberlain.adopt.manifests import read_directory
    from chamberlain.adopt.mapping import Settings, adopt

    (tmp_path / "a.yaml").write_text('apiVersion: v1\nkind: Secret\nmetadata: {name: "shop-db\\n", namespace: shop}\n'
                                     "stringData: {password: x}\n---\napiVersion: v1\nkind: Secret\n"
                                     'metadata: {name: other, namespace: shop}\nstringData: {"password\\n": x}\n')
    result = adopt(read_directory(tmp_path), Settings("dev", "dev1"))
    assert result.adopted == ()
    assert sorted(u.name for u in result.unmapped) == ["other", "shop-db\n"]


def test_adopt_prints_estate_names_escaped(tmp_path: Path) -> None:
    """A name no API server checked (a manifest) can hold a newline or a terminal escape: the text output and
    MIGRATION.md show it escaped, on one line."""
    from tests.conftest import run_cli

    (tmp_path / "est").mkdir()
    (tmp_path / "est" / "a.yaml").write_text('apiVersion: v1\nkind: Secret\nmetadata: {name: "x\\e[2Jy\\nz", '
                                             "namespace: shop}\nstringData: {password: x}\n")
    out = tmp_path / "out"
    result = run_cli("adopt", "--from-manifests", str(tmp_path / "est"), "--out", str(out), "-e", "dev", "-c",
                     "dev1", "--age-recipient", "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3ke3xh")
    shown = result.out + result.err
    assert "\x1b" not in shown and "x\\x1b[2Jy\\nz" in shown, shown
    guide = (out / "MIGRATION.md").read_text()
    assert "\x1b" not in guide and "| Secret shop/x\\x1b[2Jy\\nz |" in guide


# ------------------------------------------------------------------------------------------------ takeover


def test_a_takeover_never_points_the_secret_at_a_gone_external_secret(tmp_path: Path) -> None:
    """GitOps re-creates chamberlain's ExternalSecret (new uid) while the controller swap retries a conflict: an
    owner reference to the old uid names an owner that no longer exists, and the garbage collector deletes the
    Secret every consumer reads. Each attempt uses the ExternalSecret as it is now. (Fake Kubernetes.)"""
    from chamberlain.handover import takeover as tk
    from chamberlain.kube.api import KubeConflict, OwnerRef
    from tests.unit.test_adopt_import import _adopted_world, _our_es, _ref

    unit, kv, kube = _adopted_world(tmp_path)
    marker = kv.read_metadata("secret", unit.vault.path).custom["value-marker"]  # type: ignore[union-attr]
    _our_es(kube, marker)
    kube.secret_owner_refs[("legacy-shop", "shop-db")] = (_ref("ExternalSecret", "old"),)
    real = kube.set_secret_controller
    calls: list[str] = []

    def racing(namespace: str, name: str, controller: OwnerRef, resource_version: str) -> None:
        calls.append(controller.uid)
        if len(calls) == 1:  # GitOps replaced the ExternalSecret meanwhile
            kube.external_secrets[(namespace, name)]["metadata"]["uid"] = "uid-recreated"
            raise KubeConflict("changed since read")
        real(namespace, name, controller, resource_version)

    kube.set_secret_controller = racing  # type: ignore[method-assign]
    out = tk.take_over(unit, kv, kube, timeout=0)
    assert out.result == "taken-over", out
    assert kube.secret_owner_refs[("legacy-shop", "shop-db")][-1].uid == "uid-recreated"


@pytest.mark.parametrize("secret", ["bootstrap-smtp-relay", "not-declared-in-git"])
def test_an_existing_secret_never_imports_from_the_bootstrap_namespace(tmp_path: Path, secret: str) -> None:
    """A bootstrap Secret, and its namespace, are read by handover only (CH070/CH071 refuse consumers and
    publications there); an import would copy the platform's SMTP password into this owner's path."""
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "acme", repo)
    (repo / "intents" / "extra.yaml").write_text(
        RELAY.replace("SOURCEKIND", "runtime").replace(
            "SOURCE", f"existingSecret: {{namespace: chamberlain-bootstrap, secretName: {secret}, "
                      "keys: [password]}").replace("team-a", "team-web").replace("elsewhere", "web"))
    assert ("CH121", "intents/extra.yaml") in _rules(repo)
