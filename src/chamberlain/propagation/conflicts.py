"""Who else acts on what chamberlain owns in a cluster: the conflicts ``chamberlain plan`` reports.

Three kinds, each a second owner of one decision:

- ``foreign-secret``: a consumer Secret already exists and is not chamberlain's (no ownerReference to the
  ExternalSecret chamberlain renders for it, no ``chamberlain.dev/intent`` label of the intent). ESO's ``Owner``
  creation policy would adopt it and overwrite its data — a takeover, not a sync (ESO has no policy that refuses an
  existing Secret, external-secrets#2416). Plan reports it so the rendered ExternalSecret is never applied over it.

- ``foreign-external-secret``: an ExternalSecret chamberlain did not render targets a Secret a rendered one
  materializes. Two ExternalSecrets would overwrite each other's data in one Secret (ESO's ``Owner`` creation
  policy makes the second fail or fight), and a rotation could never prove the consumer carries its version.
- ``reloader``: a stakater Reloader annotation on a restart target. Reloader would roll the workload after
  chamberlain did. Propagation already leaves such a workload to Reloader (:mod:`.reloader`), so it never rolls
  twice; plan says so, and says when the annotation does not cover the rotated Secret (chamberlain still rolls).

Decisions (:func:`foreign_external_secrets`, :func:`reloader_conflicts`) are pure over what was observed;
:func:`observe` reads the cluster (ExternalSecrets per namespace, workload metadata; never Secret data) and calls
them. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from chamberlain import wellknown as wk
from chamberlain.kube.api import KubeNotFound, KubePropagation, PodTemplateState, SecretOwnership
from chamberlain.propagation.reloader import needs_secret_annotations, reloader_annotations, reloader_reason
from chamberlain.propagation.restart import WorkloadRef
from chamberlain.render.topology import Topology

ConflictKind = Literal["foreign-external-secret", "foreign-secret", "reloader"]


@dataclass(frozen=True, order=True)
class Expected:
    """One consumer chamberlain renders on a cluster: its ExternalSecret (named like the Secret it materializes)
    and the workloads it restarts."""

    namespace: str
    secret: str
    intent: str
    workloads: tuple[WorkloadRef, ...] = ()


@dataclass(frozen=True, order=True)
class Conflict:
    kind: ConflictKind
    namespace: str
    object: str  # ExternalSecret/<name> or <Kind>/<name>: the other owner's object
    intent: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "namespace": self.namespace, "object": self.object, "intent": self.intent,
                "detail": self.detail}

    def line(self) -> str:
        return f"conflict ({self.kind}): {self.namespace}/{self.object} [SecretIntent/{self.intent}]: {self.detail}"


def expected_consumers(topo: Topology, cluster: str, environment: str | None = None) -> list[Expected]:
    """Every consumer rendered onto ``cluster`` (only ``environment``'s when given). Pure."""
    out: dict[tuple[str, str], Expected] = {}
    for unit in topo.units:
        if unit.cluster != cluster or (environment is not None and unit.environment != environment):
            continue
        for ns, reads in unit.reads.items():
            for read in reads:
                c = read.consumer
                workloads = tuple(sorted(WorkloadRef(w.kind, ns, w.name) for w in c.restart))
                out.setdefault((ns, c.secret_name), Expected(ns, c.secret_name, read.intent.metadata.name, workloads))
    return sorted(out.values())


def target_name(external_secret: Mapping[str, Any]) -> str | None:
    """The Secret an ExternalSecret writes: ``spec.target.name``, defaulting to the ExternalSecret's own name."""
    spec = external_secret.get("spec")
    target = spec.get("target") if isinstance(spec, Mapping) else None
    name = target.get("name") if isinstance(target, Mapping) else None
    if isinstance(name, str) and name:
        return name
    meta = external_secret.get("metadata")
    own = meta.get("name") if isinstance(meta, Mapping) else None
    return own if isinstance(own, str) else None


def foreign_external_secrets(expected: Sequence[Expected],
                             observed: Mapping[str, Iterable[Mapping[str, Any]]]) -> list[Conflict]:
    """ExternalSecrets (``observed``: per namespace) that chamberlain did not render but that write a Secret a
    rendered ExternalSecret writes. Pure."""
    ours = {(e.namespace, e.secret): e for e in expected}
    found: list[Conflict] = []
    for ns, objects in observed.items():
        for obj in objects:
            meta = obj.get("metadata")
            name = meta.get("name") if isinstance(meta, Mapping) else None
            target = target_name(obj)
            mine = ours.get((ns, target)) if target is not None else None
            if mine is None or name == mine.secret:  # not a Secret we write, or our own ExternalSecret
                continue
            found.append(Conflict(
                "foreign-external-secret", ns, f"ExternalSecret/{name}", mine.intent,
                f"also writes Secret {target}, which chamberlain materializes through ExternalSecret/{mine.secret}; "
                "two owners of one Secret overwrite each other and a rotation cannot prove its version arrived: "
                "delete the other ExternalSecret or drop the consumer from the intent"))
    return sorted(found)


def is_chamberlains(expected: Expected, ownership: SecretOwnership) -> bool:
    """A consumer Secret chamberlain materializes: owned by the ExternalSecret rendered for it (ESO's ``Owner``
    policy sets that ownerReference), or labelled with its intent (the rendered template's label). Pure."""
    if ("ExternalSecret", expected.secret) in ownership.owners:
        return True
    return not ownership.owners and ownership.labels.get(wk.LABEL_INTENT) == expected.intent


def foreign_secrets(expected: Sequence[Expected],
                    observed: Mapping[tuple[str, str], SecretOwnership | None]) -> list[Conflict]:
    """Consumer Secrets that exist (``observed``: by namespace and name; None = absent) and are not chamberlain's.
    Pure."""
    found: list[Conflict] = []
    for e in expected:
        ownership = observed.get((e.namespace, e.secret))
        if ownership is None or is_chamberlains(e, ownership):
            continue
        owners = ", ".join(f"{kind}/{name}" for kind, name in ownership.owners) or "none"
        found.append(Conflict(
            "foreign-secret", e.namespace, f"Secret/{e.secret}", e.intent,
            f"exists and is not chamberlain's (ownerReferences: {owners}); ESO would take it over and overwrite its "
            "data: rename the consumer's secretName, or remove the existing Secret if it is really meant to be "
            "replaced"))
    return sorted(found)


def reloader_conflicts(expected: Sequence[Expected], workloads: Mapping[WorkloadRef, PodTemplateState],
                       secret_annotations: Mapping[tuple[str, str], Mapping[str, str]] | None = None
                       ) -> list[Conflict]:
    """A Reloader annotation on a restart target (``workloads``: what was read; absent ones are not conflicts).
    Pure; ``secret_annotations`` (by namespace and Secret) serves Reloader's search mode."""
    found: list[Conflict] = []
    seen: set[tuple[WorkloadRef, str]] = set()
    for e in expected:
        for w in e.workloads:
            state = workloads.get(w)
            if state is None or (w, e.secret) in seen:
                continue
            seen.add((w, e.secret))
            annotations = {**state.annotations, **state.workload_annotations}
            present = reloader_annotations(annotations)
            if not present:
                continue
            names = ", ".join(f"{k}={v}" for k, v in sorted(present.items()))
            reason = reloader_reason(annotations, e.secret, (secret_annotations or {}).get((w.namespace, e.secret)))
            if reason is not None:
                detail = (f"Reloader rolls it when Secret {e.secret} changes ({names}); chamberlain leaves this "
                          "restart to Reloader so it never rolls twice: keep one restarter (drop the annotation, "
                          "or the restart from the intent)")
            else:
                detail = (f"Reloader is configured on it ({names}) but not for Secret {e.secret}: chamberlain rolls "
                          "it, and Reloader may roll it again for its other Secrets; keep one restarter")
            found.append(Conflict("reloader", w.namespace, f"{w.kind}/{w.name}", e.intent, detail))
    return sorted(found)


def observe(kube: KubePropagation, expected: Sequence[Expected]) -> list[Conflict]:
    """Read the cluster (ExternalSecrets of each consumer namespace, each consumer Secret's ownership as metadata,
    each restart target's annotations) and
    return every conflict. A workload that does not exist is not a conflict (it is not deployed yet)."""
    namespaces = sorted({e.namespace for e in expected})
    observed = {ns: kube.list_external_secrets(ns) for ns in namespaces}
    states: dict[WorkloadRef, PodTemplateState] = {}
    for w in sorted({w for e in expected for w in e.workloads}):
        try:
            states[w] = kube.get_pod_template(w.kind, w.namespace, w.name)
        except KubeNotFound:
            continue
    secret_annotations: dict[tuple[str, str], Mapping[str, str]] = {}
    for e in expected:
        for w in e.workloads:
            state = states.get(w)
            if state is not None and needs_secret_annotations({**state.annotations, **state.workload_annotations}):
                got = kube.get_secret_annotations(e.namespace, e.secret)
                secret_annotations[(e.namespace, e.secret)] = got or {}
    existing = {(e.namespace, e.secret): kube.get_secret_ownership(e.namespace, e.secret) for e in expected}
    return (foreign_external_secrets(expected, observed) + foreign_secrets(expected, existing)
            + reloader_conflicts(expected, states, secret_annotations))


__all__ = [
    "Conflict",
    "ConflictKind",
    "Expected",
    "expected_consumers",
    "foreign_external_secrets",
    "foreign_secrets",
    "is_chamberlains",
    "observe",
    "reloader_conflicts",
    "target_name",
]
