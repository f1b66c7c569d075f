"""The least-privilege matrix on the real Vault after the demo's setup (Phase 0 to handover for dev/dev1, Vault
configured from the acme render bundle for that cluster).

Every identity logs in the way it does in production: a real ServiceAccount token from the TokenRequest API
(audience ``vault``) presented to Vault's Kubernetes auth, which reviews it at the real kube-apiserver. Each row
of the matrix is one allowed or denied action; denied means Vault answers 403, never "not found" for a path that
exists. Runs its own lab on ports shifted by ``CHAMBERLAIN_LAB_TEST_PORT_OFFSET`` + 700.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chamberlain.clock import SystemClock
from chamberlain.intent.paths import TRANSIT_MOUNT, VaultPath, ledger_key, marker_key
from chamberlain.lab import builds, procs
from chamberlain.lab import lab as lab_mod

pytestmark = [pytest.mark.lab, pytest.mark.vault_compat]

pytest.importorskip("hvac")
pytest.importorskip("kubernetes")

from chamberlain.audit.keys import PinnedKeys  # noqa: E402
from chamberlain.audit.ledger import (  # noqa: E402
    Ledger,
    LedgerEntry,
    LedgerReader,
    Partition,
    TransitSigner,
    signing_message,
)
from chamberlain.authority.errors import AuthorityError, Forbidden  # noqa: E402
from chamberlain.authority.vault import VaultClient, login_kubernetes  # noqa: E402
from chamberlain.demo import DemoOptions, Phase, run_demo  # noqa: E402
from chamberlain.kube.client import KubeClient  # noqa: E402
from chamberlain.values.markers import TransitMarkers, version_marker  # noqa: E402
from tests.conftest import host_tools, lab_authority, lab_host, unbuilt  # noqa: E402

MOUNT = "kubernetes-dev1"  # the auth mount of cluster dev1 (one per cluster)
ORCHESTRATOR = ("chamberlain-system", "chamberlain", "chamberlain.dev1.orchestrator")
PAYMENTS_READER = ("payments", "chamberlain-dev-reader", "chamberlain.dev.dev1.payments.reader")
WEB_READER = ("web", "chamberlain-dev-reader", "chamberlain.dev.dev1.web.reader")
PUBLISHER = ("databases", "chamberlain-dev-publish-orders-db-app",
             "chamberlain.dev.dev1.databases.orders-db-app.publisher")
# The configurator's own ServiceAccount, in a namespace no workload runs in (a human or CI mints its tokens).
CONFIGURATOR = ("chamberlain-configurator", "chamberlain-configurator", "chamberlain.authority.configurator")

PAYMENTS_DB = "secret/data/dev/team-payments/payments-db"
STOREFRONT = "secret/data/dev/team-web/storefront-session"  # consumed by namespace web only
REGISTRY = "secret/data/dev/team-platform/registry-pull"  # handed over; consumed by payments (and others)
ORDERS_DB_APP = "platform-data/data/dev/dev1/databases/orders-db-app"  # published by databases
ORDERS_ENDPOINT = "platform-config/data/dev/dev1/databases/orders-db-endpoint"
LEDGER_1 = "secret/data/_chamberlain/ledger/_authority/configurator/000000000001"  # the first entry (authority-init)
DEV1_LEDGER = "secret/data/_chamberlain/ledger/dev/dev1"  # the partition dev1's orchestrator writes (handover)


@dataclass
class Env:
    lab: lab_mod.Lab
    kube: KubeClient

    def token(self, namespace: str, account: str, audiences: list[str] | None = None) -> str:
        return self.kube.service_account_token(namespace, account, ["vault"] if audiences is None else audiences)

    def login(self, namespace: str, account: str, role: str, audiences: list[str] | None = None) -> VaultClient:
        jwt = self.token(namespace, account, audiences)
        return login_kubernetes(self.lab.authority.address, self.lab.pki.ca.cert, MOUNT, role, jwt, clock=SystemClock())


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    missing = unbuilt()
    if missing or builds.postgres_bindir() is None:
        pytest.skip(f"lab binaries missing ({missing}); run `python -m chamberlain.lab build`")
    lab_dir = tmp_path_factory.mktemp("least-privilege") / "lab"
    offset = int(os.environ.get("CHAMBERLAIN_LAB_TEST_PORT_OFFSET", "1000")) + 700
    pids: dict[str, int] = {}
    try:
        report = run_demo(DemoOptions(through=Phase.handover, lab_dir=lab_dir, port_offset=offset, keep=True,
                                      authority=lab_authority()),
                          lab_host(), host_tools())
        assert report.ok, [p.as_dict() for p in report.phases if not p.ok]
        lab = lab_mod.Lab(lab_mod.LabConfig.load(lab_dir, lab_host()))
        pids = {n: info.pid for n, s in lab.servers().items() if (info := s.running()) is not None}
        kube = KubeClient.from_kubeconfig(lab.kubeconfig, clock=SystemClock())
        # Workload identities: the ServiceAccount a Deployment in a consumer namespace runs as. Without a
        # controller-manager nothing creates them, so the test does.
        kube.ensure_service_account("payments", "default")
        kube.ensure_service_account("payments", "payments-api")
        yield Env(lab, kube)
        kube.close()
    finally:
        lab_mod.down(lab_dir, lab_host(), progress=lambda _m: None)
        lab_mod.Lab(lab_mod.LabConfig.load(lab_dir, lab_host())).postgres.purge()
    leftovers = {name: procs.group_members(pid) for name, pid in pids.items()}
    assert not any(leftovers.values()), f"lab processes left behind: {leftovers}"


def _denied(action: Callable[[], object]) -> None:
    with pytest.raises(Forbidden) as info:
        action()
    assert "403" in str(info.value)


# ------------------------------------------------------------------------------------------ consumers (ESO)


def test_reader_reads_what_its_namespace_materializes(env: Env) -> None:
    client = env.login(*PAYMENTS_READER)
    for path in (PAYMENTS_DB, REGISTRY):
        body = client.logical.read(path)
        assert body is not None and body.data["data"], path
        # ...and its metadata, where the version marker ESO copies into an annotation lives (no values there).
        meta = client.logical.read(path.replace("/data/", "/metadata/", 1))
        assert meta is not None, path


@pytest.mark.parametrize("action", [
    pytest.param(lambda c: c.logical.read(STOREFRONT), id="read-other-namespace-path"),
    pytest.param(lambda c: c.logical.read(ORDERS_DB_APP.replace("orders-db-app", "x")), id="read-undeclared-internal"),
    pytest.param(lambda c: c.logical.read("secret/data/prod/team-payments/payments-db"), id="read-prod-path"),
    pytest.param(lambda c: c.logical.read(LEDGER_1), id="read-ledger-entry"),
    pytest.param(lambda c: c.logical.read("secret/data/_chamberlain/ledger-head"), id="read-ledger-head"),
    pytest.param(lambda c: c.logical.list("secret/metadata/dev"), id="list-runtime-mount"),
    pytest.param(lambda c: c.logical.read(STOREFRONT.replace("/data/", "/metadata/", 1)), id="read-other-metadata"),
    pytest.param(lambda c: c.logical.write(PAYMENTS_DB, {"data": {"k": "v"}, "options": {"cas": 1}}),
                 id="write-own-path"),
    pytest.param(lambda c: c.logical.read("sys/mounts"), id="read-sys-mounts"),
    pytest.param(lambda c: c.logical.read("sys/policy/chamberlain.dev1.orchestrator"), id="read-policies"),
])
def test_reader_denied(env: Env, action: Callable[[VaultClient], object]) -> None:
    client = env.login(*PAYMENTS_READER)
    _denied(lambda: action(client))


def test_web_reader_cannot_read_payments(env: Env) -> None:
    client = env.login(*WEB_READER)
    assert client.logical.read(STOREFRONT) is not None
    _denied(lambda: client.logical.read(PAYMENTS_DB))


# ------------------------------------------------------------------------------------------ publisher (PushSecret)


def test_publisher_writes_its_own_path(env: Env) -> None:
    client = env.login(*PUBLISHER)
    client.logical.write(ORDERS_DB_APP, {"data": {"password": "published-by-the-operator"}})
    body = client.logical.read(ORDERS_DB_APP)
    assert body is not None and body.data["data"] == {"password": "published-by-the-operator"}


@pytest.mark.parametrize("path", [
    pytest.param("platform-data/data/dev/dev1/databases/orders-db-other", id="sibling-in-own-namespace"),
    pytest.param("platform-data/data/dev/dev1/kafka/payments-kafka-user", id="other-producer"),
    pytest.param(ORDERS_ENDPOINT, id="config-intent-of-same-namespace"),
    pytest.param("platform-data/data/prod/prod-eu1/databases/orders-db-app", id="same-name-other-cluster"),
    pytest.param("secret/data/dev/team-data/orders-db-app", id="runtime-mount"),
])
def test_publisher_cannot_write_elsewhere(env: Env, path: str) -> None:
    client = env.login(*PUBLISHER)
    _denied(lambda: client.logical.write(path, {"data": {"k": "v"}}))


def test_publisher_cannot_delete_or_read_others(env: Env) -> None:
    client = env.login(*PUBLISHER)
    _denied(lambda: client.logical.delete(ORDERS_DB_APP.replace("/data/", "/metadata/")))
    _denied(lambda: client.logical.read(PAYMENTS_DB))
    _denied(lambda: client.logical.read(LEDGER_1))


# ------------------------------------------------------------------------------------------ logins that must fail


@pytest.mark.parametrize(("namespace", "account", "role", "audiences"), [
    pytest.param("payments", "default", PAYMENTS_READER[2], None, id="workload-default-sa-as-reader"),
    pytest.param("payments", "payments-api", PAYMENTS_READER[2], None, id="workload-sa-as-reader"),
    pytest.param("payments", "payments-api", ORCHESTRATOR[2], None, id="workload-sa-as-orchestrator"),
    pytest.param("web", "chamberlain-dev-reader", PAYMENTS_READER[2], None, id="other-namespace-reader"),
    pytest.param("payments", "chamberlain-dev-reader", ORCHESTRATOR[2], None, id="reader-as-orchestrator"),
    pytest.param("payments", "chamberlain-dev-reader", PUBLISHER[2], None, id="reader-as-publisher"),
    pytest.param("payments", "chamberlain-dev-reader", PAYMENTS_READER[2], [], id="reader-wrong-audience"),
    # Separation of duties: no identity that runs the controller (or any workload) is the configurator.
    pytest.param(ORCHESTRATOR[0], ORCHESTRATOR[1], CONFIGURATOR[2], None, id="controller-sa-as-configurator"),
    pytest.param("payments", "chamberlain-dev-reader", CONFIGURATOR[2], None, id="reader-as-configurator"),
    pytest.param(PUBLISHER[0], PUBLISHER[1], CONFIGURATOR[2], None, id="publisher-as-configurator"),
    pytest.param("payments", "payments-api", CONFIGURATOR[2], None, id="workload-sa-as-configurator"),
    pytest.param(CONFIGURATOR[0], CONFIGURATOR[1], ORCHESTRATOR[2], None, id="configurator-sa-as-orchestrator"),
    pytest.param(CONFIGURATOR[0], CONFIGURATOR[1], PAYMENTS_READER[2], None, id="configurator-sa-as-reader"),
    pytest.param(CONFIGURATOR[0], CONFIGURATOR[1], CONFIGURATOR[2], [], id="configurator-wrong-audience"),
])
def test_login_refused(env: Env, namespace: str, account: str, role: str, audiences: list[str] | None) -> None:
    with pytest.raises(AuthorityError) as info:
        env.login(namespace, account, role, audiences)
    assert any(code in str(info.value) for code in ("403", "400")), str(info.value)


# ------------------------------------------------------------------------------------------ orchestrator


def test_orchestrator_runs_the_runtime_life_cycle(env: Env) -> None:
    client = env.login(*ORCHESTRATOR)
    assert client.logical.read(PAYMENTS_DB) is not None
    assert client.logical.read(LEDGER_1) is not None
    assert client.logical.list("platform-data/metadata/dev/dev1/databases")  # reports on internal secrets


@pytest.mark.parametrize("action", [
    pytest.param(lambda c: c.logical.read(ORDERS_DB_APP), id="read-internal-data-value"),
    pytest.param(lambda c: c.logical.read(ORDERS_ENDPOINT), id="read-internal-config-value"),
    pytest.param(lambda c: c.logical.read("secret/data/prod/team-payments/payments-db"), id="read-other-cluster-env"),
    pytest.param(lambda c: c.logical.delete(LEDGER_1.replace("/data/", "/metadata/")), id="delete-ledger"),
    pytest.param(lambda c: c.logical.read("sys/mounts"), id="read-sys-mounts"),
    pytest.param(lambda c: c.logical.read("sys/audit"), id="read-sys-audit"),
    pytest.param(lambda c: c.logical.read("sys/policy/chamberlain.dev1.orchestrator"), id="read-own-policy"),
    pytest.param(lambda c: c.logical.write("sys/policy/x", {"policy": 'path "*" {capabilities=["read"]}'}),
                 id="write-policy"),
    pytest.param(lambda c: c.logical.read("auth/kubernetes-dev1/config"), id="read-auth-config"),
    pytest.param(lambda c: c.logical.write("auth/token/create", {"policies": ["root"]}), id="create-root-token"),
    # Configurator-only: policies, auth methods and their config and roles, audit devices.
    pytest.param(lambda c: c.logical.write("sys/policies/acl/chamberlain.authority.configurator",
                                           {"policy": 'path "*" {capabilities=["sudo"]}'}),
                 id="write-configurator-acl"),
    pytest.param(lambda c: c.logical.write("sys/policies/acl/chamberlain.dev1.orchestrator",
                                           {"policy": 'path "*" {capabilities=["read"]}'}), id="widen-own-policy"),
    pytest.param(lambda c: c.logical.write("auth/kubernetes-dev1/config", {"kubernetes_host": "https://evil:6443"}),
                 id="write-auth-config"),
    pytest.param(lambda c: c.logical.write("auth/kubernetes-dev1/role/chamberlain.authority.configurator",
                                           {"bound_service_account_names": ["chamberlain"],
                                            "bound_service_account_namespaces": ["chamberlain-system"],
                                            "token_policies": ["chamberlain.authority.configurator"]}),
                 id="rebind-configurator-role"),
    pytest.param(lambda c: c.logical.write("sys/auth/evil", {"type": "userpass"}), id="enable-auth-method"),
    pytest.param(lambda c: c.logical.write("sys/audit/evil", {"type": "file", "options": {"file_path": "/tmp/x"}}),
                 id="enable-audit-device"),
    pytest.param(lambda c: c.logical.delete("sys/audit/chamberlain-file"), id="disable-audit-device"),
    pytest.param(lambda c: c.logical.write("sys/mounts/evil", {"type": "kv"}), id="enable-mount"),
    pytest.param(lambda c: c.logical.write("sys/rotate", {}), id="rotate-key"),
])
def test_orchestrator_denied(env: Env, action: Callable[[VaultClient], object]) -> None:
    client = env.login(*ORCHESTRATOR)
    _denied(lambda: action(client))


def test_orchestrator_cannot_rewrite_the_ledger(env: Env) -> None:
    """The ledger policy grants create and read, not update: KV v2 then accepts a write only with cas=0 (a new
    entry), so rewriting an entry fails at any CAS value and the entry stays as it was."""
    from chamberlain.authority.errors import CasConflict

    client = env.login(*ORCHESTRATOR)
    before = client.logical.read(LEDGER_1)
    assert before is not None and before.data["data"]["entry"]
    for options in ({"cas": 1}, {"cas": 0}, {}):
        with pytest.raises((Forbidden, CasConflict)):
            client.logical.write(LEDGER_1, {"data": {"entry": "{}"}, "options": options})
    assert client.logical.read(LEDGER_1) == before


# ------------------------------------------------------------------------------------------ the signed ledger


def _pinned(client: VaultClient) -> PinnedKeys:
    """What `audit pin` writes into Git: the public keys read from the real transit engine."""
    names = [ledger_key(e) for e in ("_authority", "dev", "prod", "preview")]
    return PinnedKeys.from_transit({n: client.transit.public_keys(TRANSIT_MOUNT, n) for n in names})


def _forge(client: VaultClient, seq: int, prev: str, body: dict[str, object]) -> LedgerEntry:
    """A well-chained entry signed with a key that is not the environment's (a forger with KV write only)."""
    entry = LedgerEntry(event="rotation", actor="forger", seq=seq, time="2026-01-01T00:00:00Z", prev=prev,
                        partition="dev/dev1", **body)  # type: ignore[arg-type]
    entry = entry.model_copy(update={"hash": entry.computed_hash()})
    sig = base64.b64encode(Ed25519PrivateKey.generate().sign(signing_message("dev/dev1", entry.hash))).decode()
    return entry.model_copy(update={"sig": f"vault:v1:{sig}"})


def test_the_ledger_is_signed_partitioned_and_verifies(env: Env) -> None:
    client = env.login(*ORCHESTRATOR)
    reader = LedgerReader(client.kv, "secret")
    assert {"_authority/configurator", "dev/dev1"} <= {p.name for p in reader.partitions() if p is not None}
    report = reader.verify(_pinned(client))
    assert report.ok, report.problems
    assert all(e.sig.startswith("vault:v") for e in reader.entries())


@pytest.mark.parametrize("action", [
    pytest.param(lambda c: c.logical.write("secret/data/_chamberlain/ledger/prod/prod-eu1/000000000001",
                                           {"data": {"entry": "{}"}, "options": {"cas": 0}}),
                 id="write-other-cluster-partition"),
    pytest.param(lambda c: c.logical.write("secret/data/_chamberlain/ledger/dev/dev2/000000000001",
                                           {"data": {"entry": "{}"}, "options": {"cas": 0}}),
                 id="write-same-env-other-cluster-partition"),
    pytest.param(lambda c: c.logical.write("secret/data/_chamberlain/ledger/_authority/configurator/000000000099",
                                           {"data": {"entry": "{}"}, "options": {"cas": 0}}),
                 id="write-configurator-partition"),
    pytest.param(lambda c: c.logical.write("secret/data/_chamberlain/ledger/prod/prod-eu1/head",
                                           {"data": {"seq": "1"}}), id="move-other-head"),
    pytest.param(lambda c: c.logical.write("secret/data/_chamberlain/ledger-head", {"data": {"seq": "1"}}),
                 id="write-old-layout-head"),
    pytest.param(lambda c: c.transit.sign(TRANSIT_MOUNT, ledger_key("prod"), b"x"), id="sign-with-prod-key"),
    pytest.param(lambda c: c.transit.sign(TRANSIT_MOUNT, ledger_key("_authority"), b"x"),
                 id="sign-with-configurator-key"),
    pytest.param(lambda c: c.transit.hmac(TRANSIT_MOUNT, marker_key("prod"), b"x"), id="hmac-with-prod-marker-key"),
    pytest.param(lambda c: c.logical.read(f"{TRANSIT_MOUNT}/export/hmac-key/{marker_key('dev')}"),
                 id="export-own-marker-key"),
    pytest.param(lambda c: c.transit.encrypt(TRANSIT_MOUNT, marker_key("dev"), b"x"), id="encrypt-with-marker-key"),
    pytest.param(lambda c: c.logical.read(f"{TRANSIT_MOUNT}/export/signing-key/{ledger_key('dev')}"),
                 id="export-own-key"),
    pytest.param(lambda c: c.logical.write(f"{TRANSIT_MOUNT}/keys/{ledger_key('dev')}/config",
                                           {"deletion_allowed": True, "exportable": True}), id="config-own-key"),
    pytest.param(lambda c: c.logical.write(f"{TRANSIT_MOUNT}/keys/{ledger_key('dev')}/rotate", {}),
                 id="rotate-own-key"),
    pytest.param(lambda c: c.logical.delete(f"{TRANSIT_MOUNT}/keys/{ledger_key('dev')}"), id="delete-own-key"),
    pytest.param(lambda c: c.logical.write(f"{TRANSIT_MOUNT}/keys/chamberlain-ledger-new", {"type": "ed25519"}),
                 id="create-key"),
])
def test_orchestrator_cannot_touch_other_partitions_or_keys(env: Env, action: Callable[[VaultClient], object]) -> None:
    client = env.login(*ORCHESTRATOR)
    _denied(lambda: action(client))


def test_forged_entries_fail_verify_and_a_garbage_slot_never_blocks_appends(env: Env) -> None:
    client = env.login(*ORCHESTRATOR)
    keys = _pinned(client)
    ledger = Ledger(client.kv, "secret", SystemClock(), partition=Partition("dev", "dev1"),
                    signer=TransitSigner(client.transit))
    real = ledger.append("rotation", actor="lab-test", run="before-forgery")
    # A forged entry, well chained to the real tail, then garbage at the next slot: both through the KV API.
    forged = _forge(client, real.seq + 1, real.hash, {"secret": "payments-db", "reason": "forged"})
    client.kv.write("secret", f"_chamberlain/ledger/dev/dev1/{forged.seq:012d}", {"entry": forged.model_dump_json()},
                    cas=0)
    client.kv.write("secret", f"_chamberlain/ledger/dev/dev1/{forged.seq + 1:012d}", {"entry": "garbage {"}, cas=0)
    assert LedgerReader(client.kv, "secret").verify().ok is False  # the garbage slot, even without keys
    after = Ledger(client.kv, "secret", SystemClock(), partition=Partition("dev", "dev1"),
                   signer=TransitSigner(client.transit)).append("rotation", actor="lab-test", run="after-garbage")
    assert after.seq == forged.seq + 2 and after.prev == forged.hash  # walked past the slot, chained on
    report = LedgerReader(client.kv, "secret").verify(keys)
    assert [(p, s) for p, s, _ in report.damaged] == [("dev/dev1", forged.seq + 1)]
    assert any(p.startswith(f"partition dev/dev1: entry {forged.seq} has a bad signature") for p in report.problems)
    assert not any(f"entry {after.seq} " in p for p in report.problems), report.problems


# ------------------------------------------------------------------------------------------ keyed markers


def test_markers_are_keyed_by_the_authority_and_a_weak_value_is_not_guessable(env: Env) -> None:
    """The handover wrote v2 markers; a weak value's marker (computed by the real transit HMAC) matches none of
    the offline guesses an attacker can make with the public path, unlike the previous release's v1 marker."""
    client = env.login(*ORCHESTRATOR)
    meta = client.kv.read_metadata("secret", "dev/team-platform/registry-pull")
    assert meta is not None and meta.custom["value-marker"].startswith("v2:")
    path = VaultPath("secret", "dev/team-payments/payments-db")
    weak = {"password": "hunter2"}
    marker = TransitMarkers(client.transit).of(path, weak)
    assert marker == TransitMarkers(client.transit).of(path, dict(weak))  # deterministic: compares versions
    guesses = ["123456", "password", "hunter2", "letmein", "changeme", "qwerty"]
    offline = {version_marker(path.full, {"password": g}) for g in guesses}
    assert version_marker(path.full, weak) in offline  # v1: the weak value falls to a dictionary
    assert marker not in offline and not any(marker[3:] in m for m in offline)


# ------------------------------------------------------------------------------------------ configurator


def test_configurator_logs_in_with_its_own_service_account_and_configures(env: Env) -> None:
    client = env.login(*CONFIGURATOR)
    assert client.logical.read("sys/policies/acl/chamberlain.dev1.orchestrator") is not None
    assert client.logical.read("auth/kubernetes-dev1/config") is not None
    # ...but it is no reader: the configuration identity never reads a runtime value.
    _denied(lambda: client.logical.read(PAYMENTS_DB))
