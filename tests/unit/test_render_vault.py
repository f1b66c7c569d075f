"""The Vault bundle grants exactly what the rendered ESO objects use, and nothing else (SPEC §6)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from chamberlain.intent.paths import TRANSIT_MOUNT
from chamberlain.render import RenderedTree
from tests.unit.test_render import REPOS, docs, render

_BLOCK = re.compile(r'^path "([^"]+)" \{\n  capabilities = \[([^\]]*)\]\n\}$', re.M)
_VAULT_NAME = re.compile(r"^chamberlain(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$")


def policy(tree: RenderedTree, name: str) -> dict[str, set[str]]:
    """path -> capabilities of one rendered HCL policy."""
    text = tree[f"vault/policies/{name}.hcl"]
    grants = {m.group(1): {c.strip().strip('"') for c in m.group(2).split(",")} for m in _BLOCK.finditer(text)}
    # Nothing but comments and the parsed blocks: no stray stanza the regex did not see.
    rest = _BLOCK.sub("", text)
    assert all(not line or line.startswith("#") for line in rest.splitlines()), rest
    return grants


def role(tree: RenderedTree, mount: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(tree[f"vault/auth/{mount}/roles/{name}.json"])
    return body


def stores(tree: RenderedTree) -> list[tuple[str, dict[str, Any]]]:
    return [(p, d) for p, d in docs(tree, "envs/") if d["kind"] == "SecretStore"]


def test_base_reader_policy_is_exactly_the_consumed_path() -> None:
    tree = render("base")
    # data: the value; metadata: the version marker ESO copies into an annotation (custom_metadata, no values).
    assert policy(tree, "chamberlain.prod.prod-eu1.app.reader") == {
        "secret/data/prod/team-app/app-db": {"read"},
        "secret/metadata/prod/team-app/app-db": {"read"},
    }
    assert policy(tree, "chamberlain.dev.dev1.reporting.reader") == {
        "platform-data/data/dev/dev1/databases/orders-db-app": {"read"},
        "platform-data/metadata/dev/dev1/databases/orders-db-app": {"read"},
        "platform-config/data/dev/dev1/databases/orders-db-endpoint": {"read"},
        "platform-config/metadata/dev/dev1/databases/orders-db-endpoint": {"read"},
    }


@pytest.mark.parametrize("name", sorted(REPOS))
def test_each_store_role_grants_exactly_what_its_namespace_uses(name: str) -> None:
    """Derive the expected grants from the ESO objects alone and compare with the policies."""
    tree = render(name)
    expected: dict[str, dict[str, set[str]]] = {}
    store_role: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for path, st in stores(tree):
        vault = st["spec"]["provider"]["vault"]
        auth = vault["auth"]["kubernetes"]
        store_role[(path, st["metadata"]["name"])] = (auth["role"], vault)
        expected.setdefault(auth["role"], {})
        body = role(tree, auth["mountPath"], auth["role"])
        # The role is bound to exactly the ServiceAccount the store logs in with, in the store's namespace.
        assert body["bound_service_account_names"] == [auth["serviceAccountRef"]["name"]]
        assert body["bound_service_account_namespaces"] == [st["metadata"]["namespace"]]
        assert body["token_policies"] == [auth["role"]]
        assert [body["audience"]] == auth["serviceAccountRef"]["audiences"]
    for path, d in docs(tree, "envs/"):
        if d["kind"] == "ExternalSecret":
            home = d["spec"]["secretStoreRef"]["name"]
            for e in d["spec"].get("dataFrom", []):
                role_name, vault = store_role[(path, home)]
                expected[role_name].setdefault(f"{vault['path']}/data/{e['extract']['key']}", set()).add("read")
            for e in d["spec"].get("data", []):
                # a templated consumer's entry on another mount names that mount's store (sourceRef.storeRef)
                role_name, vault = store_role[(path, e.get("sourceRef", {}).get("storeRef", {}).get("name", home))]
                # the version marker: metadata, not data
                area = "metadata" if e["remoteRef"].get("metadataPolicy") == "Fetch" else "data"
                expected[role_name].setdefault(f"{vault['path']}/{area}/{e['remoteRef']['key']}", set()).add("read")
        elif d["kind"] == "PushSecret":
            role_name, vault = store_role[(path, d["spec"]["secretStoreRefs"][0]["name"])]
            for entry in d["spec"]["data"]:
                key = entry["match"]["remoteRef"]["remoteKey"]
                for area in ("data", "metadata"):
                    expected[role_name][f"{vault['path']}/{area}/{key}"] = {"create", "read", "update"}
    assert expected
    for role_name, grants in expected.items():
        assert policy(tree, role_name) == grants, role_name


@pytest.mark.parametrize("name", sorted(REPOS))
def test_no_wildcards_outside_the_orchestrator(name: str) -> None:
    tree = render(name)
    for path in tree.paths():
        if path.startswith("vault/policies/") and not path.endswith(".orchestrator.hcl"):
            grants = policy(tree, path.removeprefix("vault/policies/").removesuffix(".hcl"))
            # an ephemeral environment's instance readers: '+' is exactly the instance id segment, nothing else
            grants = {p.replace("/_instances/+/", "/_instances/ID/"): c for p, c in grants.items()
                      } if path.endswith(".instance-reader.hcl") else grants
            assert not any("*" in p or "+" in p for p in grants), path
            assert all(caps <= {"read", "create", "update"} for caps in grants.values()), path


@pytest.mark.parametrize("name", sorted(REPOS))
def test_orchestrator_never_reads_internal_values(name: str) -> None:
    tree = render(name)
    mounts = json.loads(tree["vault/mounts.json"])
    internal = [m for m, spec in mounts.items() if spec["type"] == "kv" and not spec["kv_config"]["cas_required"]]
    assert len(internal) == 2
    orchestrators = [p for p in tree.paths() if p.endswith(".orchestrator.hcl")]
    assert orchestrators
    for path in orchestrators:
        cluster = path.split(".")[1]
        grants = policy(tree, path.removeprefix("vault/policies/").removesuffix(".hcl"))
        for p, caps in grants.items():
            mount, area = p.split("/")[:2]
            if mount in internal:
                # metadata only: read it, and merge a version marker in (an observed external rotation)
                assert area == "metadata" and caps == {"read", "list", "update"}, p
                assert f"/{cluster}/" in p, p  # only its own cluster's publications
            elif mount == TRANSIT_MOUNT:  # sign and HMAC with its environments' keys, read public keys: nothing else
                assert (area in ("sign", "hmac") and caps == {"update"}) or (area == "keys" and caps == {"read"}), p
            else:
                assert area in ("data", "metadata", "delete", "undelete", "destroy"), p


def test_orchestrator_is_scoped_to_the_environments_of_its_cluster() -> None:
    tree = render("base")
    grants = policy(tree, "chamberlain.dev1.orchestrator")
    assert grants["secret/data/dev/*"] == {"create", "read", "update", "patch", "delete"}
    assert "secret/data/prod/*" not in grants
    # The ledger: its own partitions append-only (never update or delete: audit), every partition readable, the
    # previous release's head read only; signing only with the keys of its own environments.
    assert grants["secret/data/_chamberlain/ledger/dev/dev1/*"] == {"create", "read"}
    assert grants["secret/data/_chamberlain/ledger/dev/dev1/head"] == {"create", "read", "update"}
    assert grants["secret/data/_chamberlain/ledger/*"] == {"read"}
    assert grants["secret/data/_chamberlain/ledger-head"] == {"read"}
    assert not any(p.startswith("secret/data/_chamberlain/ledger/prod/") for p in grants)
    signing = {p for p in grants if p.startswith(f"{TRANSIT_MOUNT}/sign/")}
    assert signing == {f"{TRANSIT_MOUNT}/sign/chamberlain-ledger-dev",
                       f"{TRANSIT_MOUNT}/sign/chamberlain-ledger-preview"} or signing == {
        f"{TRANSIT_MOUNT}/sign/chamberlain-ledger-dev"}
    assert not any(("/export/" in p or p.endswith("/config") or "/rotate" in p) and p.startswith(TRANSIT_MOUNT)
                   for p in grants)
    hmac = {p for p in grants if p.startswith(f"{TRANSIT_MOUNT}/hmac/")}
    assert f"{TRANSIT_MOUNT}/hmac/chamberlain-marker-dev/sha2-256" in hmac
    assert not any("chamberlain-marker-prod" in p for p in hmac)
    # Rotation run records and staged values of its own environment only; never deletable history.
    assert grants["secret/data/_chamberlain/runs/dev/*"] == {"create", "read", "update"}
    assert grants["secret/data/_chamberlain/pending/dev/*"] == {"create", "read", "update", "delete"}
    assert "secret/data/_chamberlain/runs/prod/*" not in grants
    body = role(tree, "kubernetes-dev1", "chamberlain.dev1.orchestrator")
    assert body["bound_service_account_names"] == ["chamberlain"]
    assert body["bound_service_account_namespaces"] == ["chamberlain-system"]


def test_mounts_are_kv2_and_only_runtime_requires_cas() -> None:
    mounts = json.loads(render("base")["vault/mounts.json"])
    assert mounts.pop(TRANSIT_MOUNT)["type"] == "transit"  # the ledger's signing keys (issue 11)
    assert set(mounts) == {"secret", "platform-data", "platform-config"}
    for name, spec in mounts.items():
        assert spec["type"] == "kv" and spec["options"] == {"version": "2"}
        assert spec["kv_config"]["max_versions"] >= 2
        # ESO's PushSecret writes without check-and-set; only the runtime mount can require it.
        assert spec["kv_config"]["cas_required"] is (name == "secret")
    # One Kubernetes auth mount per cluster, each holding only that cluster's roles.
    tree = render("base")
    assert json.loads(tree["vault/auth.json"]) == {
        f"kubernetes-{c}": {"type": "kubernetes",
                            "description": f"chamberlain: ESO and orchestrator service accounts of cluster {c}"}
        for c in ("dev1", "prod-eu1")
    }
    for path in tree.paths():
        if path.startswith("vault/auth/") and "/roles/" in path:
            mount, name = path[len("vault/auth/"):-len(".json")].split("/roles/")
            assert f".{mount.removeprefix('kubernetes-')}." in name, path


@pytest.mark.parametrize("name", sorted(REPOS))
def test_vault_names_are_dns_safe_and_unambiguous(name: str) -> None:
    tree = render(name)
    names = [p.rsplit("/", 1)[1].removesuffix(".hcl") for p in tree.paths() if p.startswith("vault/policies/")]
    roles = [p.rsplit("/", 1)[1].removesuffix(".json") for p in tree.paths() if "/roles/" in p]
    assert sorted(names) == sorted(roles)  # one role per policy, same name
    for n in names:
        assert _VAULT_NAME.match(n), n


def test_bundle_files_parse() -> None:
    tree = render("base")
    for path in tree.paths():
        if path.startswith("vault/") and path.endswith(".json"):
            json.loads(tree[path])
        elif path.startswith("vault/"):
            assert path.endswith(".hcl"), path


def test_a_follower_cluster_cannot_rotate_and_writes_only_its_own_acknowledgements() -> None:
    """acme's prod runs on prod-eu1 (first: the rotating cluster) and prod-us1 (follows; rotation.clusters)."""
    tree = render("acme")
    owner = policy(tree, "chamberlain.prod-eu1.orchestrator")
    follower = policy(tree, "chamberlain.prod-us1.orchestrator")
    assert owner["secret/data/prod/*"] == {"create", "read", "update", "patch", "delete"}
    assert owner["secret/data/_chamberlain/runs/prod/*"] == {"create", "read", "update"}
    assert owner["secret/data/_chamberlain/acks/prod/*"] == {"read"}, "reads every acknowledgement, writes none"
    # The follower: a first version (handover) but never a version over an existing one; no run record (the
    # lease) and no staged value, so it can neither take a rotation nor read one in flight.
    assert follower["secret/data/prod/*"] == {"create", "read"}
    assert follower["secret/metadata/prod/*"] == {"create", "read", "update", "list"}
    assert not any(p.startswith(("secret/data/_chamberlain/runs/", "secret/data/_chamberlain/pending/",
                                 "secret/metadata/_chamberlain/runs/", "secret/metadata/_chamberlain/pending/",
                                 "secret/destroy/", "secret/delete/", "secret/undelete/")) for p in follower)
    acks = {p: caps for p, caps in follower.items() if "/_chamberlain/acks/" in p}
    assert acks == {"secret/data/_chamberlain/acks/prod/prod-us1/*": {"create", "read", "update"},
                    "secret/metadata/_chamberlain/acks/prod/prod-us1/*": {"read"}}
    # Neither reads the other's internal mounts.
    assert not any("/prod-eu1/" in p for p in follower if not p.startswith("secret/data/_chamberlain/ledger"))
    assert not any("/prod-us1/" in p for p in owner if not p.startswith("secret/data/_chamberlain/ledger"))


@pytest.mark.parametrize("values", [
    ("chamberlain-dev-reader", "app", "chamberlain.dev.dev1.app.reader", "20m", "1h"),
    ('a"b\\c', "é\u2028", "p\n", "", "0"),
])
def test_a_role_is_written_as_dump_json_writes_it(values: tuple[str, str, str, str, str]) -> None:
    """Roles are written directly (one per ESO identity); the text is exactly the general dump's."""
    from chamberlain.render.vault_bundle import _role, role_data
    from chamberlain.render.yamlio import dump_json

    assert _role(*values) == dump_json(role_data(*values))
