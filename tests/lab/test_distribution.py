"""§5a internal distribution through the real ESO, OpenBao/Vault and kube-apiserver (the session's ``demo_world``:
examples/acme through handover, ESO running with the rendered objects applied by Flux).

An operator's Secret ``databases/orders-db-app`` (canary values, plus a key nobody declared) is pushed by its
rendered PushSecret, under its rendered write-only publisher role, to ``platform-data/dev/dev1/databases/
orders-db-app`` with exactly the declared keys; the consumers in ``reporting`` and ``billing`` materialize it under
their read-only roles. The least-privilege rows here are the ones distribution adds to
tests/lab/test_least_privilege.py (which covers the publisher's writes elsewhere on its own lab): what each
consumer namespace may read among the real published values, and what the publisher may read or delete.
ESO's ``managed-by`` marker is checked as ESO really treats it. Values are compared as fingerprints only and must
not appear in chamberlain's output.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from chamberlain import wellknown as wk
from tests.conftest import run_cli
from tests.lab.demo_lab import World

pytestmark = pytest.mark.lab

pytest.importorskip("hvac")
pytest.importorskip("kubernetes")

from chamberlain.authority.errors import Forbidden, InvalidRequest  # noqa: E402
from tests.lab.distribution import (  # noqa: E402
    Publication,
    consumer_fingerprints,
    fingerprints,
    login,
    publications,
    push_now,
    push_refused,
    put_producer_secret,
    reader_role,
    refresh_consumer,
    secret_exists,
    wait_consumer,
)

INTENT = "orders-db-app"
CONSUMER_KEYS = {"PGUSER": "username", "PGPASSWORD": "password"}  # examples/acme: both consumers map the same


@dataclass
class Orders:
    w: World
    pub: Publication
    values: dict[str, str]  # what the producer Secret holds now (the test's own; never printed)
    canaries: list[str]  # every value that must never show up in output

    def expected(self) -> dict[str, str]:
        fp = fingerprints(self.values)
        return {k8s: fp[key] for k8s, key in CONSUMER_KEYS.items()}

    def client(self, identity: tuple[str, str, str]) -> Any:
        return login(self.w, *identity)


def _canary(name: str) -> str:
    return f"canary-{name}-{secrets.token_urlsafe(12)}"


def test_chamberlain_creates_no_internal_path_ahead_of_eso(demo_world: World) -> None:
    """ESO refuses to push over a secret whose metadata lacks its marker, so nothing of chamberlain's (render,
    authority configure, provision, handover) may have written a published path whose producer does not exist."""
    w = demo_world
    unproduced = [p for p in publications(w).values() if not secret_exists(w, p.namespace, p.secret)]
    if not unproduced:
        pytest.skip("every producer Secret exists already (another test made them)")
    for p in unproduced:
        assert w.kv.read_metadata(p.vault.mount, p.vault.path) is None, p.vault.full


@pytest.fixture(scope="module")
def orders(demo_world: World) -> Iterator[Orders]:
    w = demo_world
    pub = publications(w)[INTENT]
    values = {"username": "orders_app", "password": _canary("password")}
    undeclared = _canary("undeclared")  # a key the operator adds that no intent declares: it stays in databases
    put_producer_secret(w, pub.namespace, pub.secret, {**values, "superuser-password": undeclared})
    pushed = push_now(w, pub)
    orders = Orders(w, pub, values, [values["password"], undeclared])
    consumed = {ns: wait_consumer(w, ns, secret, orders.expected()) for ns, secret in pub.consumers}
    print(f"\n[distribution] {INTENT}: pushed in {pushed:.2f}s, consumers {consumed} (s)")
    yield orders


def test_the_producer_secret_reaches_two_consumer_namespaces_with_only_declared_keys(orders: Orders) -> None:
    pub = orders.pub
    assert pub.vault.full == "platform-data/dev/dev1/databases/orders-db-app"
    assert {ns for ns, _ in pub.consumers} == {"reporting", "billing"}
    for ns, secret in pub.consumers:
        assert consumer_fingerprints(orders.w, ns, secret) == orders.expected(), ns
    # What Vault holds, read under each consumer's real reader role: the declared keys, the operator's values.
    for ns, _ in pub.consumers:
        body = orders.client(reader_role(ns)).kv.read(pub.vault.mount, pub.vault.path)
        assert body is not None and fingerprints(body.data) == fingerprints(orders.values), ns
    meta = orders.w.kv.read_metadata(pub.vault.mount, pub.vault.path)  # the orchestrator reads metadata only
    assert meta is not None and meta.custom.get(wk.ESO_PUSH_MANAGED_BY) == wk.ESO_PUSH_MANAGER


# ------------------------------------------------------------------------------------------------ least privilege

OTHER_CONFIG = "platform-config/data/dev/dev1/search/search-endpoint"  # consumed by web and catalog only
OTHER_DATA = "platform-data/data/dev/dev1/kafka/payments"  # consumed by payments only
ENDPOINT = "platform-config/data/dev/dev1/databases/orders-db-endpoint"  # reporting and billing consume it
OWN = "platform-data/data/dev/dev1/databases/orders-db-app"
OWN_META = OWN.replace("/data/", "/metadata/", 1)

Action = Callable[[Any], object]
# (who, what, allowed): who is a consumer namespace's reader or "publisher" (orders-db-app's PushSecret identity).
MATRIX: list[tuple[str, str, Action, bool]] = [
    ("reporting", "read-declared-data", lambda c: c.logical.read(OWN), True),
    ("reporting", "read-declared-config", lambda c: c.logical.read(ENDPOINT), True),
    ("reporting", "read-undeclared-config", lambda c: c.logical.read(OTHER_CONFIG), False),
    ("reporting", "read-undeclared-data", lambda c: c.logical.read(OTHER_DATA), False),
    ("reporting", "read-other-cluster", lambda c: c.logical.read(OWN.replace("dev/dev1", "prod/prod-eu1")), False),
    ("reporting", "write-declared", lambda c: c.logical.write(OWN, {"data": {"k": "v"}}), False),
    ("reporting", "list-producer-namespace", lambda c: c.logical.list("platform-data/metadata/dev/dev1/databases"),
     False),
    ("billing", "read-declared-data", lambda c: c.logical.read(OWN), True),
    ("billing", "read-undeclared-config", lambda c: c.logical.read(OTHER_CONFIG), False),
    ("web", "read-undeclared-data", lambda c: c.logical.read(OWN), False),
    ("payments", "read-undeclared-data", lambda c: c.logical.read(OWN), False),
    ("publisher", "read-own", lambda c: c.logical.read(OWN), True),  # ESO reads before it writes
    ("publisher", "read-same-namespace-other-intent", lambda c: c.logical.read(ENDPOINT), False),
    ("publisher", "read-other-producer", lambda c: c.logical.read(OTHER_CONFIG), False),
    ("publisher", "write-other-producer", lambda c: c.logical.write(OTHER_DATA, {"data": {"k": "v"}}), False),
    ("publisher", "soft-delete-own", lambda c: c.logical.delete(OWN), False),
    ("publisher", "destroy-own", lambda c: c.logical.write(
        OWN.replace("/data/", "/destroy/", 1), {"versions": [1]}), False),
    ("publisher", "delete-own-metadata", lambda c: c.logical.delete(OWN_META), False),
    ("publisher", "list-producer-namespace", lambda c: c.logical.list("platform-data/metadata/dev/dev1/databases"),
     False),
]


@pytest.fixture(scope="module")
def clients(orders: Orders) -> dict[str, Any]:
    """One login per identity (a login is a TokenRequest plus a Vault round trip)."""
    who = {row[0] for row in MATRIX}
    return {name: orders.client(orders.pub.publisher_role if name == "publisher" else reader_role(name))
            for name in who}


@pytest.mark.parametrize(("who", "action", "allowed"), [
    pytest.param(who, action, allowed, id=f"{who}-{what}") for who, what, action, allowed in MATRIX])
def test_least_privilege_of_the_distribution(clients: dict[str, Any], who: str, action: Action,
                                             allowed: bool) -> None:
    if allowed:
        action(clients[who])  # may answer None (a declared path its producer has not written): never 403
    else:
        with pytest.raises(Forbidden) as info:
            action(clients[who])
        assert "403" in str(info.value)


# ------------------------------------------------------------------------------------------------ ESO's marker


def test_esos_marker_survives_chamberlains_metadata_write_and_without_it_eso_refuses(orders: Orders) -> None:
    """As ESO really behaves (external-secrets v0.16 Vault provider): chamberlain's metadata write merges and keeps
    ``managed-by``, so ESO keeps pushing; ESO's next push replaces custom_metadata with its marker alone; a path
    whose metadata lacks the marker is refused, and the consumers keep their last value until it is back."""
    w, pub = orders.w, orders.pub
    publisher = orders.client(pub.publisher_role)  # the only identity with a metadata grant on this path
    mount, path = pub.vault.mount, pub.vault.path
    publisher.kv.update_custom_metadata(mount, path, {"chamberlain-lab-note": "merged"})  # chamberlain's VaultKV
    assert publisher.kv.read_metadata(mount, path).custom == {
        wk.ESO_PUSH_MANAGED_BY: wk.ESO_PUSH_MANAGER, "chamberlain-lab-note": "merged"}
    with pytest.raises(InvalidRequest):  # the marker is ESO's: chamberlain never writes it
        publisher.kv.update_custom_metadata(mount, path, {wk.ESO_PUSH_MANAGED_BY: "chamberlain"})

    _rotate(orders, "password-2")
    after = publisher.kv.read_metadata(mount, path)
    assert after.custom == {wk.ESO_PUSH_MANAGED_BY: wk.ESO_PUSH_MANAGER}  # ESO replaced the map on its push

    last_good = orders.expected()
    version = after.current_version
    publisher.logical.write(f"{mount}/metadata/{path}", {"custom_metadata": {}})  # a path that lacks the marker
    try:
        orders.values = {**orders.values, "password": _canary("password-3")}
        orders.canaries.append(orders.values["password"])
        put_producer_secret(w, pub.namespace, pub.secret, orders.values)
        message = push_refused(w, pub)
        assert "not managed by external-secrets" in message
        assert publisher.kv.read_metadata(mount, path).current_version == version  # nothing written
        for ns, secret in pub.consumers:
            refresh_consumer(w, ns, secret)
            assert consumer_fingerprints(w, ns, secret) == last_good, ns
    finally:
        # How a path gets back to ESO: its marker, written by whoever may (here the publisher identity itself).
        publisher.logical.write(f"{mount}/metadata/{path}",
                                {"custom_metadata": {wk.ESO_PUSH_MANAGED_BY: wk.ESO_PUSH_MANAGER}})
    push_now(w, pub)
    for ns, secret in pub.consumers:
        wait_consumer(w, ns, secret, orders.expected())


def _rotate(orders: Orders, label: str) -> None:
    """The operator replaces its password; ESO pushes it; every consumer carries it."""
    orders.values = {**orders.values, "password": _canary(label)}
    orders.canaries.append(orders.values["password"])
    put_producer_secret(orders.w, orders.pub.namespace, orders.pub.secret, orders.values)
    push_now(orders.w, orders.pub)
    for ns, secret in orders.pub.consumers:
        wait_consumer(orders.w, ns, secret, orders.expected())


# ------------------------------------------------------------------------------------------------ no value in output


def test_no_value_in_chamberlains_output_for_the_published_secret(orders: Orders) -> None:
    w = orders.w
    status = run_cli("status", str(w.repo), *w.vault_args(), "-o", "json")
    assert status.code == 0, status.err[-2000:]
    [row] = [r for r in json.loads(status.out)["secrets"] if r["secret"] == INTENT]
    assert (row["path"], row["exists"], row["authority"]) == (orders.pub.vault.full, True, "producer")
    outputs = [status.out + status.err]  # the text form prints the same report (one run: ~8 s in CI)
    audit = run_cli("audit", "show", INTENT, str(w.repo), *w.vault_args()[2:], "-o", "json")  # no -e dev
    assert audit.code == 0, audit.err[-2000:]
    custom = json.loads(audit.out)["metadata"][orders.pub.vault.full]["custom"]
    assert custom == {wk.ESO_PUSH_MANAGED_BY: wk.ESO_PUSH_MANAGER}
    outputs.append(audit.out + audit.err)
    inventory = run_cli("inventory", str(w.repo), "-o", "json")
    assert inventory.code == 0, inventory.err[-2000:]
    outputs.append(inventory.out + inventory.err)
    for text in outputs:
        for canary in orders.canaries:
            assert canary not in text
