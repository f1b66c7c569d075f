"""A templated consumer Secret on the real ESO (issue 14, item 3), on the shared ``demo_world``.

examples/acme declares ``reporting/orders-dsn``: a DSN combining ``orders-db-app`` (derived, platform-data) and
``orders-db-endpoint`` (config, platform-config). The demo rendered it and Flux applied it; the lab runs no
producer (operator), so the test stands in for one: it creates ``databases/orders-db-app`` if absent (never
changing it: another test owns its values) and writes ``databases/orders-db-endpoint``. ESO pushes both with the
rendered write-only publisher roles, and materializes the templated Secret through the reporting namespace's two
rendered stores (one per mount, ``sourceRef.storeRef``) under the rendered read-only reader role.

Then the endpoint changes: chamberlain's own propagation (:func:`rotation.manual.placed_consumers` -> refresh, wait,
restart) reaches the templated Secret of the *other* intent, and the declared restart happens.
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import replace
from typing import Any

import pytest

from chamberlain import wellknown as wk
from chamberlain.clock import SystemClock
from tests.lab.demo_lab import GROUP, World, wait_for

pytestmark = [pytest.mark.lab]
kubernetes = pytest.importorskip("kubernetes")

PRODUCERS = "databases"
CONSUMER_NS, CONSUMER = "reporting", "orders-dsn"
WORKLOAD = "report-builder"
LITERAL = "orders-dsn-literal"  # a second, test-only templated ExternalSecret (removed at the end)


def _point_at_lab(w: World, custom: Any, ns: str, store: str) -> None:
    """The rendered stores name the in-cluster Vault address; the lab's Vault listens on loopback with its CA."""
    custom.patch_namespaced_custom_object(GROUP, "v1", ns, "secretstores", store, {"spec": {"provider": {"vault": {
        "server": w.lab.authority.address, "caBundle": base64.b64encode(w.lab.pki.ca_pem.encode()).decode()}}}})


def _put_secret(core: Any, name: str, data: dict[str, str], *, replace: bool) -> None:
    body = {"metadata": {"name": name, "namespace": PRODUCERS}, "stringData": data}
    try:
        core.create_namespaced_secret(PRODUCERS, body)
    except kubernetes.client.ApiException as exc:
        if exc.status != 409:
            raise
        if replace:
            core.patch_namespaced_secret(name, PRODUCERS, {"stringData": data})


def _secret_data(core: Any, ns: str, name: str) -> dict[str, str] | None:
    try:
        s = core.read_namespaced_secret(name, ns)
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return {k: base64.b64decode(v).decode() for k, v in (s.data or {}).items()}


def _login(w: World, ns: str, account: str, role: str) -> Any:
    from chamberlain.authority.vault import login_kubernetes

    return login_kubernetes(w.lab.authority.address, w.lab.pki.ca.cert, "kubernetes-dev1", role,
                            lambda: w.kube.service_account_token(ns, account, ["vault"]), clock=SystemClock())


def _push(w: World, custom: Any, name: str) -> None:
    # ESO does not watch the producer Secret: a changed annotation makes it reconcile the PushSecret now
    custom.patch_namespaced_custom_object(GROUP, "v1alpha1", PRODUCERS, "pushsecrets",
                                          f"chamberlain-dev-publish-{name}",
                                          {"metadata": {"annotations": {"force-sync": str(time.monotonic())}}})


def test_templated_secret_combines_two_intents_and_follows_a_change_of_either(demo_world: World) -> None:
    from chamberlain.propagation import ConsumerRef, wait_in_sync
    from chamberlain.render.eso import external_secret
    from chamberlain.render.topology import build_topology
    from chamberlain.rotation import manual as rm
    from chamberlain.rotation import workflow as wf
    from chamberlain.service import load_valid

    w = demo_world
    custom = kubernetes.client.CustomObjectsApi(w.api)
    core = kubernetes.client.CoreV1Api(w.api)
    apps = kubernetes.client.AppsV1Api(w.api)
    started = time.monotonic()

    for name in ("orders-db-app", "orders-db-endpoint"):
        _point_at_lab(w, custom, PRODUCERS, f"chamberlain-dev-publish-{name}")
    for store in ("chamberlain-dev-platform-data", "chamberlain-dev-platform-config"):
        _point_at_lab(w, custom, CONSUMER_NS, store)
    try:
        apps.create_namespaced_deployment(CONSUMER_NS, {
            "metadata": {"name": WORKLOAD},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": WORKLOAD}},
                     "template": {"metadata": {"labels": {"app": WORKLOAD}},
                                  "spec": {"containers": [{"name": "b", "image": "example.invalid/b:1"}]}}}})
    except kubernetes.client.ApiException as exc:
        if exc.status != 409:
            raise
    _put_secret(core, "orders-db-app", {"username": "orders_app", "password": secrets.token_urlsafe(24)},
                replace=False)
    first = {"host": "orders-rw.databases.svc", "port": "5432", "database": "orders"}
    _put_secret(core, "orders-db-endpoint", first, replace=True)
    for name in ("orders-db-app", "orders-db-endpoint"):
        _push(w, custom, name)
    app = _secret_data(core, PRODUCERS, "orders-db-app")
    assert app is not None

    def dsn(endpoint: dict[str, str]) -> str:
        assert app is not None
        return (f"postgresql://{app['username']}:{app['password']}@{endpoint['host']}:{endpoint['port']}/"
                f"{endpoint['database']}")

    def materialized(endpoint: dict[str, str]) -> bool:
        w.kube.annotate_external_secret(CONSUMER_NS, CONSUMER, {"force-sync": str(time.monotonic())})
        data = _secret_data(core, CONSUMER_NS, CONSUMER)
        return data is not None and data.get("DSN") == dsn(endpoint)

    wait_for(lambda: materialized(first), 60, "reporting/orders-dsn materialized from both intents")
    secret = core.read_namespaced_secret(CONSUMER, CONSUMER_NS)
    assert set(secret.data) == {"DSN"}  # no fetched part and no metadata leaks into the Secret
    assert secret.metadata.labels[wk.LABEL_INTENT] == "orders-db-app"
    # one marker annotation per part, each what that part's custom_metadata says (read as the namespace's reader)
    reader = _login(w, CONSUMER_NS, "chamberlain-dev-reader", "chamberlain.dev.dev1.reporting.reader")
    for part, mount in (("orders-db-app", "platform-data"), ("orders-db-endpoint", "platform-config")):
        meta = reader.kv.read_metadata(mount, f"dev/dev1/databases/{part}")
        assert meta is not None
        assert secret.metadata.annotations[wk.part_marker_annotation(part)] == meta.custom.get(wk.VALUE_MARKER, "")
    app_marker = secret.metadata.annotations[wk.part_marker_annotation("orders-db-app")]

    # The endpoint moves: its own propagation reaches the templated Secret of orders-db-app's consumer.
    repo = load_valid(w.repo)
    assert repo.platform is not None
    intents = {i.obj.metadata.name: i.obj for i in repo.intents}
    placed = rm.place(repo.platform, intents["orders-db-endpoint"], "dev", "dev1")
    consumers = rm.placed_consumers(repo.platform, intents, placed)
    templated = [c for c in consumers if c.secret.name == CONSUMER]
    assert [c.secret for c in templated] == [
        ConsumerRef(CONSUMER_NS, CONSUMER, wk.part_marker_annotation("orders-db-endpoint"))]
    second = {**first, "host": "orders-rw-2.databases.svc"}
    _put_secret(core, "orders-db-endpoint", second, replace=True)
    _push(w, custom, "orders-db-endpoint")
    propagation = wf.KubeConsumers(w.kube, "orders-db-endpoint", templated, SystemClock(), timeout=30, poll=0.5)
    token = f"templated-{time.time_ns()}"

    def updated() -> bool:
        propagation.refresh(f"{token}-{time.monotonic()}")  # until the pushed value is in Vault
        data = _secret_data(core, CONSUMER_NS, CONSUMER)
        return data is not None and data.get("DSN") == dsn(second)

    wait_for(updated, 60, "the templated Secret follows the endpoint change")
    # The new version's marker, recorded as chamberlain records one for an observed producer rotation (here with
    # the publisher's own rendered role, which may update the path's metadata): the part's wait sees exactly it,
    # and the other part's annotation keeps its own.
    marker = f"test-{secrets.token_hex(8)}"
    publisher = _login(w, PRODUCERS, "chamberlain-dev-publish-orders-db-endpoint",
                       "chamberlain.dev.dev1.databases.orders-db-endpoint.publisher")
    publisher.kv.update_custom_metadata("platform-config", "dev/dev1/databases/orders-db-endpoint",
                                        {wk.VALUE_MARKER: marker})
    propagation.refresh(f"{token}-marker")
    propagation.wait(marker)  # raises unless reporting/orders-dsn carries it in its orders-db-endpoint annotation
    annotations = core.read_namespaced_secret(CONSUMER, CONSUMER_NS).metadata.annotations
    assert annotations[wk.part_marker_annotation("orders-db-app")] == app_marker
    assert not wait_in_sync(w.kube, [ConsumerRef(CONSUMER_NS, CONSUMER)], marker, SystemClock(), 0)[0].in_sync
    rolled = propagation.restart(token)
    assert f"Deployment/{CONSUMER_NS}/{WORKLOAD}" in " ".join(rolled.rolled) or rolled.left_to_reloader
    template = apps.read_namespaced_deployment(WORKLOAD, CONSUMER_NS).spec.template.metadata.annotations or {}
    assert template.get(wk.ANNOTATION_RESTART_BATCH)

    # Literal text is a Go string constant: template syntax, quotes and backslashes in it reach the Secret as text
    # through the real ESO engine, and cannot reach the fetched metadata.
    read = next(r for u in build_topology(repo.platform, [p.obj for p in repo.policies], list(intents.values())).units
                if (u.environment, u.cluster) == ("dev", "dev1")
                for r in u.reads[CONSUMER_NS] if r.consumer.secret_name == CONSUMER)
    hostile = '{{ .Secrets }} }} {{ index . "_chamberlain-custom-metadata" }} "q" \\ :{orders-db-endpoint.port}'
    consumer = read.consumer.model_copy(update={"secret_name": LITERAL, "template": {"TEXT": hostile},
                                                "restart": []})
    w.kube.apply_manifest(external_secret(replace(read, consumer=consumer), "dev"), "chamberlain-test")
    expected = '{ .Secrets } } { index . "_chamberlain-custom-metadata" } "q" \\ :5432'
    try:
        def literal() -> bool:
            w.kube.annotate_external_secret(CONSUMER_NS, LITERAL, {"force-sync": str(time.monotonic())})
            data = _secret_data(core, CONSUMER_NS, LITERAL)
            return data is not None and data.get("TEXT") == expected

        wait_for(literal, 30, "the literal text materialized verbatim")
    finally:
        custom.delete_namespaced_custom_object(GROUP, "v1", CONSUMER_NS, "externalsecrets", LITERAL)
    print(f"\n[templated] materialized, changed, propagated and restarted in {time.monotonic() - started:.1f}s")
