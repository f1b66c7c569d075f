"""Configuration of the runtime authority: desired state from the render bundle, the pure plan, apply and prune,
against the in-memory fake. The lab test proves the same against a real Vault."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chamberlain.authority.configure import (
    AUDIT_PATH,
    CONFIGURATOR,
    Change,
    ConfigurationConflict,
    DeclarationRequired,
    Desired,
    KubernetesAuthSettings,
    Observed,
    Settings,
    apply,
    desired_state,
    observe,
    plan,
    plan_audit,
    select,
    summarize,
)
from chamberlain.authority.fake import FakeTransit
from chamberlain.authority.model import AuditDevice
from chamberlain.render import render_repository
from chamberlain.service import load_valid
from tests.conftest import CORPUS
from tests.unit.test_authority_fakes import FakeVault

K8S = KubernetesAuthSettings("https://k8s.test:6443", "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
                             reviewer_jwt="reviewer.jwt.value", disable_local_ca_jwt=True)


def _bundle() -> dict[str, str]:
    tree = render_repository(load_valid(CORPUS / "base"))
    return {p[len("vault/"):]: tree[p] for p in tree.paths() if p.startswith("vault/")}


def _settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {"controller_namespace": "chamberlain-system", "controller_service_account": "chamberlain",
                            "runtime_mount": "secret", "audit_file": "/var/log/vault/audit.log", "kubernetes": K8S}
    return Settings(**{**base, **kw})


@pytest.fixture
def desired() -> Desired:
    return desired_state(_bundle(), _settings())


def _converge(vault: FakeVault, desired: Desired, prune: bool = False) -> list[Change]:
    changes = plan(desired, observe(vault, desired), prune=prune)
    apply(vault, desired, changes)
    return changes


def test_desired_state_adds_the_configurator_to_the_bundle(desired: Desired) -> None:
    assert set(desired.mounts) == {"secret", "platform-data", "platform-config", "chamberlain-transit"}
    assert ("chamberlain-transit", "chamberlain-ledger-_authority") in desired.transit_keys
    assert CONFIGURATOR in desired.policies
    # One configurator role per cluster's auth mount, bound to its own ServiceAccount, never the controller's.
    for mount in ("kubernetes-dev1", "kubernetes-prod-eu1"):
        role = desired.roles[(mount, CONFIGURATOR)]
        assert role.bound_service_account_namespaces == ("chamberlain-configurator",)
        assert role.bound_service_account_names == ("chamberlain-configurator",)
    assert ("kubernetes", CONFIGURATOR) not in desired.roles
    assert role.token_policies == (CONFIGURATOR,)
    assert 'path "sys/rotate"' in desired.policies[CONFIGURATOR]
    assert 'path "secret/data/_chamberlain/ledger/*"' in desired.policies[CONFIGURATOR]
    assert desired.audit == {AUDIT_PATH: AuditDevice("file", "chamberlain: file audit device",
                                                     {"file_path": "/var/log/vault/audit.log"})}


def test_reviewer_jwt_stays_out_of_reprs_and_plans(desired: Desired) -> None:
    assert "reviewer.jwt.value" not in repr(K8S)
    assert "reviewer.jwt.value" not in repr(desired)
    changes = plan(desired, observe(FakeVault(), desired))
    assert "reviewer.jwt.value" not in json.dumps([c.as_dict() for c in changes])


def test_plan_on_an_empty_vault_adds_everything(desired: Desired) -> None:
    changes = plan(desired, observe(FakeVault(), desired))
    kinds = {(c.kind, c.action) for c in changes}
    assert kinds == {("mount", "add"), ("kv-config", "add"), ("transit-key", "add"), ("auth", "add"),
                     ("auth-config", "add"),
                     ("policy", "add"), ("role", "add"), ("audit", "add")}
    assert summarize(changes)["add"] == len(changes)


def test_apply_then_second_plan_is_empty(desired: Desired) -> None:
    vault = FakeVault()
    first = _converge(vault, desired)
    assert first
    writes = vault.writes
    assert plan(desired, observe(vault, desired), prune=True) == []
    assert _converge(vault, desired) == []
    assert vault.writes == writes
    assert vault.kv_config["secret"]["cas_required"] is True
    assert vault.kv_config["platform-data"]["cas_required"] is False
    for mount in ("kubernetes-dev1", "kubernetes-prod-eu1"):
        assert vault.paths[f"auth/{mount}/config"]["token_reviewer_jwt"] == "reviewer.jwt.value"
        assert vault.paths[f"auth/{mount}/config"]["disable_local_ca_jwt"] is True


def test_plan_shows_a_manual_change_field_by_field(desired: Desired) -> None:
    vault = FakeVault()
    _converge(vault, desired)
    role = next(p for p in vault.paths if p.endswith(".orchestrator"))
    vault.paths[role] = {**vault.paths[role], "token_ttl": "5h", "bound_service_account_namespaces": ["evil"]}
    vault.kv_config["secret"]["max_versions"] = 99
    vault.policies[CONFIGURATOR] += "\n# edited by hand\n"
    changes = plan(desired, observe(vault, desired))
    by_kind = {c.kind: c for c in changes}
    assert by_kind["role"].fields == ("bound_service_account_namespaces", "token_ttl")
    assert by_kind["kv-config"].fields == ("max_versions",)
    assert by_kind["policy"].name == CONFIGURATOR
    assert by_kind["role"].line().startswith("~ role kubernetes-")


def test_durations_compare_by_value_not_spelling(desired: Desired) -> None:
    vault = FakeVault()
    _converge(vault, desired)
    role = next(p for p in vault.paths if p.endswith(".orchestrator"))
    vault.paths[role]["token_ttl"] = "60m"  # the same hour, spelled differently
    assert plan(desired, observe(vault, desired)) == []


def test_prune_removes_stale_roles_in_managed_mounts_and_unmanaged_policies(desired: Desired) -> None:
    vault = FakeVault()
    _converge(vault, desired)
    vault.paths["auth/kubernetes-dev1/role/stale"] = {"token_policies": ["stale"]}
    vault.paths["auth/other/role/theirs"] = {"token_policies": ["x"]}  # an auth mount we do not manage
    vault.auth["other"] = {"type": "kubernetes"}
    vault.policies["stale"] = "# stale\n"
    assert plan(desired, observe(vault, desired)) == []  # without --prune nothing unmanaged is touched
    changes = _converge(vault, desired, prune=True)
    assert [c.line() for c in changes] == ["- role kubernetes-dev1/stale", "- policy stale"]
    assert "auth/kubernetes-dev1/role/stale" not in vault.paths
    assert "auth/other/role/theirs" in vault.paths
    assert "default" in vault.policies  # never pruned
    assert "other" in vault.auth and "cubbyhole" in vault.mounts  # mounts are never pruned


def test_a_kv_v1_mount_under_a_managed_name_is_a_conflict_and_nothing_is_applied(desired: Desired) -> None:
    vault = FakeVault()
    vault.mounts["secret"] = {"type": "kv", "options": {"version": "1"}}
    changes = plan(desired, observe(vault, desired))
    assert next(c for c in changes if c.action == "conflict").name == "secret"
    with pytest.raises(ConfigurationConflict, match="nothing was changed"):
        apply(vault, desired, changes)
    assert vault.writes == 0


def test_audit_device_with_another_path_is_replaced(desired: Desired) -> None:
    vault = FakeVault()
    _converge(vault, desired)
    vault.audit[AUDIT_PATH]["options"] = {"file_path": "/elsewhere"}
    changes = _converge(vault, desired)
    assert [(c.kind, c.action) for c in changes] == [("audit", "change")]
    assert vault.audit[AUDIT_PATH]["options"] == {"file_path": "/var/log/vault/audit.log"}


WANT = AuditDevice("file", "chamberlain: file audit device", {"file_path": "/var/log/bao/audit.log"})
DECLARED = {"to-file": AuditDevice("file", "the operator's", {"file_path": "/var/log/bao/audit.log",
                                                              "mode": "0600"})}
ELSEWHERE = {AUDIT_PATH: AuditDevice("file", "x", {"file_path": "/elsewhere"})}
SOCKET = {"to-socket": AuditDevice("socket", "x", {"file_path": "/var/log/bao/audit.log"})}


@pytest.mark.parametrize(("observed", "declarative", "expected"), [
    pytest.param({}, False, [("add", "")], id="api-managed-absent:add"),
    pytest.param({AUDIT_PATH: WANT}, False, [], id="api-managed-same:nothing"),
    pytest.param(ELSEWHERE, False, [("change", "re-enabled")], id="api-managed-other-options:re-enable"),
    pytest.param(DECLARED, False, [("add", "")], id="api-managed-only-at-another-path:add-ours"),
    pytest.param({}, True, [("declare", "configuration file")], id="declarative-absent:declare"),
    pytest.param({AUDIT_PATH: WANT}, True, [], id="declarative-declared-as-ours:nothing"),
    pytest.param(DECLARED, True, [], id="declarative-declared-elsewhere-with-more-options:nothing"),
    pytest.param(ELSEWHERE, True, [("declare", "configuration file")], id="declarative-other-file:declare"),
    pytest.param(SOCKET, True, [("declare", "configuration file")], id="declarative-other-type:declare"),
])
def test_audit_device_enabled_or_verified(observed: dict[str, AuditDevice], declarative: bool,
                                          expected: list[tuple[str, str]]) -> None:
    changes = plan_audit({AUDIT_PATH: WANT}, observed, declarative=declarative)
    assert [c.action for c in changes] == [action for action, _ in expected]
    for change, (_, said) in zip(changes, expected, strict=True):
        assert said in change.detail and change.name == AUDIT_PATH


def test_a_declare_change_names_the_stanza_to_add() -> None:
    (change,) = plan_audit({AUDIT_PATH: WANT}, {}, declarative=True)
    assert ('audit "file" "chamberlain-file" { description = "chamberlain: file audit device" '
            'options { file_path = "/var/log/bao/audit.log" } }') in change.detail
    assert change.line().startswith("? audit chamberlain-file")
    assert summarize([change])["declare"] == 1


def test_on_a_declarative_server_everything_else_is_applied_then_the_declaration_is_required(
        desired: Desired) -> None:
    vault = FakeVault()
    vault.audit.declarative = True
    changes = plan(desired, observe(vault, desired))
    assert ("audit", "declare") in {(c.kind, c.action) for c in changes}
    result = apply(vault, desired, changes)
    assert vault.audit == {}  # never enabled through the API
    assert ("kubernetes-dev1", CONFIGURATOR) in observe(vault, desired).roles  # the configurator exists for a re-run
    assert [c.name for c in result.undeclared] == [AUDIT_PATH]
    with pytest.raises(DeclarationRequired, match=r"everything else was applied.*configuration file"):
        result.raise_undeclared()
    vault.audit["declared"] = {"type": "file", "description": "by the operator",  # the operator declares it
                               "options": {"file_path": "/var/log/vault/audit.log"}}
    assert plan(desired, observe(vault, desired)) == []


def test_without_kubernetes_settings_the_auth_config_is_left_alone() -> None:
    desired = desired_state(_bundle(), _settings(kubernetes=None, audit_file=None))
    assert desired.auth_config == {} and desired.audit == {}
    changes = plan(desired, observe(FakeVault(), desired))
    assert not [c for c in changes if c.kind in ("auth-config", "audit")]


@pytest.mark.parametrize(("environment", "cluster", "orchestrators"), [
    (None, None, {"chamberlain.dev1.orchestrator", "chamberlain.prod-eu1.orchestrator"}),
    (None, "dev1", {"chamberlain.dev1.orchestrator"}),
    ("prod", None, {"chamberlain.dev1.orchestrator", "chamberlain.prod-eu1.orchestrator"}),
], ids=["all", "cluster-dev1", "environment-prod"])
def test_select_restricts_the_bundle(environment: str | None, cluster: str | None, orchestrators: set[str]) -> None:
    files = select(_bundle(), environment, cluster)
    names = {p.rsplit("/", 1)[-1].removesuffix(".hcl") for p in files if p.startswith("policies/")}
    assert {n for n in names if n.endswith(".orchestrator")} == orchestrators
    if cluster:
        assert all(".dev1." in n or n.endswith("dev1.orchestrator") for n in names)
    if environment:
        assert not [n for n in names if n.split(".")[1] == "dev" and len(n.split(".")) > 3]
    assert "mounts.json" in files


def test_runtime_mount_missing_from_bundle_is_a_usage_error() -> None:
    from chamberlain.errors import UsageError

    with pytest.raises(UsageError, match="runtime mount"):
        desired_state(_bundle(), _settings(runtime_mount="nope"))


def test_observed_is_a_plain_snapshot(desired: Desired) -> None:
    obs = observe(FakeVault(), desired)
    assert isinstance(obs, Observed)
    assert "root" not in obs.policies


def test_transit_keys_are_created_once_and_never_replaced(desired: Desired) -> None:
    """The ledger's signing keys and the marker keys (issue 11): planned as changes, created by apply, a second run
    plans nothing; a key of another type under a managed name is a conflict, never replaced."""
    vault = FakeVault()
    changes = _converge(vault, desired)
    created = {c.name for c in changes if c.kind == "transit-key"}
    assert "chamberlain-transit/chamberlain-ledger-_authority" in created
    assert {f"chamberlain-transit/chamberlain-ledger-{e}" for e in ("dev", "prod")} <= created
    assert {f"chamberlain-transit/chamberlain-marker-{e}" for e in ("dev", "prod")} <= created
    key = vault.transit.read_key("chamberlain-transit", "chamberlain-ledger-dev")
    assert key is not None and key.type == "ed25519"
    assert not [c for c in plan(desired, observe(vault, desired)) if c.kind == "transit-key"]
    other = FakeVault()
    _converge(other, desired)
    other.transit = FakeTransit()
    other.transit.ensure_key("chamberlain-transit", "chamberlain-ledger-dev", "aes256-gcm96")
    conflicts = [c for c in plan(desired, observe(other, desired)) if c.action == "conflict"]
    assert [c.name for c in conflicts] == ["chamberlain-transit/chamberlain-ledger-dev"]


def test_the_configurator_may_create_keys_but_signs_only_its_own_partition(desired: Desired) -> None:
    text = desired.policies[CONFIGURATOR]
    assert 'path "chamberlain-transit/keys/chamberlain-ledger-dev"' in text
    assert 'path "chamberlain-transit/sign/chamberlain-ledger-_authority"' in text
    assert 'path "chamberlain-transit/sign/chamberlain-ledger-dev"' not in text
    transit_paths = [line for line in text.splitlines() if line.startswith('path "chamberlain-transit/')]
    assert transit_paths and not any("/config" in p or "export" in p or "*" in p for p in transit_paths)
    assert 'path "secret/data/_chamberlain/ledger/_authority/configurator/*"' in text


def test_a_reviewer_jwt_given_as_a_replacement_is_written_although_one_is_set(desired: Desired) -> None:
    """The server never shows the reviewer JWT, so a converged mount plans nothing; after a cluster rebuild the old
    JWT names a ServiceAccount that is gone, and ``replace_reviewer_jwt`` writes the new one (once per run)."""
    vault = FakeVault()
    _converge(vault, desired)
    replacing = desired_state(_bundle(), _settings(
        kubernetes=KubernetesAuthSettings(K8S.host, K8S.ca_pem, reviewer_jwt="new.reviewer.jwt",
                                          disable_local_ca_jwt=True), replace_reviewer_jwt=True))
    assert plan(desired_state(_bundle(), _settings(kubernetes=KubernetesAuthSettings(
        K8S.host, K8S.ca_pem, reviewer_jwt="new.reviewer.jwt", disable_local_ca_jwt=True))),
        observe(vault, desired)) == []  # without the flag: nothing to see
    changes = plan(replacing, observe(vault, replacing))
    assert [(c.kind, c.name, c.action, c.fields) for c in changes] == [
        ("auth-config", m, "change", ("token_reviewer_jwt",)) for m in ("kubernetes-dev1", "kubernetes-prod-eu1")]
    assert "new.reviewer.jwt" not in json.dumps([c.as_dict() for c in changes])
    apply(vault, replacing, changes)
    assert {vault.paths[f"auth/{m}/config"]["token_reviewer_jwt"] for m in ("kubernetes-dev1",
                                                                             "kubernetes-prod-eu1")} == {
        "new.reviewer.jwt"}


def test_replacing_without_a_reviewer_jwt_plans_nothing_extra(desired: Desired) -> None:
    vault = FakeVault()
    _converge(vault, desired)
    without = desired_state(_bundle(), _settings(kubernetes=KubernetesAuthSettings(K8S.host, K8S.ca_pem),
                                                 replace_reviewer_jwt=True))
    assert without.replace_reviewer == frozenset()
    assert all(c.fields != ("token_reviewer_jwt",) for c in plan(without, observe(vault, without)))


@pytest.mark.parametrize(("engine", "refused"), [("transit", True), ("ssh", True), ("pki", False), (None, False)])
def test_a_pki_mount_that_is_another_engine_is_a_conflict(engine: str | None, refused: bool) -> None:
    """Red team: an intent naming a transit (or SSH) engine as its PKI mount put update on <mount>/sign/<role> into
    every orchestrator's policy: a signature with that engine's keys. configure refuses it against the live mount."""
    bundle = {**_bundle(), "pki.json": json.dumps({"mounts": ["signer"]})}
    desired = desired_state(bundle, _settings())
    assert desired.pki_mounts == frozenset({"signer"})
    vault = FakeVault()
    if engine is not None:
        vault.mounts["signer"] = {"type": engine, "options": {}}
    changes = plan(desired, observe(vault, desired))
    conflicts = [c for c in changes if c.action == "conflict"]
    assert bool(conflicts) is refused
    if refused:
        assert conflicts[0].name == "signer" and f"a {engine} engine, not pki" in conflicts[0].line()
        with pytest.raises(ConfigurationConflict, match="nothing was changed"):
            apply(vault, desired, changes)
        assert vault.writes == 0


def test_pki_json_is_rendered_only_when_an_intent_signs() -> None:
    assert "pki.json" not in _bundle()  # a bundle without PKI intents is what it was
    with pytest.raises(Exception, match="malformed"):
        desired_state({**_bundle(), "pki.json": "{\"mounts\": 3}"}, _settings())
