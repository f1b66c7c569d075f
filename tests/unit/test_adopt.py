"""``chamberlain adopt``: reading an estate (manifests; the cluster and the authority through fakes, said so where
used), mapping it to intents, refusing what is ambiguous with a reason, the plan's order, and no value anywhere.

The real-server test of ``--from-cluster`` is tests/lab/test_adopt_lab.py.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from chamberlain.adopt import plan as planning
from chamberlain.adopt.authority import read_authority
from chamberlain.adopt.cluster import read_cluster
from chamberlain.adopt.estate import Estate, Origin, SecretObj, reduce
from chamberlain.adopt.manifests import read_directory, read_text
from chamberlain.adopt.mapping import (
    RULE_AUTHORITY,
    Adoption,
    AuthorityView,
    PathMeta,
    Settings,
    adopt,
)
from chamberlain.adopt.write import MARKER
from chamberlain.authority.fake import FakeKV
from chamberlain.intent.model import Source
from chamberlain.kube.api import KubeForbidden
from tests.conftest import EXAMPLES, REPO_ROOT, run_cli

ESTATE = REPO_ROOT / "tests" / "fixtures" / "adopt" / "estate"
RECIPIENT = "age1alv9cmp24g55wasnmzrfm3rspphz5u8ay6e5ujdujr99yf27xyssrczjjk"
CANARIES = ("CANARY-VALUE-7f3a", "Q0FOQVJZLVZBTFVFLTdmM2E=")
SETTINGS = Settings("prod", "prod-eu1", other_environments=("dev",))
MODEL_HAS_EXISTING_SECRET = "existing_secret" in Source.model_fields


def estate_of(*docs: dict[str, Any]) -> Estate:
    estate = Estate()
    for doc in docs:
        estate.add(reduce(doc, Origin("test")))
    return estate


def secret(ns: str, name: str, keys: tuple[str, ...] = ("password",), **meta: Any) -> dict[str, Any]:
    type_ = meta.pop("type", "Opaque")
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns, **meta},
            "type": type_, "data": dict.fromkeys(keys, CANARIES[1])}


def vault_store(name: str = "vault", path: str | None = "secret") -> dict[str, Any]:
    return {"kind": "ClusterSecretStore", "metadata": {"name": name},
            "spec": {"provider": {"vault": {"server": "https://v:8200", **({"path": path} if path else {})}}}}


def external_secret(ns: str, name: str, key: str, props: dict[str, str] | None = None, *,
                    store: str = "vault", **spec: Any) -> dict[str, Any]:
    props = props if props is not None else {"password": "password"}
    return {"kind": "ExternalSecret", "metadata": {"name": name, "namespace": ns},
            "spec": {"secretStoreRef": {"kind": "ClusterSecretStore", "name": store},
                     "data": [{"secretKey": k, "remoteRef": {"key": key, "property": p}} for k, p in props.items()],
                     **spec}}


def deployment(ns: str, name: str, *, annotations: dict[str, str] | None = None,
               env_secret: str | None = None) -> dict[str, Any]:
    containers: list[dict[str, Any]] = [{"name": "c", "image": "x"}]
    if env_secret:
        containers[0]["env"] = [{"name": "P", "valueFrom": {"secretKeyRef": {"name": env_secret, "key": "password"}}}]
    return {"kind": "Deployment", "metadata": {"name": name, "namespace": ns, "annotations": annotations or {}},
            "spec": {"template": {"spec": {"containers": containers}}}}


def unmapped(adoption: Adoption) -> dict[tuple[str, str, str], str]:
    return {(u.kind, u.namespace, u.name): u.reason for u in adoption.unmapped}


# --------------------------------------------------------------------------------------------------- the fixture


@pytest.fixture(scope="module")
def fixture_adoption() -> Adoption:
    return adopt(read_directory(ESTATE), SETTINGS)


def test_fixture_estate_maps_what_is_clear(fixture_adoption: Adoption) -> None:
    by_name = {a.intent: a for a in fixture_adoption.adopted}
    assert sorted(by_name) == ["payments-db", "reporting-db", "shop-api-key", "smtp-relay"]
    db = by_name["payments-db"]  # on the conventional path: owner and name from the path, nothing copied
    path = "secret/prod/team-payments/payments-db"
    assert (db.owner, db.owner_from, db.copied_from, db.path) == ("team-payments", f"the path {path}", None, path)
    assert [r.name for r in db.consumers[0].restart] == ["payments-api"]  # reloader auto + secretKeyRef
    api = by_name["shop-api-key"]  # outside the convention: copied, owner = namespace (no owner label)
    assert (api.copied_from, api.path, api.owner_from) == (
        "kv/apps/shop/api", "secret/prod/shop/shop-api-key", "the namespace (no owner label)")
    assert api.keys == ("api-key",)  # dataFrom.extract: keys of the Secret it writes
    assert api.consumers[0].restart == () and [r.name for r in api.consumers[0].readers] == ["shop-worker"]
    smtp = by_name["smtp-relay"]
    assert (smtp.owner, smtp.origin) == ("team-mail", "secret")
    assert smtp.owner_from == "label owner on Secret payments/smtp-relay"
    assert sorted(r.name for r in smtp.consumers[0].restart) == ["mailer", "payments-api"]  # reload list + auto
    reporting = by_name["reporting-db"]  # sealed: its unsealed Secret (owned by it) proves the key is known
    assert (reporting.origin, reporting.owner) == ("sealed-secret", "team-reporting")
    assert [r.name for r in reporting.consumers[0].restart] == ["reporter"]  # search + match


def test_fixture_estate_refuses_what_is_ambiguous_with_reasons(fixture_adoption: Adoption) -> None:
    refused = unmapped(fixture_adoption)
    assert "two writers" in refused[("ExternalSecret", "payments", "dup-a")]
    assert "two writers" in refused[("ExternalSecret", "payments", "dup-b")]
    assert "two writers" in refused[("Secret", "payments", "shared-creds")]
    assert "controller key unknown" in refused[("SealedSecret", "legacy", "archive-key")]
    assert "not a DNS-1123 label" in refused[("Secret", "shop", "Bad_Name")]
    assert "dockerconfigjson" in refused[("Secret", "shop", "registry-creds")]
    assert "provider aws" in refused[("ClusterSecretStore", "", "aws-sm")]
    assert "not Vault" in refused[("ExternalSecret", "shop", "cart-token")]
    assert len(refused) == 8
    assert all(u.rule == "CH123" for u in fixture_adoption.unmapped)
    where = {(u.kind, u.name): u.where for u in fixture_adoption.unmapped}
    assert where[("Secret", "Bad_Name")] == "secrets.yaml:21"
    skipped = {(s.kind, s.name): s.reason for s in fixture_adoption.skipped}
    assert "service-account-token" in skipped[("Secret", "builder-token")]
    assert "cert-manager" in skipped[("Secret", "shop-tls")]
    assert ("Namespace", "kube-system") in skipped


def test_plan_orders_the_moves_so_nothing_goes_down(fixture_adoption: Adoption) -> None:
    steps = planning.steps(fixture_adoption, "repo")
    actions = [s.action for s in steps]
    # each action's steps come as one block, in the contract's order
    assert [a for i, a in enumerate(actions) if i == 0 or actions[i - 1] != a] == list(planning.ACTIONS)
    assert len({s.id for s in steps}) == len(steps)
    by_id = {s.id: s for s in steps}
    assert by_id["mark-smtp-relay"].command == (
        "kubectl annotate --overwrite secret -n payments smtp-relay chamberlain.dev/adopt=smtp-relay")
    assert by_id["verify-import"].command == "chamberlain adopt verify repo -e prod -c prod-eu1"
    assert by_id["release-legacy-reporting-db"].command == (
        "kubectl delete sealedsecret -n legacy reporting-db --cascade=orphan")
    ids = [s.id for s in steps]  # released right before its own takeover: the shortest time without a controller
    assert ids.index("release-legacy-reporting-db") + 1 == ids.index("takeover-reporting-db")
    assert by_id["takeover-shop-api-key"].command == (
        "chamberlain adopt takeover repo -e prod -c prod-eu1 --intent shop-api-key")
    # the reload list keeps the Secrets not adopted; auto is removed once chamberlain restarts
    assert by_id["cleanup-reloader-payments-deployment-mailer-reload"].command.endswith(
        "secret.reloader.stakater.com/reload=mailer-extra")
    assert by_id["cleanup-path-shop-api-key"].command == "vault kv metadata delete -mount=kv apps/shop/api"
    assert by_id["cleanup-store-shop-vault-legacy"].kind == "SecretStore"
    assert not any(s.id.startswith("cleanup-store-cluster-vault-backend") for s in steps)  # dup-a/b still use it


# --------------------------------------------------------------------------------------------------- the CLI


def _adopt(tmp_path: Path, *extra: str, out: str = "repo") -> Any:
    return run_cli("adopt", "--from-manifests", str(ESTATE), "--out", str(tmp_path / out), "-e", "prod",
                   "-c", "prod-eu1", "--age-recipient", RECIPIENT, *extra)


def test_no_value_reaches_the_repository_the_plan_or_any_output(tmp_path: Path) -> None:
    text = _adopt(tmp_path)
    as_json = _adopt(tmp_path, "-o", "json")
    as_yaml = _adopt(tmp_path, "-o", "wide")
    for result in (text, as_json, as_yaml):
        assert result.code == 1, result.err  # something is unmapped: listed, and exit 1
        for canary in CANARIES:
            assert canary not in result.out and canary not in result.err
    for path in (tmp_path / "repo").rglob("*"):
        if path.is_file():
            body = path.read_text(encoding="utf-8")
            assert not any(c in body for c in CANARIES), path
    assert "last-applied" not in (tmp_path / "repo" / "migration-plan.yaml").read_text()


def test_json_output_lists_intents_unmapped_and_steps(tmp_path: Path) -> None:
    result = _adopt(tmp_path, "-o", "json")
    data = json.loads(result.out)
    spec = data["plan"]["spec"]
    assert data["ok"] is False and spec["complete"] is False
    assert {i["name"] for i in spec["intents"]} == {"payments-db", "reporting-db", "shop-api-key", "smtp-relay"}
    assert {(u["kind"], u["name"]) for u in spec["unmapped"]} >= {("SealedSecret", "archive-key"),
                                                                  ("Secret", "Bad_Name")}
    assert spec["steps"][0]["action"] == "mark"
    on_disk = yaml.safe_load((tmp_path / "repo" / "migration-plan.yaml").read_text())
    assert on_disk == data["plan"]
    assert "## Not mapped" in (tmp_path / "repo" / "MIGRATION.md").read_text()


def test_generated_repository_validates(tmp_path: Path) -> None:
    result = _adopt(tmp_path, "-o", "json")
    repo = tmp_path / "repo"
    if MODEL_HAS_EXISTING_SECRET:
        assert json.loads(result.out)["validation"]["status"] == "ok"
        check = run_cli("validate", str(repo))
        assert check.code == 0, check.out + check.err
        return
    # Until source.existingSecret is in the model (helper "migration"), check everything else: the Platform, names,
    # consumers, restarts, with a stand-in source.
    for path in (repo / "intents").rglob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        keys = doc["spec"]["source"]["existingSecret"]["keys"]
        doc["spec"]["source"] = {"generate": {key: {"type": "password"} for key in keys}}
        path.write_text(yaml.safe_dump(doc))
    check = run_cli("validate", str(repo))
    assert check.code == 0, check.out + check.err


def test_rerun_is_idempotent_and_removes_what_it_no_longer_writes(tmp_path: Path) -> None:
    _adopt(tmp_path)
    repo = tmp_path / "repo"
    first = {p.relative_to(repo): p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    _adopt(tmp_path)
    assert {p.relative_to(repo): p.read_bytes() for p in repo.rglob("*") if p.is_file()} == first
    _adopt(tmp_path, "-n", "payments")  # narrower: the other intents go, the directory stays adopt's
    assert sorted(p.name for p in (repo / "intents").rglob("*.yaml")) == ["payments-db.yaml", "smtp-relay.yaml"]
    assert not (repo / "intents" / "shop").exists()
    assert [entry.split("  ")[1] for entry in (repo / MARKER).read_text().splitlines()] == sorted(
        ["MIGRATION.md", "intents/team-mail/smtp-relay.yaml", "intents/team-payments/payments-db.yaml",
         "migration-plan.yaml", "platform.yaml"])


def _flat(text: str) -> str:
    return " ".join(text.split())  # the consoles may wrap a long line


def test_rerun_keeps_a_file_a_person_edited_and_says_so(tmp_path: Path) -> None:
    first = _adopt(tmp_path)
    repo = tmp_path / "repo"
    intent = repo / "intents" / "shop" / "shop-api-key.yaml"
    generated = intent.read_text()
    assert "kept" not in first.err and "describe what it is for" in generated
    edited = generated.replace("describe what it is for", "the shop's key for the payment API")
    intent.write_text(edited)
    again = _adopt(tmp_path)
    assert again.code == first.code and intent.read_text() == edited, "a re-run never restores the placeholder"
    assert f"kept {intent}: edited since adopt wrote it" in _flat(again.err)
    assert "smtp-relay" not in again.err  # only the edited file is named
    dry = _adopt(tmp_path, "--dry-run")
    assert f"would keep {intent}" in _flat(dry.err) and intent.read_text() == edited
    narrower = _adopt(tmp_path, "-n", "payments")  # adopt no longer produces it: still not removed
    assert intent.read_text() == edited and f"kept {intent}" in _flat(narrower.err)
    intent.unlink()  # the way to take adopt's version again
    restored = _adopt(tmp_path)
    assert intent.read_text() == generated and "kept" not in restored.err


def test_rerun_over_an_older_marker_rewrites_as_that_release_did(tmp_path: Path) -> None:
    """An earlier chamberlain's marker lists paths only: it knew no edits, and its re-runs rewrote and removed what
    it listed. Keeping every changed file instead left the directory stuck, with stale intents (review)."""
    _adopt(tmp_path)
    repo = tmp_path / "repo"
    snapshot = {p.relative_to(repo): p.read_bytes() for p in repo.rglob("*") if p.is_file() and p.name != MARKER}
    (repo / MARKER).write_text("".join(f"{rel}\n" for rel in sorted(map(str, snapshot))))
    platform = repo / "platform.yaml"
    platform.write_text(platform.read_text() + "# mine\n")
    result = _adopt(tmp_path)
    assert "kept" not in _flat(result.err)
    assert {p.relative_to(repo): p.read_bytes() for p in repo.rglob("*") if p.is_file() and p.name != MARKER} == \
        snapshot
    # The marker is the new one now: an edit from here on is kept.
    assert all("  " in line for line in (repo / MARKER).read_text().splitlines())
    platform.write_text(platform.read_text() + "# mine\n")
    assert f"kept {platform}" in _flat(_adopt(tmp_path).err)


@pytest.mark.parametrize("files, found", [
    ({}, "found nothing chamberlain reads"),
    ({"notes.txt": "not a manifest\n", "cm.yaml": "kind: ConfigMap\nmetadata: {name: a, namespace: b}\n"},
     "found nothing chamberlain reads"),
    ({"stores.yaml": (ESTATE / "stores.yaml").read_text()}, "found 3 SecretStores"),
], ids=["empty", "other-kinds", "stores-only"])
def test_a_source_without_secrets_is_a_usage_error(tmp_path: Path, files: dict[str, str], found: str) -> None:
    source = tmp_path / "legacy"
    source.mkdir()
    for name, text in files.items():
        (source / name).write_text(text)
    result = run_cli("adopt", "--from-manifests", str(source), "--out", str(tmp_path / "out"), "-e", "prod", "-c",
                     "prod-eu1", "--age-recipient", RECIPIENT)
    assert result.code == 2, result.out + result.err
    message = _flat(result.err)
    assert f"--from-manifests {source}: no Secret, SealedSecret or ExternalSecret manifests there" in message
    assert found in message and "Traceback" not in message
    assert not (tmp_path / "out").exists(), "nothing is written"
    namespaced = _adopt(tmp_path, "-n", "nope")  # a namespace filter that leaves nothing is the same mistake
    assert namespaced.code == 2 and "-n nope: no Secret" in _flat(namespaced.err)


def test_a_dry_run_points_at_no_file_it_did_not_write(tmp_path: Path) -> None:
    dry = _flat(_adopt(tmp_path, "--dry-run").err)
    out = tmp_path / "repo"
    assert f"would write {out}/MIGRATION.md (nothing written: dry run)" in dry and "see " not in dry
    assert not out.exists()
    assert f"see {out}/MIGRATION.md" in _flat(_adopt(tmp_path).err)


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    result = _adopt(tmp_path, "--dry-run", "-o", "json")
    assert result.code == 1 and json.loads(result.out)["dryRun"] is True
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize("argv, message", [
    (["--out", "X"], "nothing to read"),
    (["--from-manifests", str(ESTATE)], "--out REPO is required"),
    (["--from-manifests", str(ESTATE), "--from-cluster", "--out", "X"], "give one estate"),
    (["--from-manifests", "/nonexistent", "--out", "X", "-e", "p", "-c", "c", "--age-recipient", RECIPIENT],
     "no such file"),
    (["--from-manifests", "/dev/null", "--out", "X", "-e", "p", "-c", "c", "--age-recipient", RECIPIENT],
     "neither a directory nor a regular file"),
    (["--from-manifests", str(ESTATE), "--out", "X", "-e", "prod", "-c", "c1"], "--age-recipient"),
    (["--from-manifests", str(ESTATE), "--out", "X", "-e", "Prod", "-c", "c1", "--age-recipient", RECIPIENT],
     "not a DNS-1123 label"),
], ids=["no-source", "no-out", "two-estates", "missing-dir", "a-device", "no-recipient", "bad-environment"])
def test_usage_errors_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli("adopt", *argv)
    assert result.code == 2, result.out + result.err
    assert message in result.err and "Traceback" not in result.err


def test_refuses_to_write_over_a_directory_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "platform.yaml").write_text("mine\n")
    result = _adopt(tmp_path)
    assert result.code == 2 and "adopt did not write" in result.err
    assert (tmp_path / "repo" / "platform.yaml").read_text() == "mine\n"


def test_platform_file_with_tenancy_makes_the_holder_the_owner(tmp_path: Path) -> None:
    platform = {
        "apiVersion": "chamberlain.dev/v1alpha1", "kind": "Platform", "metadata": {"name": "acme"},
        "spec": {"environments": [{"name": "prod", "clusters": ["prod-eu1"]}],
                 "authority": {"address": "https://vault:8200"},
                 "rootOfTrust": {"ageRecipients": [RECIPIENT]},
                 "tenancy": {"platformOwners": ["platform"],
                             "owners": [{"name": "platform"}, {"name": "payments-team", "namespaces": ["payments"]},
                                        {"name": "shop", "namespaces": ["shop"]},
                                        {"name": "reporting", "namespaces": ["legacy"]}]}},
    }
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(platform))
    result = run_cli("adopt", "--from-manifests", str(ESTATE), "--out", str(tmp_path / "repo"), "--platform",
                     str(tmp_path / "platform.yaml"), "-o", "json")
    intents = {i["name"]: i for i in json.loads(result.out)["plan"]["spec"]["intents"]}
    assert intents["smtp-relay"]["owner"] == "payments-team"  # the holder wins over the `owner` label
    assert "tenancy" in intents["smtp-relay"]["ownerFrom"]
    # the path's owner segment is no declared owner: not the convention after all, so the value is copied
    assert intents["payments-db"]["owner"] == "payments-team"
    assert intents["payments-db"]["copiedFrom"] == "secret/prod/team-payments/payments-db"
    assert (tmp_path / "repo" / "platform.yaml").read_text() == (tmp_path / "platform.yaml").read_text()


def test_owner_label_option(tmp_path: Path) -> None:
    result = _adopt(tmp_path, "--owner-label", "nope", "-o", "json")
    intents = {i["name"]: i for i in json.loads(result.out)["plan"]["spec"]["intents"]}
    assert intents["smtp-relay"]["owner"] == "payments"  # the `owner` label no longer counts: the namespace
    assert intents["smtp-relay"]["ownerFrom"] == "the namespace (no owner label)"


# --------------------------------------------------------------------------------------------------- mapping rules


@pytest.mark.parametrize("spec, reason", [
    ({"target": {"name": "s", "template": {"data": {"dsn": "{{ .password }}"}}}}, "template"),
    ({"target": {"name": "s", "creationPolicy": "Merge"}}, "creationPolicy Merge"),
    ({"dataFrom": [{"find": {"name": {"regexp": ".*"}}}]}, "a search"),
    ({"dataFrom": [{"extract": {"key": "prod/o/other"}}]}, "several Vault paths"),
], ids=["templated", "merge", "find", "two-paths"])
def test_external_secret_refusals(spec: dict[str, Any], reason: str) -> None:
    es = external_secret("app", "s", "prod/o/s", **spec)
    adoption = adopt(estate_of(vault_store(), es, secret("app", "s")), SETTINGS)
    assert reason in unmapped(adoption)[("ExternalSecret", "app", "s")]
    assert not adoption.adopted


@pytest.mark.parametrize("key, store, reason", [
    ("prod/o/s", "missing", "not in the estate"),
    ("dev/o/s", "vault", "environment dev"),
    ("platform-data/prod/c/ns/s", "nomount", "publication"),
], ids=["unknown-store", "other-environment", "internal-mount"])
def test_external_secret_path_refusals(key: str, store: str, reason: str) -> None:
    es = external_secret("app", "s", key, store=store)
    adoption = adopt(estate_of(vault_store(), vault_store("nomount", None), es), SETTINGS)
    assert reason in unmapped(adoption)[("ExternalSecret", "app", "s")]


def test_data_without_property_is_refused() -> None:
    es = external_secret("app", "s", "prod/o/s")
    es["spec"]["data"][0]["remoteRef"].pop("property")
    assert "no remoteRef.property" in unmapped(adopt(estate_of(vault_store(), es), SETTINGS))[
        ("ExternalSecret", "app", "s")]


def test_a_path_shaped_like_the_convention_of_no_environment_is_copied() -> None:
    (a,) = adopt(estate_of(vault_store(), external_secret("web", "api", "apps/web/api")), SETTINGS).adopted
    assert (a.copied_from, a.path) == ("secret/apps/web/api", "secret/prod/web/api")


def test_with_a_tenancy_only_a_declared_owner_makes_a_path_conventional() -> None:
    es = external_secret("web", "api", "prod/legacy/api")
    (kept,) = adopt(estate_of(vault_store(), es), SETTINGS).adopted
    assert (kept.owner, kept.copied_from) == ("legacy", None)
    tenancy = Settings("prod", "prod-eu1", owners=("team-web",), holders={"web": "team-web"})
    (copied,) = adopt(estate_of(vault_store(), es), tenancy).adopted
    assert (copied.owner, copied.copied_from, copied.path) == ("team-web", "secret/prod/legacy/api",
                                                               "secret/prod/team-web/api")


def test_external_secrets_sharing_a_path_become_one_intent_with_two_consumers() -> None:
    a = external_secret("web", "db", "prod/team-a/db", {"password": "password"})
    b = external_secret("batch", "db-creds", "prod/team-a/db", {"DB_PASSWORD": "password"})
    adoption = adopt(estate_of(vault_store(), a, b), SETTINGS)
    (one,) = adoption.adopted
    assert one.import_from == ("web", "db")  # the Secret that holds the key under its Vault name
    assert {(c.namespace, c.secret_name, tuple(c.keys.items())) for c in one.consumers} == {
        ("web", "db", (("password", "password"),)), ("batch", "db-creds", (("DB_PASSWORD", "password"),))}


def test_renamed_keys_without_a_faithful_copy_are_refused() -> None:
    es = external_secret("web", "db", "apps/web/db", {"DB_PASSWORD": "password"})
    assert "under its Vault name" in unmapped(adopt(estate_of(vault_store(), es), SETTINGS))[
        ("ExternalSecret", "web", "db")]


@pytest.mark.parametrize("type_, outcome", [
    ("Opaque", "adopted"),
    ("kubernetes.io/service-account-token", "skipped"),
    ("bootstrap.kubernetes.io/token", "skipped"),
    ("helm.sh/release.v1", "skipped"),
    ("kubernetes.io/dockerconfigjson", "unmapped"),
    ("kubernetes.io/dockercfg", "unmapped"),
    ("kubernetes.io/tls", "unmapped"),
    ("kubernetes.io/basic-auth", "unmapped"),
])
def test_secret_types(type_: str, outcome: str) -> None:
    adoption = adopt(estate_of(secret("app", "s", type=type_)), SETTINGS)
    got = "adopted" if adoption.adopted else "skipped" if adoption.skipped else "unmapped"
    assert got == outcome


@pytest.mark.parametrize("ns, name, keys, reason", [
    ("app", "a.b", ("k",), "not a DNS-1123 label"),
    ("app", "x" * 64, ("k",), "not a DNS-1123 label"),
    ("App", "s", ("k",), "namespace 'App'"),
    ("app", "s", (), "holds no key"),
    ("app", "s", ("bad key",), "not a valid Secret key"),
], ids=["dotted", "too-long", "namespace", "no-keys", "bad-key"])
def test_names_that_are_not_safe_are_refused(ns: str, name: str, keys: tuple[str, ...], reason: str) -> None:
    assert reason in unmapped(adopt(estate_of(secret(ns, name, keys)), SETTINGS))[("Secret", ns, name)]


def test_owner_label_that_is_not_a_label_is_refused() -> None:
    adoption = adopt(estate_of(secret("app", "s", labels={"team": "Payments Team"})), SETTINGS)
    assert "owner label team='Payments Team'" in unmapped(adoption)[("Secret", "app", "s")]


def test_secret_written_by_another_controller_is_refused() -> None:
    owned = secret("db", "app-user", ownerReferences=[{"kind": "Cluster", "name": "pg"}])
    assert "source.publication" in unmapped(adopt(estate_of(owned), SETTINGS))[("Secret", "db", "app-user")]


@pytest.mark.parametrize("status, unsealed, outcome", [
    ({"conditions": [{"type": "Synced", "status": "True"}]}, False, "adopted"),
    ({"conditions": [{"type": "Synced", "status": "False"}]}, True, "Synced=False"),
    (None, True, "adopted"),
    (None, False, "controller key unknown"),
], ids=["synced", "not-synced", "unsealed-secret", "unknown"])
def test_sealed_secret_needs_evidence_its_controller_holds_the_key(
        status: dict[str, Any] | None, unsealed: bool, outcome: str) -> None:
    sealed: dict[str, Any] = {"kind": "SealedSecret", "metadata": {"name": "s", "namespace": "app"},
                              "spec": {"encryptedData": {"password": "AgB..."}}}
    if status:
        sealed["status"] = status
    docs = [sealed] + ([secret("app", "s", ownerReferences=[{"kind": "SealedSecret", "name": "s"}])]
                       if unsealed else [])
    adoption = adopt(estate_of(*docs), SETTINGS)
    if outcome == "adopted":
        assert [a.intent for a in adoption.adopted] == ["s"]
    else:
        assert outcome in unmapped(adoption)[("SealedSecret", "app", "s")]


def test_sealed_secret_and_external_secret_on_one_secret_are_two_writers() -> None:
    sealed = {"kind": "SealedSecret", "metadata": {"name": "s", "namespace": "app"},
              "spec": {"encryptedData": {"password": "x"}}, "status": {"conditions": [
                  {"type": "Synced", "status": "True"}]}}
    adoption = adopt(estate_of(vault_store(), external_secret("app", "s", "prod/o/s"), sealed), SETTINGS)
    assert not adoption.adopted and len(adoption.unmapped) == 3


@pytest.mark.parametrize("annotations, references, secret_annotations, restarted", [
    ({"reloader.stakater.com/auto": "true"}, True, {}, True),
    ({"reloader.stakater.com/auto": "true"}, False, {}, False),
    ({"secret.reloader.stakater.com/auto": "true"}, True, {}, True),
    ({"secret.reloader.stakater.com/reload": "other, s"}, False, {}, True),
    ({"secret.reloader.stakater.com/reload": "other"}, True, {}, False),
    ({"reloader.stakater.com/search": "true"}, True, {"reloader.stakater.com/match": "true"}, True),
    ({"reloader.stakater.com/search": "true"}, True, {}, False),
    ({}, True, {}, False),
], ids=["auto", "auto-unreferenced", "secret-auto", "reload-list", "reload-other", "search-match",
        "search-no-match", "none"])
def test_reloader_annotations_become_restarts(annotations: dict[str, str], references: bool,
                                              secret_annotations: dict[str, str], restarted: bool) -> None:
    wl = deployment("app", "api", annotations=annotations, env_secret="s" if references else None)
    adoption = adopt(estate_of(secret("app", "s", annotations=secret_annotations), wl), SETTINGS)
    consumer = adoption.adopted[0].consumers[0]
    assert bool(consumer.restart) is restarted
    assert bool(consumer.readers) is (references and not restarted)


def test_name_collisions_are_qualified_by_namespace_or_refused() -> None:
    adoption = adopt(estate_of(secret("a", "db"), secret("b", "db")), SETTINGS)
    assert sorted(x.intent for x in adoption.adopted) == ["a-db", "b-db"]
    crowded = adopt(estate_of(secret("a", "db"), secret("b", "db"), secret("c", "a-db")), SETTINGS)
    assert "name it by hand" in unmapped(crowded)[("Secret", "a", "db")]
    assert sorted(x.intent for x in crowded.adopted) == ["a-db", "b-db"]


def test_a_secret_marked_for_another_intent_is_refused() -> None:
    marked = secret("app", "s", annotations={"chamberlain.dev/adopt": "other"})
    assert "already marked for intent other" in unmapped(adopt(estate_of(marked), SETTINGS))[("Secret", "app", "s")]
    same = secret("app", "s", annotations={"chamberlain.dev/adopt": "s"})
    assert [a.intent for a in adopt(estate_of(same), SETTINGS).adopted] == ["s"]


def test_chamberlain_own_objects_are_skipped() -> None:
    mine = secret("app", "s", labels={"chamberlain.dev/intent": "s"})
    es = external_secret("app", "t", "prod/o/t")
    es["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "chamberlain"}
    adoption = adopt(estate_of(vault_store(), mine, es), SETTINGS)
    assert not adoption.adopted and not adoption.unmapped and len(adoption.skipped) == 2


# --------------------------------------------------------------------------------------------------- authority


OK = PathMeta(3, deleted=False, intent=None, recorded=False)


@pytest.mark.parametrize("view, reason", [
    (AuthorityView({}), "does not hold"),
    (AuthorityView({"secret/prod/o/s": PathMeta(3, True, None, False)}), "deleted"),
    (AuthorityView({"secret/prod/o/s": PathMeta(3, False, "other", True)}), "recorded for intent other"),
], ids=["missing", "deleted", "recorded-elsewhere"])
def test_external_secret_checked_against_the_path_metadata(view: AuthorityView, reason: str) -> None:
    adoption = adopt(estate_of(vault_store(), external_secret("app", "s", "prod/o/s")), SETTINGS, view)
    assert not adoption.adopted
    (u,) = adoption.unmapped
    assert reason in u.reason and u.rule == RULE_AUTHORITY


def test_import_never_lands_on_an_occupied_conventional_path() -> None:
    view = AuthorityView({"secret/prod/app/s": OK})
    adoption = adopt(estate_of(secret("app", "s")), SETTINGS, view)
    assert "already holds a value" in unmapped(adoption)[("Secret", "app", "s")]
    assert adopt(estate_of(secret("app", "s")), SETTINGS, AuthorityView({})).adopted


def test_authority_reader_reads_metadata_only_and_lists_orphans() -> None:
    kv = FakeKV()
    kv.write("secret", "prod/o/s", {"password": CANARIES[0]}, cas=0)
    kv.write("secret", "prod/o/nobody", {"k": CANARIES[0]}, cas=0)
    kv.write("secret", "prod/o/managed", {"k": CANARIES[0]}, cas=0)
    kv.update_custom_metadata("secret", "prod/o/managed", {"authority": "vault", "intent": "managed"})
    kv.write("secret", "dev/o/elsewhere", {"k": CANARIES[0]}, cas=0)
    kv.write("kv", "apps/x", {"k": CANARIES[0]}, cas=0)
    reads: list[tuple[str, str]] = []
    original = kv.read

    def spy(mount: str, path: str, version: int | None = None) -> Any:
        reads.append((mount, path))
        return original(mount, path, version)

    kv.read = spy  # type: ignore[method-assign]
    view = read_authority(kv, ["kv/apps/x"], "secret", "prod")
    assert reads == []  # data is never read
    assert view.listed == ("secret/prod/o/managed", "secret/prod/o/nobody", "secret/prod/o/s")
    assert set(view.paths) == {*view.listed, "kv/apps/x"}
    assert view.paths["secret/prod/o/managed"].intent == "managed"
    adoption = adopt(estate_of(vault_store(), external_secret("app", "s", "prod/o/s")), SETTINGS, view)
    assert [a.intent for a in adoption.adopted] == ["s"]
    skipped = {s.name: s.reason for s in adoption.skipped}
    assert "no ExternalSecret of the estate reads it" in skipped["secret/prod/o/nobody"]
    assert "already under chamberlain" in skipped["secret/prod/o/managed"]


# --------------------------------------------------------------------------------------------------- readers


class FakeList:
    """A fake of :class:`~chamberlain.kube.api.KubeList` (the real client is covered by the lab test): serves list
    paths from a table and records which paths were asked."""

    def __init__(self, table: dict[str, list[dict[str, Any]]]) -> None:
        self.table = table
        self.asked: list[str] = []

    def list_objects(self, path: str) -> list[dict[str, Any]] | None:
        self.asked.append(path)
        items = self.table.get(path)
        return None if items is None else [json.loads(json.dumps(i)) for i in items]


def test_cluster_reader_falls_back_to_v1beta1_and_filters_namespaces() -> None:
    es = external_secret("app", "s", "prod/o/s")
    fake = FakeList({
        "/api/v1/namespaces": [{"metadata": {"name": "app", "labels": {"team": "t"}}},
                               {"metadata": {"name": "other"}}],
        "/api/v1/namespaces/app/secrets": [{"metadata": {"name": "s", "namespace": "app"},
                                            "data": {"password": ""}}],
        "/apis/external-secrets.io/v1beta1/namespaces/app/externalsecrets": [es],
        "/apis/external-secrets.io/v1beta1/clustersecretstores": [vault_store()],
    })
    estate = read_cluster(fake, ["app"])
    assert [n.name for n in estate.namespaces] == ["app"]
    assert [(s.name, s.keys) for s in estate.secrets] == [("s", ("password",))]
    assert [e.name for e in estate.external_secrets] == ["s"]
    assert "/apis/external-secrets.io/v1/namespaces/app/externalsecrets" in fake.asked  # v1 first
    assert not any("/other/" in p for p in fake.asked)


def test_a_kind_the_reader_may_not_list_is_reported_not_read_as_empty() -> None:
    class Forbidden(FakeList):
        def list_objects(self, path: str) -> list[dict[str, Any]] | None:
            if path.endswith("/sealedsecrets"):
                raise KubeForbidden("sealedsecrets: forbidden")
            return super().list_objects(path)

    estate = read_cluster(Forbidden({"/api/v1/namespaces": []}), ["app"])
    (problem,) = estate.problems
    assert (problem.kind, problem.namespace, "forbidden" in problem.reason) == ("SealedSecret", "app", True)
    assert "CH123" in {u.rule for u in adopt(estate, SETTINGS).unmapped}


def test_reader_keeps_key_names_and_drops_values_and_last_applied() -> None:
    doc = secret("app", "s", ("a", "b"), annotations={
        "kubectl.kubernetes.io/last-applied-configuration": CANARIES[1], "reloader.stakater.com/match": "true"})
    doc["stringData"] = {"c": CANARIES[0]}
    obj = reduce(doc, Origin("x"))
    assert obj is not None
    assert CANARIES[0] not in repr(obj) and CANARIES[1] not in repr(obj)
    assert isinstance(obj, SecretObj)
    assert obj.keys == ("a", "b", "c")
    assert dict(obj.annotations) == {"reloader.stakater.com/match": "true"}


def test_manifest_reader_reports_bad_yaml_with_file_line_and_rule(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("kind: Secret\nmetadata: {name: ok, namespace: n}\ndata: {k: x}\n---\n"
                                     "kind: Secret\nmetadata: {name: dup}\nmetadata: {name: dup2}\n---\n"
                                     "kind: [unclosed\n")
    (tmp_path / "bomb.yaml").write_text("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)))
    (tmp_path / "list.json").write_text(json.dumps({"kind": "SecretList", "items": [
        {"kind": "Secret", "metadata": {"name": "from-list", "namespace": "n"}, "data": {"k": "x"}}]}))
    estate = read_directory(tmp_path)
    assert sorted(s.name for s in estate.secrets) == ["from-list", "ok"]
    problems = {(p.where, p.rule) for p in estate.problems}
    assert ("a.yaml:7", "CH100") in problems  # the duplicate key's own line
    assert any(w.startswith("a.yaml:") and r == "CH001" for w, r in problems)
    assert any(w.startswith("bomb.yaml") and r == "CH002" for w, r in problems)
    adoption = adopt(estate, SETTINGS)
    assert {u.rule for u in adoption.unmapped} == {"CH001", "CH002", "CH100"}  # reported, nothing guessed


def test_reading_is_linear(tmp_path: Path) -> None:
    """250 and 1,000 Secrets with workloads: 4x the estate may cost at most ~8x the CPU time (quadratic: 16x)."""

    def estate_text(n: int) -> str:
        docs = []
        for i in range(n):
            docs.append(f"kind: Secret\nmetadata: {{name: s{i}, namespace: ns{i % 20}}}\ndata: {{password: eA==}}\n")
            docs.append(f"kind: Deployment\nmetadata: {{name: d{i}, namespace: ns{i % 20}, annotations: "
                        f"{{reloader.stakater.com/auto: 'true'}}}}\nspec: {{template: {{spec: {{containers: "
                        f"[{{name: c, envFrom: [{{secretRef: {{name: s{i}}}}}]}}]}}}}}}\n")
        return "---\n".join(docs)

    def cost(n: int) -> float:
        text = estate_text(n)
        best = float("inf")
        for _ in range(2):
            started = time.process_time()
            estate = Estate()
            read_text(text, "x.yaml", estate)
            adoption = adopt(estate, SETTINGS)
            planning.plan_document(adoption, "repo", [])
            best = min(best, time.process_time() - started)
        assert len(adoption.adopted) == n
        return best

    small, large = cost(250), cost(1000)
    assert large < 8 * small + 0.2, (small, large)


def test_a_single_file_is_an_estate_too(tmp_path: Path) -> None:
    shutil.copy(ESTATE / "secrets.yaml", tmp_path / "one.yaml")
    estate = read_directory(tmp_path / "one.yaml")
    assert {s.where for s in estate.problems} == set() and len(estate.secrets) == 8


def test_a_platform_file_carries_the_policy_it_names_or_adopt_says_what_is_missing(tmp_path: Path) -> None:
    platform = (EXAMPLES / "acme" / "platform.yaml").read_text()
    alone = tmp_path / "alone.yaml"
    alone.write_text(platform)
    result = run_cli("adopt", "--from-manifests", str(ESTATE), "--out", str(tmp_path / "a"), "--platform",
                     str(alone))
    assert result.code == 2 and "default rotation policy 'standard'" in result.out + result.err
    both = tmp_path / "both.yaml"
    both.write_text(platform.rstrip("\n") + "\n---\n"
                    + (EXAMPLES / "acme" / "policies" / "rotation.yaml").read_text())
    result = run_cli("adopt", "--from-manifests", str(ESTATE), "--out", str(tmp_path / "b"), "--platform",
                     str(both), "-e", "dev", "-c", "dev1")
    assert result.code in (0, 1) and "default rotation policy" not in result.out + result.err
    assert run_cli("validate", str(tmp_path / "b")).code == 0
