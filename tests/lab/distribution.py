"""Helpers for §5a internal distribution on the shared ``demo_world`` (tests/lab/demo_lab.py), reusable by every
test that drives a producer: act as the operator that writes a producer Secret, make ESO push it now, wait until a
consumer Secret carries a value, log in as a rendered ESO identity.

Values never leave these helpers except as :func:`fingerprint` (a truncated sha256, safe to compare and print); a
test keeps its canary values to itself and checks that no output contains them.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chamberlain.clock import SystemClock
from chamberlain.intent.paths import VaultPath, placements
from chamberlain.render import naming
from chamberlain.service import load_valid
from tests.lab.demo_lab import GROUP, World, wait_for

ENV, CLUSTER = "dev", "dev1"  # the demo world's scope


def fingerprint(value: str | bytes) -> str:
    """What a test may compare and print instead of a value."""
    return hashlib.sha256(value.encode() if isinstance(value, str) else value).hexdigest()[:16]


def fingerprints(data: Mapping[str, str]) -> dict[str, str]:
    return {k: fingerprint(v) for k, v in data.items()}


@dataclass(frozen=True)
class Publication:
    """One published intent of the demo world, as render names it for dev/dev1."""

    intent: str
    namespace: str  # the producer namespace
    secret: str  # the producer Secret (the operator writes it)
    vault: VaultPath  # <internal mount>/<env>/<cluster>/<namespace>/<name>
    consumers: tuple[tuple[str, str], ...]  # (namespace, Secret)

    @property
    def push_secret(self) -> str:
        return naming.publisher_name(ENV, self.intent)

    @property
    def publisher_role(self) -> tuple[str, str, str]:
        """(namespace, ServiceAccount, Vault role) of its PushSecret's SecretStore."""
        return (self.namespace, self.push_secret,
                naming.publisher_policy(ENV, CLUSTER, self.namespace, self.intent))


def publications(w: World) -> dict[str, Publication]:
    """Every publication of the demo world's repository, placed in dev/dev1."""
    repo = load_valid(w.repo)
    assert repo.platform is not None
    out = {}
    for item in repo.intents:
        intent, pub = item.obj, item.obj.spec.source.publication
        if pub is None:
            continue
        for p in placements(repo.platform, intent):
            if (p.environment, p.cluster) == (ENV, CLUSTER):
                out[intent.metadata.name] = Publication(
                    intent.metadata.name, pub.namespace, pub.secret_name, p.vault,
                    tuple((c.namespace, c.secret_name) for c in intent.spec.consumers
                          if c.template is None))  # a templated consumer combines parts: its own test
    return out


def reader_role(namespace: str) -> tuple[str, str, str]:
    """(namespace, ServiceAccount, Vault role) of ESO's reader in a consumer namespace."""
    return namespace, naming.reader_service_account(ENV), naming.reader_policy(ENV, CLUSTER, namespace)


def login(w: World, namespace: str, account: str, role: str) -> Any:
    """A VaultClient logged in the way ESO does: a TokenRequest token (audience ``vault``) at the cluster's mount."""
    from chamberlain.authority.vault import login_kubernetes

    jwt = w.kube.service_account_token(namespace, account, ["vault"])
    return login_kubernetes(w.lab.authority.address, w.lab.pki.ca.cert, f"kubernetes-{CLUSTER}", role, jwt,
                            clock=SystemClock())


# ------------------------------------------------------------------------------------------------ the operator


def secret_exists(w: World, namespace: str, name: str) -> bool:
    return w.kube.get_secret_annotations(namespace, name) is not None


def put_producer_secret(w: World, namespace: str, name: str, data: Mapping[str, str]) -> None:
    """Create or replace the producer Secret with exactly ``data``, as the operator that owns it would."""
    import kubernetes

    core = kubernetes.client.CoreV1Api(w.api)
    body = {"metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "lab-operator"}},
            "type": "Opaque", "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
    try:
        core.create_namespaced_secret(namespace, body)
    except kubernetes.client.ApiException as exc:
        if exc.status != 409:
            raise
        core.replace_namespaced_secret(name, namespace, body)


def consumer_fingerprints(w: World, namespace: str, name: str) -> dict[str, str] | None:
    import kubernetes

    try:
        secret = kubernetes.client.CoreV1Api(w.api).read_namespaced_secret(name, namespace)
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return {k: fingerprint(base64.b64decode(v)) for k, v in (secret.data or {}).items()}


# ------------------------------------------------------------------------------------------------ ESO


def _push_status(w: World, namespace: str, name: str) -> dict[str, Any]:
    import kubernetes

    obj = kubernetes.client.CustomObjectsApi(w.api).get_namespaced_custom_object(
        GROUP, "v1alpha1", namespace, "pushsecrets", name)
    return dict(obj.get("status") or {})


def push_condition(w: World, namespace: str, name: str) -> tuple[str, str]:
    """(reason, message) of the PushSecret's Ready condition; ESO's message names paths, never values."""
    cond = next((c for c in _push_status(w, namespace, name).get("conditions") or [] if c.get("type") == "Ready"),
                {})
    return str(cond.get("reason", "")), str(cond.get("message", ""))


def push_now(w: World, pub: Publication, *, timeout: float = 30) -> float:
    """Make ESO reconcile the PushSecret now (ESO does not watch the producer Secret; its refresh is 1m): an
    annotation change is a new resource version for ESO. Waits until that version is synced; returns seconds."""
    import kubernetes

    custom = kubernetes.client.CustomObjectsApi(w.api)
    before = _push_status(w, pub.namespace, pub.push_secret).get("syncedResourceVersion")
    start = time.monotonic()
    custom.patch_namespaced_custom_object(GROUP, "v1alpha1", pub.namespace, "pushsecrets", pub.push_secret,
                                          {"metadata": {"annotations": {"force-sync": f"{time.time():.6f}"}}})

    def synced() -> bool:
        status = _push_status(w, pub.namespace, pub.push_secret)
        return status.get("syncedResourceVersion") not in (None, before) and push_condition(
            w, pub.namespace, pub.push_secret)[0] == "Synced"

    wait_for(synced, timeout, f"PushSecret {pub.namespace}/{pub.push_secret} synced")
    return time.monotonic() - start


def push_refused(w: World, pub: Publication, *, timeout: float = 30) -> str:
    """Trigger the PushSecret and wait until ESO reports a failed push; returns ESO's message."""
    import kubernetes

    kubernetes.client.CustomObjectsApi(w.api).patch_namespaced_custom_object(
        GROUP, "v1alpha1", pub.namespace, "pushsecrets", pub.push_secret,
        {"metadata": {"annotations": {"force-sync": f"{time.time():.6f}"}}})

    def errored() -> str | None:
        reason, message = push_condition(w, pub.namespace, pub.push_secret)
        return message if reason == "Errored" else None

    return str(wait_for(errored, timeout, f"PushSecret {pub.namespace}/{pub.push_secret} refused"))


def refresh_consumer(w: World, namespace: str, name: str, *, timeout: float = 30) -> None:
    """Make ESO refresh the consumer's ExternalSecret from the authority now, and wait until it did (its synced
    resource version follows the annotation change), whatever the value."""
    import kubernetes

    custom = kubernetes.client.CustomObjectsApi(w.api)

    def synced_version() -> str | None:
        obj = custom.get_namespaced_custom_object(GROUP, "v1", namespace, "externalsecrets", name)
        return (obj.get("status") or {}).get("syncedResourceVersion")

    before = synced_version()
    w.kube.annotate_external_secret(namespace, name, {"force-sync": f"{time.time():.6f}"})
    wait_for(lambda: synced_version() not in (None, before), timeout, f"ExternalSecret {namespace}/{name} refreshed")


def wait_consumer(w: World, namespace: str, name: str, expected: Mapping[str, str], *,
                  timeout: float = 30) -> float:
    """Force-sync the consumer's ExternalSecret until its Secret's keys carry ``expected`` (key -> fingerprint);
    returns seconds."""
    start = time.monotonic()

    def carries() -> bool:
        got = consumer_fingerprints(w, namespace, name) or {}
        if all(got.get(k) == v for k, v in expected.items()):
            return True
        w.kube.annotate_external_secret(namespace, name, {"force-sync": f"{time.time():.6f}"})
        return False

    wait_for(carries, timeout, f"consumer {namespace}/{name} carries the expected fingerprints")
    return time.monotonic() - start


__all__ = ["CLUSTER", "ENV", "Publication", "consumer_fingerprints", "fingerprint", "fingerprints", "login",
           "publications", "push_condition", "push_now", "push_refused", "put_producer_secret", "reader_role",
           "refresh_consumer",
           "secret_exists", "wait_consumer"]
