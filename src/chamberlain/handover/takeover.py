"""Takeover: chamberlain's ExternalSecret becomes the owner of an existing consumer Secret, which never disappears,
never changes its data and is never without a controller (``chamberlain adopt takeover``).

What the real ESO does (v0.16, checked on the lab, ``tests/lab/test_migration.py``): an ExternalSecret with
``creationPolicy: Owner`` adopts an existing Secret that has no controller; it refuses one whose controller is
another ExternalSecret (``ErrSecretIsOwned``: compared by *name*, not uid); and an ExternalSecret switched to
``Orphan`` removes its own controller reference. Releasing the old one first (Orphan, then delete) therefore leaves
a short window with no owner (about a third of a second on the lab). Instead, once chamberlain's ExternalSecret
exists, the Secret's controller reference is *replaced* in one update guarded by its resourceVersion: from that
instant ESO reconciles it for chamberlain's ExternalSecret, the old one is refused by ESO, and deleting the old one
no longer garbage-collects the Secret. A plain Secret (no controller) gets the reference the same way. A Secret
controlled by anything else (a SealedSecret, a Helm release, an operator) is left alone: chamberlain never fights
another controller.

Before anything is changed, the Secret's data must equal what chamberlain's ExternalSecret will write (the
authority's value through the consumer's key mapping): compared in memory, never printed, so the takeover cannot
change a value. An ExternalSecret of the same name as the Secret that is not chamberlain's yet is replaced by
applying the rendered one over it (same object, same uid: no swap needed).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from chamberlain import wellknown as wk
from chamberlain.authority.kv import KV
from chamberlain.errors import ChamberlainError
from chamberlain.handover.adopt import adopted
from chamberlain.intent.model import Consumer, Platform, SecretIntent
from chamberlain.intent.paths import VaultPath, intent_environments, vault_path
from chamberlain.kube.api import (
    CustomResource,
    Kube,
    KubeConflict,
    KubePropagation,
    KubeRunObjects,
    KubeTakeover,
    OwnerRef,
    SecretOwners,
)

EXTERNAL_SECRETS = CustomResource("external-secrets.io", "v1", "externalsecrets")
ES_API, ES_KIND = "external-secrets.io/v1", "ExternalSecret"

Action = Literal["none", "swap", "swap-and-delete-old"]
Result = Literal["taken-over", "already-owned", "created", "planned", "not-imported", "awaiting-apply",
                 "would-change", "blocked", "timeout"]
FAILED: frozenset[str] = frozenset({"not-imported", "awaiting-apply", "would-change", "blocked", "timeout"})


class TakeoverError(ChamberlainError):
    """A takeover could not finish; names objects, never a value."""


class TakeoverKube(Kube, KubeTakeover, KubePropagation, KubeRunObjects, Protocol):
    """The Kubernetes API a takeover uses (the real client implements every part)."""


@dataclass(frozen=True)
class TakeoverUnit:
    intent: str
    environment: str
    consumer: Consumer
    vault: VaultPath

    @property
    def target(self) -> str:
        return f"{self.consumer.namespace}/{self.consumer.secret_name}"


@dataclass
class TakeoverOutcome:
    unit: TakeoverUnit
    result: Result
    message: str
    previous_owner: str | None = None
    data_unchanged: bool | None = None
    marker: str | None = None
    seconds: float | None = None  # from the first read to ESO's reconcile with the authority's marker

    @property
    def ok(self) -> bool:
        return self.result not in FAILED

    def as_dict(self) -> dict[str, object]:
        u = self.unit
        return {"intent": u.intent, "environment": u.environment, "secret": u.target, "path": u.vault.full,
                "result": self.result, "message": self.message, "previousOwner": self.previous_owner,
                "dataUnchanged": self.data_unchanged, "marker": self.marker,
                "seconds": None if self.seconds is None else round(self.seconds, 3)}


def takeover_units(platform: Platform, intents: list[SecretIntent], environment: str, cluster: str,
                   only: set[str] | None = None) -> list[TakeoverUnit]:
    """Every consumer Secret of every ``source.existingSecret`` intent placed in ``environment`` on ``cluster``."""
    out: list[TakeoverUnit] = []
    for intent in sorted(intents, key=lambda i: i.metadata.name):
        if intent.spec.source.existing_secret is None or (only is not None and intent.metadata.name not in only):
            continue
        env = next((e for e in intent_environments(platform, intent) if e.name == environment), None)
        if env is None or cluster not in env.clusters:
            continue
        path = vault_path(platform, intent, environment, cluster)
        out.extend(TakeoverUnit(intent.metadata.name, environment, c, path) for c in intent.spec.consumers)
    return out


def decide(unit: TakeoverUnit, es: Mapping[str, Any] | None, owners: SecretOwners | None) -> tuple[Action, str | None]:
    """What the takeover does (pure): nothing (ESO creates the Secret, or already reconciles it for
    chamberlain's ExternalSecret), or replace the controller (and then delete the old ExternalSecret). Returns the
    action and the previous controller (``Kind/name``); raises :class:`TakeoverError` when it must not act."""
    name = unit.consumer.secret_name
    if es is None:
        raise TakeoverError(f"awaiting-apply: chamberlain's ExternalSecret {unit.target} does not exist yet; render "
                            "and let GitOps apply it first")
    labels = (es.get("metadata") or {}).get("labels") or {}
    if labels.get(wk.LABEL_INTENT) != unit.intent:
        raise TakeoverError(f"awaiting-apply: ExternalSecret {unit.target} is not chamberlain's yet (no label "
                            f"{wk.LABEL_INTENT}={unit.intent}); apply the rendered one over it")
    if owners is None:
        return "none", None
    controller = owners.controller
    if controller is None:
        return "swap", None
    previous = f"{controller.kind}/{controller.name}"
    if controller.kind == ES_KIND and controller.api_version.startswith("external-secrets.io/"):
        return ("none", None) if controller.name == name else ("swap-and-delete-old", previous)
    raise TakeoverError(f"blocked: Secret {unit.target} is controlled by {previous}; remove that owner first "
                        "(e.g. kubectl delete ... --cascade=orphan), chamberlain never fights another controller")


def expected_data(consumer: Consumer, value: Mapping[str, str]) -> dict[str, str]:
    """What chamberlain's ExternalSecret writes into the consumer Secret for the authority's ``value``."""
    if consumer.keys:
        return {k8s: value[intent_key] for k8s, intent_key in consumer.keys.items() if intent_key in value}
    return dict(value)


def _digest(data: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    for key in sorted(data):
        h.update(key.encode() + b"\0" + data[key].encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()


def take_over(unit: TakeoverUnit, kv: KV, kube: TakeoverKube, *, dry_run: bool = False, timeout: float = 60.0,
              poll: float = 0.5) -> TakeoverOutcome:
    """Bring one consumer Secret under chamberlain's ExternalSecret (see the module docstring)."""
    c, vault = unit.consumer, unit.vault
    started = time.monotonic()
    meta = kv.read_metadata(vault.mount, vault.path)
    if meta is None or not adopted(meta.custom):
        return TakeoverOutcome(unit, "not-imported", f"{vault} is not adopted yet; run `chamberlain adopt verify` "
                               "first (chamberlain's ExternalSecret would otherwise write another value)")
    marker = meta.custom.get(wk.VALUE_MARKER)
    current = kv.read(vault.mount, vault.path)
    if current is None or current.deleted:
        return TakeoverOutcome(unit, "not-imported", f"{vault} has no current value")
    want = _digest(expected_data(c, current.data))
    del current
    for _ in range(3):  # a resourceVersion race with ESO is retried on a fresh read
        # read each attempt: a reference to the uid of an ExternalSecret GitOps has since re-created names an owner
        # that is gone, and the garbage collector would delete the Secret
        es = kube.get_external_secret(c.namespace, c.secret_name)
        owners = kube.get_secret_owners(c.namespace, c.secret_name)
        try:
            action, previous = decide(unit, es, owners)
        except TakeoverError as exc:
            verdict, _, why = str(exc).partition(": ")
            return TakeoverOutcome(unit, verdict, why)  # type: ignore[arg-type]
        secret = kube.get_secret(c.namespace, c.secret_name) if owners is not None else None
        before = _digest(secret.data) if secret is not None else None
        del secret
        if before is not None and before != want:
            return TakeoverOutcome(unit, "would-change", f"Secret {unit.target} does not hold what chamberlain's "
                                   f"ExternalSecret would write from {vault} (keys or values differ); nothing "
                                   "changed", previous)
        if dry_run:
            return TakeoverOutcome(unit, "planned", f"would {action} for {unit.target}", previous)
        if action == "none":
            break
        assert es is not None and owners is not None
        ref = OwnerRef(ES_API, ES_KIND, c.secret_name, str(es["metadata"]["uid"]), controller=True)
        try:
            kube.set_secret_controller(c.namespace, c.secret_name, ref, owners.resource_version)
        except KubeConflict:
            continue
        if action == "swap-and-delete-old" and previous is not None:
            kube.delete_custom_object(EXTERNAL_SECRETS, c.namespace, previous.split("/", 1)[1])
        break
    else:
        raise TakeoverError(f"Secret {unit.target} kept changing; re-run")
    deadline = time.monotonic() + timeout
    while True:
        kube.annotate_external_secret(c.namespace, c.secret_name, {wk.ESO_FORCE_SYNC: f"takeover-{time.monotonic()}"})
        annotations = kube.get_secret_annotations(c.namespace, c.secret_name) or {}
        owners = kube.get_secret_owners(c.namespace, c.secret_name)
        ctrl = owners.controller if owners is not None else None
        if (annotations.get(wk.ANNOTATION_VERSION_MARKER) == marker and ctrl is not None
                and (ctrl.kind, ctrl.name) == (ES_KIND, c.secret_name)):
            break
        if time.monotonic() >= deadline:
            return TakeoverOutcome(unit, "timeout", f"ESO did not reconcile {unit.target} with the authority's "
                                   f"marker within {timeout:.0f}s", previous, marker=marker)
        time.sleep(poll)
    secret = kube.get_secret(c.namespace, c.secret_name)
    unchanged = secret is not None and _digest(secret.data) == want
    del secret
    result: Result = ("created" if before is None else "already-owned" if action == "none" else "taken-over")
    return TakeoverOutcome(unit, result, f"{unit.target} is materialized by chamberlain's ExternalSecret from "
                           f"{vault}", previous, data_unchanged=unchanged if before is not None else None,
                           marker=marker, seconds=time.monotonic() - started)


__all__ = ["EXTERNAL_SECRETS", "TakeoverError", "TakeoverKube", "TakeoverOutcome", "TakeoverUnit", "decide",
           "expected_data", "take_over", "takeover_units"]
