"""An observed external rotation on the real servers: the producer (an operator; here the test) changes its Secret,
the real ESO's PushSecret writes a new version to ``platform-config`` under its rendered write-only role, and the
controller (``chamberlain controller run --from-cluster``, a real process) follows it to every consumer.

On the session's ``demo_world`` (the demo through handover): the config intent ``search-endpoint`` (producer
``search/search-endpoint``; consumers in ``web`` and ``catalog``; restarts ``storefront`` and ``catalog-api``). The
lab runs no operator, so the test creates the producer Secret; the PushSecret's refreshInterval is shortened to 1s
(ESO does not watch the producer Secret: the interval bounds the push latency, 1m as rendered).

Shown: the first version is a baseline (consumers materialized with its marker, nothing restarted); a burst of two
producer changes gives one new version followed to both consumers, each declared workload restarted exactly once,
a ``RotationRun`` with trigger ``external`` and a ledger entry naming the producer, both visible in ``chamberlain
audit show``; then a producer Secret without its declared key ``url``: the SecretIntent is ``Held`` with the reason
and the key, and the consumers keep their last good value and marker; fixed, it is followed again.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chamberlain import wellknown as wk
from chamberlain.intent.paths import VaultPath

pytestmark = pytest.mark.lab

pytest.importorskip("hvac")
kubernetes = pytest.importorskip("kubernetes")

from chamberlain.audit.ledger import LedgerReader  # noqa: E402
from tests.conftest import REPO_ROOT, run_cli  # noqa: E402
from tests.lab.controller_helpers import ControllerProc, wait_for  # noqa: E402
from tests.lab.demo_lab import World  # noqa: E402

NS = "chamberlain-system"
NAME, PRODUCER_NS, PUSH = "search-endpoint", "search", "chamberlain-dev-publish-search-endpoint"
VAULT = VaultPath("platform-config", "dev/dev1/search/search-endpoint")
CONSUMERS = (("web", "search-endpoint"), ("catalog", "search-endpoint"))
WORKLOADS = (("web", "storefront"), ("catalog", "catalog-api"))
ESO = ("external-secrets.io", "v1alpha1")


def start_controller(w: World, base: Path) -> ControllerProc:
    log = base / "controller.log"
    argv = [sys.executable, "-m", "chamberlain.cli.main", "controller", "run", "--from-cluster",
            "-e", "dev", "--cluster", "dev1", "--namespace", NS, *w.vault_args()[4:],
            "--interval", "0.25", "--evaluate-every", "5", "--lease-seconds", "4", "--identity", "external",
            "--metrics-port", "0",
            # the two changes below are 0.3 s apart; ESO may push them over a second apart on a loaded machine
            "--external-quiet", "4"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "CHAMBERLAIN_", "KUBECONFIG"))}
    with log.open("wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT, env=env,
                                cwd=REPO_ROOT, start_new_session=True)
    c = ControllerProc("external", proc, log)
    c.wait_started()
    c.wait_leader()
    return c


def set_producer(core: Any, data: dict[str, str]) -> None:
    """What the operator does: replace its Secret (create it the first time)."""
    body = {"metadata": {"name": NAME, "namespace": PRODUCER_NS}, "stringData": data, "type": "Opaque"}
    try:
        current = core.read_namespaced_secret(NAME, PRODUCER_NS)
    except kubernetes.client.ApiException as exc:
        if exc.status != 404:
            raise
        core.create_namespaced_secret(PRODUCER_NS, body)
        return
    body["metadata"]["resourceVersion"] = current.metadata.resource_version
    core.replace_namespaced_secret(NAME, PRODUCER_NS, body)


def consumer_value(core: Any, ns: str, name: str) -> str:
    got = core.read_namespaced_secret(name, ns)
    return base64.b64decode((got.data or {}).get("SEARCH_URL", "")).decode()


def consumer_marker(core: Any, ns: str, name: str) -> str | None:
    got = core.read_namespaced_secret(name, ns)
    return (got.metadata.annotations or {}).get(wk.ANNOTATION_VERSION_MARKER)


@pytest.fixture
def world(demo_world: World) -> Iterator[World]:
    """The declared workloads exist (objects only: the lab has no kubelet) and the PushSecret refreshes every
    second; afterwards the interval is back (the test leaves the producer Secret good and followed)."""
    w = demo_world
    apps = kubernetes.client.AppsV1Api(w.api)
    for ns, name in WORKLOADS:
        try:
            apps.create_namespaced_deployment(ns, {
                "metadata": {"name": name},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}},
                                      "spec": {"containers": [{"name": name, "image": "example.invalid/g:1"}]}}}})
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise
    # The operator's first value before the PushSecret's spec changes: the change makes ESO reconcile at once, so
    # the first push does not wait out the error back-off ESO built up while the producer Secret was missing.
    set_producer(kubernetes.client.CoreV1Api(w.api), {"url": "https://search-1.internal.example"})
    custom = kubernetes.client.CustomObjectsApi(w.api)
    custom.patch_namespaced_custom_object(*ESO, PRODUCER_NS, "pushsecrets", PUSH, {"spec": {"refreshInterval": "1s"}})
    yield w
    custom.patch_namespaced_custom_object(*ESO, PRODUCER_NS, "pushsecrets", PUSH, {"spec": {"refreshInterval": "1m"}})


def waited(w: World, c: ControllerProc, check: Any, timeout: float, what: str) -> Any:
    """``wait_for``, failing with what the controller logged and what the servers hold (names and markers only)."""
    try:
        return wait_for(check, timeout, what)
    except pytest.fail.Exception:
        core = kubernetes.client.CoreV1Api(w.api)
        custom = kubernetes.client.CustomObjectsApi(w.api)
        push = custom.get_namespaced_custom_object(*ESO, PRODUCER_NS, "pushsecrets", PUSH).get("status")
        meta = w.kv.read_metadata(VAULT.mount, VAULT.path)
        markers = {f"{ns}/{n}": consumer_marker(core, ns, n) for ns, n in CONSUMERS}
        pytest.fail(f"{what} did not happen within {timeout:.0f}s\nPushSecret status: {push}\nmetadata: {meta}\n"
                    f"consumer markers: {markers}\ncontroller log:\n{c.text()[-5000:]}")


def external_entries(w: World) -> list[Any]:
    return [e for e in LedgerReader(w.kv, "secret").for_secret(NAME) if e.details.get("trigger") == "external"]


def test_a_producer_rotation_is_followed_to_every_consumer_once_and_a_missing_key_holds(
        world: World, tmp_path: Path) -> None:
    w = world
    core, apps = kubernetes.client.CoreV1Api(w.api), kubernetes.client.AppsV1Api(w.api)
    custom = kubernetes.client.CustomObjectsApi(w.api)
    c = start_controller(w, tmp_path)
    try:
        # The first version the controller sees (pushed before it started): a baseline (consumers follow, nothing
        # restarts).
        t0 = time.monotonic()

        def ledgered(n: int) -> list[Any] | None:
            got = [e for e in external_entries(w) if e.result == "ok"]
            return got if len(got) >= n else None

        waited(w, c, lambda: ledgered(1), 30, "the first external version followed to the consumers")
        base = w.kv.read_metadata(VAULT.mount, VAULT.path)
        assert base is not None and base.custom["managed-by"] == "external-secrets", "ESO's marker intact"
        assert all(consumer_marker(core, ns, n) == base.custom[wk.VALUE_MARKER] for ns, n in CONSUMERS)
        print(f"\n[external] baseline followed in {time.monotonic() - t0:.1f}s")
        generations = {(ns, n): apps.read_namespaced_deployment(n, ns).metadata.generation for ns, n in WORKLOADS}

        # The operator rotates: two changes in a short window -> one run, one restart per workload.
        t0 = time.monotonic()
        set_producer(core, {"url": "https://search-2.internal.example"})
        time.sleep(0.3)
        set_producer(core, {"url": "https://search-3.internal.example"})
        entries = waited(w, c, lambda: ledgered(2), 30, "the producer's rotation followed to the consumers")
        print(f"[external] producer change -> consumers updated, workloads restarted, ledgered in "
              f"{time.monotonic() - t0:.1f}s")
        meta = w.kv.read_metadata(VAULT.mount, VAULT.path)
        assert meta is not None and meta.custom["managed-by"] == "external-secrets"
        last = entries[-1]
        assert last.details["producer"] == "search/search-endpoint" and last.details["pushSecret"] == PUSH
        assert last.details["version"] == str(meta.current_version) == meta.custom[wk.VALUE_VERSION]
        for ns, n in CONSUMERS:
            assert consumer_value(core, ns, n) == "https://search-3.internal.example"
            assert consumer_marker(core, ns, n) == meta.custom[wk.VALUE_MARKER]
        for ns, n in WORKLOADS:
            d = apps.read_namespaced_deployment(n, ns)
            assert d.metadata.generation == generations[(ns, n)] + 1, f"{ns}/{n} restarted exactly once"
            assert d.spec.template.metadata.annotations[wk.ANNOTATION_RESTART_BATCH] == last.run
        run = custom.get_namespaced_custom_object("chamberlain.dev", "v1alpha1", NS, "rotationruns", last.run)
        assert run["spec"]["trigger"] == "external" and run["status"]["phase"] == "done"
        assert run["status"]["currentVersion"] == meta.current_version

        show = run_cli("audit", "show", NAME, str(w.repo), "--cluster", "dev1", "--vault-addr",
                       w.lab.authority.address, "--vault-cacert", str(w.lab.pki.ca.cert), "--kubeconfig",
                       str(w.lab.kubeconfig), "-o", "json")
        assert show.code == 0, show.err
        shown = [e for e in json.loads(show.out)["ledger"] if e["details"].get("trigger") == "external"]
        assert shown[-1]["run"] == last.run and shown[-1]["details"]["producer"] == "search/search-endpoint"

        # The operator drops the declared key: held, consumers keep their last good value.
        t0 = time.monotonic()
        set_producer(core, {"endpoint": "https://search-4.internal.example"})

        def held() -> dict[str, Any] | None:
            obj = custom.get_namespaced_custom_object("chamberlain.dev", "v1alpha1", NS, "secretintents", NAME)
            cond = {x["type"]: x for x in (obj.get("status") or {}).get("conditions") or []}.get("Held", {})
            return cond if cond.get("status") == "True" else None

        cond = waited(w, c, held, 20, "the SecretIntent held for the missing key")
        print(f"[external] held in {time.monotonic() - t0:.1f}s")
        assert cond["reason"] == "ProducerKeyMissing"
        assert "'url'" in cond["message"] and "search/search-endpoint" in cond["message"]
        time.sleep(1.0)  # a few ESO retries and controller ticks while held
        for ns, n in CONSUMERS:
            assert consumer_value(core, ns, n) == "https://search-3.internal.example"
            assert consumer_marker(core, ns, n) == meta.custom[wk.VALUE_MARKER]
        assert len(external_entries(w)) == 2, "nothing recorded: ESO pushed nothing"

        # The operator fixes its Secret: the hold clears and the pipeline runs again. Followed before the
        # controller stops, so the session's later tests find the world in sync (no restart left to anyone).
        set_producer(core, {"url": "https://search.internal.example"})
        # ESO retries a failing PushSecret with an exponential back-off; a metadata change reconciles it at once
        # (what the lab stands in for: the wait, not the mechanism)
        custom.patch_namespaced_custom_object(*ESO, PRODUCER_NS, "pushsecrets", PUSH, {
            "metadata": {"annotations": {"chamberlain.dev/lab-kick": str(time.monotonic())}}})
        waited(w, c, lambda: ledgered(3), 30, "the fixed producer Secret followed to the consumers")
        waited(w, c, lambda: not held(), 10, "the hold cleared")
        assert all(consumer_value(core, ns, n) == "https://search.internal.example" for ns, n in CONSUMERS)
        assert "https://search" not in c.text(), "no value in the controller's logs"
    finally:
        if c.alive:
            code = c.terminate()
            assert code == 0, f"the controller exited with {code} after SIGTERM:\n{c.text()[-2000:]}"
