"""What every drill reports, and the proof it rests on: each consumer Secret carries the same version marker after
the recovery as before it.

A consumer Secret is what ESO writes from an ExternalSecret chamberlain rendered (label
``app.kubernetes.io/managed-by: chamberlain``); ESO templates the secret's ``value-marker`` (a non-reversible marker
of the version, never the value) into its annotation ``chamberlain.dev/version-marker``. A regenerated or lost value
shows as a changed or missing marker. Only annotations are read, never a Secret's data.

:func:`compare_markers` and :class:`DrillReport` are pure; :func:`consumer_secrets`, :func:`snapshot_markers`,
:func:`resync` and :func:`wait_resynced` act through :class:`ConsumerCluster` (the
:class:`~chamberlain.kube.api.Kube` protocol satisfies it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from chamberlain import wellknown as wk
from chamberlain.errors import ChamberlainError
from chamberlain.kube.api import CustomResource

EXTERNAL_SECRETS = CustomResource("external-secrets.io", "v1", "externalsecrets")

SecretRef = tuple[str, str]  # (namespace, Secret name)
Markers = dict[SecretRef, str]  # a consumer Secret -> its version marker ("" when it has none)


class DrillError(ChamberlainError):
    """A drill could not run or could not prove its claim; the message names the step, never a value."""


# ------------------------------------------------------------------------------------------------ pure


@dataclass(frozen=True)
class MarkerComparison:
    """Before vs after, per consumer Secret. ``secrets``: how many there were before; ``matched``: how many carry
    the same (non-empty) marker after."""

    secrets: int
    matched: int
    changed: tuple[str, ...] = ()  # "ns/name": a different marker (a regenerated or older value)
    missing: tuple[str, ...] = ()  # "ns/name": gone, or without a marker, after
    unmarked: tuple[str, ...] = ()  # "ns/name": no marker before (nothing to compare; not matched)

    @property
    def ok(self) -> bool:
        return self.secrets > 0 and self.matched == self.secrets

    def as_dict(self) -> dict[str, Any]:
        return {"secrets": self.secrets, "matched": self.matched, "changed": list(self.changed),
                "missing": list(self.missing), "unmarked": list(self.unmarked)}


def compare_markers(before: Mapping[SecretRef, str], after: Mapping[SecretRef, str]) -> MarkerComparison:
    """Every consumer Secret of ``before`` must carry the same marker in ``after``. A Secret that appeared only
    after is not counted (nothing says what it should be)."""
    changed, missing, unmarked = [], [], []
    matched = 0
    for ref in sorted(before):
        shown = f"{ref[0]}/{ref[1]}"
        was, now = before[ref], after.get(ref, "")
        if not was:
            unmarked.append(shown)
        elif not now:
            missing.append(shown)
        elif now != was:
            changed.append(shown)
        else:
            matched += 1
    return MarkerComparison(len(before), matched, tuple(changed), tuple(missing), tuple(unmarked))


@dataclass(frozen=True)
class Step:
    name: str
    seconds: float
    facts: Mapping[str, Any] = field(default_factory=dict)  # counts, names, states; never a value

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.name, "seconds": round(self.seconds, 2), **dict(self.facts)}


@dataclass
class DrillReport:
    """``-o json`` of every drill: ``{"ok", "secrets", "matched", "rtoSeconds", ...}``. ``rto_seconds``: from the
    destruction to the moment every consumer Secret is proven in sync with the recovered authority."""

    drill: str
    comparison: MarkerComparison | None = None
    rto_seconds: float | None = None
    ledger_verified: bool | None = None  # None: not checked
    regenerated: int | None = None  # values whose authority-side marker changed (must be 0)
    steps: list[Step] = field(default_factory=list)
    error: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (self.error is None and self.comparison is not None and self.comparison.ok
                and self.ledger_verified is not False and not self.regenerated)

    def as_dict(self) -> dict[str, Any]:
        c = self.comparison
        out: dict[str, Any] = {
            "drill": self.drill, "ok": self.ok, "secrets": c.secrets if c else 0, "matched": c.matched if c else 0,
            "rtoSeconds": None if self.rto_seconds is None else round(self.rto_seconds, 2),
            "ledgerVerified": self.ledger_verified, "regenerated": self.regenerated,
        }
        if c is not None:
            out.update({k: v for k, v in c.as_dict().items() if k not in ("secrets", "matched") and v})
        out["steps"] = [s.as_dict() for s in self.steps]
        out.update(self.facts)
        if self.error is not None:
            out["error"] = self.error
        return out


def synced_since(external_secret: Mapping[str, Any], since: datetime) -> bool:
    """Whether ESO reports this ExternalSecret Ready with a refresh at or after ``since`` (a sync against the
    recovered authority, not one from before the disaster)."""
    status = external_secret.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ()
                if isinstance(c, Mapping))
    refreshed = status.get("refreshTime")
    if not ready or not isinstance(refreshed, str):
        return False
    try:
        at = datetime.fromisoformat(refreshed.replace("Z", "+00:00"))
    except ValueError:
        return False
    # ESO writes whole seconds: a refresh in the same second as ``since`` counts
    return at >= since.replace(microsecond=0)


def target_secret(external_secret: Mapping[str, Any]) -> SecretRef:
    meta = external_secret.get("metadata") or {}
    target = (external_secret.get("spec") or {}).get("target") or {}
    return str(meta.get("namespace", "")), str(target.get("name") or meta.get("name", ""))


# ------------------------------------------------------------------------------------------------ acting


class ConsumerCluster(Protocol):
    """The part of :class:`~chamberlain.kube.api.Kube` a drill reads and nudges (annotations only)."""

    def list_custom_objects(self, resource: CustomResource, namespace: str | None = None,
                            label: str | None = None) -> list[dict[str, Any]]: ...

    def get_secret_annotations(self, namespace: str, name: str) -> Mapping[str, str] | None: ...

    def annotate_external_secret(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None: ...


def chamberlain_external_secrets(kube: ConsumerCluster) -> list[dict[str, Any]]:
    """Every ExternalSecret chamberlain rendered, cluster-wide, in (namespace, name) order."""
    items = kube.list_custom_objects(EXTERNAL_SECRETS, None, label=f"{wk.MANAGED_BY}={wk.MANAGER}")
    ours = [i for i in items if ((i.get("metadata") or {}).get("labels") or {}).get(wk.MANAGED_BY) == wk.MANAGER]
    return sorted(ours, key=lambda i: (i["metadata"].get("namespace", ""), i["metadata"]["name"]))


def consumer_secrets(kube: ConsumerCluster) -> list[SecretRef]:
    return sorted({target_secret(es) for es in chamberlain_external_secrets(kube)})


def snapshot_markers(kube: ConsumerCluster, refs: Sequence[SecretRef]) -> Markers:
    """The version marker each consumer Secret carries now ("" when it is missing or unmarked)."""
    out: Markers = {}
    for ns, name in refs:
        annotations = kube.get_secret_annotations(ns, name)
        out[(ns, name)] = (annotations or {}).get(wk.ANNOTATION_VERSION_MARKER, "")
    return out


def resync(kube: ConsumerCluster, stamp: str) -> int:
    """Ask ESO to sync every chamberlain ExternalSecret now; how many were asked."""
    items = chamberlain_external_secrets(kube)
    for es in items:
        kube.annotate_external_secret(es["metadata"]["namespace"], es["metadata"]["name"], {wk.ESO_FORCE_SYNC: stamp})
    return len(items)


def wait_resynced(kube: ConsumerCluster, since: datetime, timeout: float, *, stamp: str,
                  only: Collection[SecretRef] | None = None, sleep: Callable[[float], None] = time.sleep,
                  monotonic: Callable[[], float] = time.monotonic) -> float:
    """Until every chamberlain ExternalSecret (``only``: those writing these consumer Secrets) reports a successful
    sync at or after ``since`` (re-asking ESO every few seconds); the seconds it took. :class:`DrillError` naming
    the late ones after ``timeout``."""
    started = monotonic()
    asked = 0
    last_ask = -1e9
    while True:
        now = monotonic()
        if now - last_ask >= 3.0:
            asked += 1
            resync(kube, f"{stamp}-{asked}")
            last_ask = now
        late = [f"{es['metadata'].get('namespace')}/{es['metadata']['name']}"
                for es in chamberlain_external_secrets(kube)
                if (only is None or target_secret(es) in only) and not synced_since(es, since)]
        if not late:
            return monotonic() - started
        if now - started > timeout:
            raise DrillError(f"ESO did not sync {', '.join(late[:10])} against the recovered authority within "
                             f"{timeout:.0f}s")
        sleep(0.5)


__all__ = [
    "EXTERNAL_SECRETS",
    "ConsumerCluster",
    "DrillError",
    "DrillReport",
    "MarkerComparison",
    "Markers",
    "SecretRef",
    "Step",
    "chamberlain_external_secrets",
    "compare_markers",
    "consumer_secrets",
    "resync",
    "snapshot_markers",
    "synced_since",
    "target_secret",
    "wait_resynced",
]
