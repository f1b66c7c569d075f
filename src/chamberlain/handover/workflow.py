"""Running a handover: observe, decide (:func:`~chamberlain.handover.decide.next_step`), act one step, repeat.

Each action is one small idempotent step against the :class:`~chamberlain.authority.kv.KV` and
:class:`~chamberlain.kube.api.Kube` protocols, followed by a :func:`~chamberlain.faults.checkpoint`, so tests can
kill the process at every step boundary and prove that the next run converges. Nothing is remembered between
steps: the state of Vault and of the cluster is re-read before every decision.

Secret data is held only in memory, inside :class:`~chamberlain.kube.api.KubeSecret` and
:class:`~chamberlain.authority.kv.SecretVersion` (whose reprs hide it), and compared in memory; what leaves this
module — outcomes, errors, ledger entries, custom_metadata, annotations — carries paths, names, versions and a
non-reversible marker only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from chamberlain import wellknown as wk
from chamberlain.audit.ledger import Ledger, LedgerEntry, LedgerReader
from chamberlain.authority.errors import AuthorityError, CasConflict, MetadataTooLarge
from chamberlain.authority.kv import KV, SecretMetadata, SecretVersion
from chamberlain.checks.sops import BOOTSTRAP_CLASS
from chamberlain.clock import Clock, rfc3339
from chamberlain.errors import ChamberlainError
from chamberlain.faults import checkpoint
from chamberlain.handover import metadata as md
from chamberlain.handover.decide import TERMINAL, Bootstrap, Observed, Step, VaultValue, next_step
from chamberlain.handover.gitops import NOT_TRACKED, GitOpsOwner, applied_by, trackings
from chamberlain.handover.units import HandoverUnit
from chamberlain.kube.api import Kube, KubeConflict, KubeCustomObjects, KubeError, KubeSecret
from chamberlain.values.markers import LegacyMarkers, Markers

# Typed Secrets must keep their required keys, or the API server rejects the update: an inert Secret keeps the
# keys with empty (or, for docker configs, empty-but-valid) values.
INERT_DATA: Mapping[str, Mapping[str, str]] = {
    "kubernetes.io/dockerconfigjson": {".dockerconfigjson": '{"auths":{}}'},
    "kubernetes.io/dockercfg": {".dockercfg": "{}"},
    "kubernetes.io/basic-auth": {"username": ""},
    "kubernetes.io/ssh-auth": {"ssh-privatekey": ""},
    "kubernetes.io/tls": {"tls.crt": "", "tls.key": ""},
}
# On an inert or ignored bootstrap Secret, defence in depth should someone revert the retirement in Git: Flux never
# applies (refills) nor prunes it again, Argo CD neither reports it out of sync nor prunes it.
RETIRED_ANNOTATIONS: Mapping[str, str] = {
    wk.FLUX_RECONCILE: wk.FLUX_DISABLED,
    wk.FLUX_PRUNE: wk.FLUX_DISABLED,
    wk.ARGOCD_COMPARE_OPTIONS: wk.ARGOCD_IGNORE_EXTRANEOUS,
    wk.ARGOCD_SYNC_OPTIONS: wk.ARGOCD_PRUNE_FALSE,
}


def retirement_undone(after_handover: str, secret: KubeSecret | None, applied: bool) -> bool:
    """Whether a retired bootstrap Secret came back (pure): a GitOps controller applies it again (``applied``), it
    exists again after a ``delete``, it lost its retirement annotations, or an ``inert`` one holds data again.
    An ``ignore`` Secret keeps its data by definition; it only counts when re-owned or un-annotated."""
    if applied:
        return True
    if secret is None:
        return False
    if after_handover == "delete" or wk.ANNOTATION_CONSUMED not in secret.annotations:
        return True
    return after_handover == "inert" and secret.data != dict(INERT_DATA.get(secret.type, {}))


MAX_STEPS = 12  # a handover takes at most 5 actions; the rest absorbs concurrent changes (resourceVersion races)
ORDER = (Step.WRITE, Step.RECORD, Step.CONSUME, Step.LEDGER)
DEFERRED_ORDER = (Step.WRITE, Step.RECORD, Step.LEDGER, Step.AWAIT)  # while GitOps still applies the Secret

Result = Literal["handed-over", "already-handed-over", "awaiting-retirement", "planned", "conflict", "blocked"]


class HandoverError(ChamberlainError):
    """A handover could not finish; the message says which authority holds the secret now."""


@dataclass(frozen=True)
class RunContext:
    """Who runs, why, and the clock (injected so tests control time)."""

    actor: str
    run: str
    clock: Clock
    reason: str = "explicit handover"
    # Version markers, keyed by the authority (TransitMarkers) in every live caller; v1 only for fakes (issue 11).
    markers: Markers = field(default_factory=LegacyMarkers)

    def timestamp(self) -> str:
        return rfc3339(self.clock.now())


@dataclass
class UnitOutcome:
    unit: HandoverUnit
    result: Result
    message: str
    steps: list[str] = field(default_factory=list)  # done (or, with dry-run, still to do)
    marker: str | None = None
    ledger_seq: int | None = None
    gitops: str | None = None  # the GitOps controller that (still) applies the Secret, when one does
    git: dict[str, object] | None = None  # awaiting-retirement: the retirement written into the checkout

    def as_dict(self) -> dict[str, object]:
        u = self.unit
        return {
            "intent": u.intent,
            "environment": u.environment,
            "cluster": u.cluster,
            "path": u.vault.full,
            "source": u.source,
            "afterHandover": u.after_handover,
            "result": self.result,
            "steps": list(self.steps),
            "message": self.message,
            "marker": self.marker,
            "ledgerSeq": self.ledger_seq,
            "gitops": self.gitops,
            "git": self.git,
        }


@dataclass
class HandoverReport:
    outcomes: list[UnitOutcome]

    @property
    def ok(self) -> bool:
        """Nothing failed: awaiting retirement is the expected stop while Git still declares the Secret."""
        return all(o.result not in ("conflict", "blocked") for o in self.outcomes)


# ------------------------------------------------------------------------------------------------ observing


@dataclass(frozen=True)
class Snapshot:
    """What a run sees right now. Holds secret data in memory only (both types hide it from repr)."""

    secret: KubeSecret | None
    meta: SecretMetadata | None
    current: SecretVersion | None
    owner: GitOpsOwner | None = None  # who applies the bootstrap Secret (None: absent, or not ours)

    @property
    def custom(self) -> Mapping[str, str]:
        return self.meta.custom if self.meta is not None else {}


def _ours(secret: KubeSecret | None, unit: HandoverUnit) -> bool:
    return (secret is not None and secret.labels.get(wk.LABEL_CLASS) == BOOTSTRAP_CLASS
            and secret.labels.get(wk.LABEL_INTENT) == unit.intent)


def observe(kv: KV, kube: Kube, unit: HandoverUnit, gitops: KubeCustomObjects | None = None) -> Snapshot:
    """Read the bootstrap Secret, the secret's metadata and current version, and — for a bootstrap Secret of ours
    that is not consumed yet, with a ``gitops`` API to ask — whether a GitOps controller still applies it."""
    secret = kube.get_secret(unit.namespace, unit.name)
    meta = kv.read_metadata(unit.vault.mount, unit.vault.path)
    current = kv.read(unit.vault.mount, unit.vault.path) if meta is not None and meta.current_version else None
    owner = None
    if secret is not None and _ours(secret, unit) and wk.ANNOTATION_CONSUMED not in secret.annotations:
        if gitops is not None:
            owner = applied_by(gitops, secret.namespace, secret.name, secret.labels, secret.annotations)
        else:
            found = trackings(secret.labels, secret.annotations)
            owner = GitOpsOwner(found[0] if found else NOT_TRACKED, applies=False)
    return Snapshot(secret, meta, current, owner)


def classify(snap: Snapshot, unit: HandoverUnit) -> Observed:
    """Reduce a snapshot to the decision's inputs (pure)."""
    secret = snap.secret
    if secret is None:
        bootstrap = Bootstrap.ABSENT
    elif not _ours(secret, unit):
        bootstrap = Bootstrap.FOREIGN
    elif wk.ANNOTATION_CONSUMED in secret.annotations:
        bootstrap = Bootstrap.CONSUMED
    else:
        bootstrap = Bootstrap.PRESENT
    if snap.meta is None or snap.meta.current_version == 0:
        vault = VaultValue.ABSENT
    elif bootstrap is not Bootstrap.PRESENT:
        vault = VaultValue.PRESENT
    elif snap.current is None or snap.current.deleted or secret is None:
        vault = VaultValue.DIFFERENT  # a deleted or destroyed version is not ours to paper over
    else:
        vault = VaultValue.EQUAL if dict(snap.current.data) == dict(secret.data) else VaultValue.DIFFERENT
    custom = snap.custom
    return Observed(
        bootstrap=bootstrap,
        vault=vault,
        recorded=custom.get(wk.AUTHORITY) == wk.AUTHORITY_VAULT,
        recorded_here=custom.get(wk.SOURCE) == unit.source and custom.get(wk.SOURCE_CLUSTER) == unit.cluster,
        retired=wk.retired_key(unit.cluster) in custom,
        gitops=snap.owner is not None and snap.owner.applies,
        logged=wk.handover_seq_key(unit.cluster) in custom,
    )


# ------------------------------------------------------------------------------------------------ acting


def record_metadata(unit: HandoverUnit, at: str, version: int, marker: str) -> dict[str, str]:
    """The custom_metadata written at the commit point."""
    return {
        wk.AUTHORITY: wk.AUTHORITY_VAULT,
        wk.INTENT: unit.intent,
        wk.ENVIRONMENT: unit.environment,
        wk.ORIGIN: "bootstrap",
        wk.HANDED_OVER_AT: at,
        wk.SOURCE: unit.source,
        wk.SOURCE_CLUSTER: unit.cluster,
        wk.VALUE_VERSION: str(version),
        wk.VALUE_MARKER: marker,
        **md.policy_metadata(unit.policy_name, unit.policy),
    }


def _preflight(unit: HandoverUnit, snap: Snapshot) -> None:
    """Check the record fits Vault's custom_metadata limits before the first write, so bad input never leaves a
    written-but-unrecordable value behind. Sizes are those of the real record (fixed-width time and marker)."""
    sample = record_metadata(unit, "0000-00-00T00:00:00Z", 10**9, "v1:" + "0" * 32)
    sample.update({wk.LEDGER_SEQ: str(10**12), wk.retired_key(unit.cluster): str(10**12),
                   wk.handover_seq_key(unit.cluster): str(10**12)})
    try:
        md.merged(snap.custom, sample)
    except MetadataTooLarge as exc:
        raise HandoverError(f"{unit.vault}: cannot record the handover ({exc}); nothing was written") from None


def _bootstrap_secret(unit: HandoverUnit, snap: Snapshot) -> KubeSecret:
    """The bootstrap Secret the step acts on (:func:`next_step` names a step that needs it only when it exists;
    one that vanished between the read and the step stops the run, which the next observation resolves)."""
    if snap.secret is None:
        raise HandoverError(f"{unit.source}: the bootstrap Secret vanished during the handover; re-run")
    return snap.secret


def _write(kv: KV, unit: HandoverUnit, snap: Snapshot) -> None:
    secret = _bootstrap_secret(unit, snap)
    _preflight(unit, snap)
    try:
        kv.write(unit.vault.mount, unit.vault.path, dict(secret.data), cas=0)
    except CasConflict:
        return  # someone created it between our read and write; the next observation decides (equal or conflict)
    checkpoint("handover.write")
    back = kv.read(unit.vault.mount, unit.vault.path)
    if back is None or back.deleted or dict(back.data) != dict(secret.data):
        raise HandoverError(
            f"{unit.vault}: the value read back differs from the bootstrap Secret {unit.source}; nothing was "
            "recorded and the bootstrap Secret stays the authority"
        )
    checkpoint("handover.verify")


def _record(kv: KV, unit: HandoverUnit, snap: Snapshot, ctx: RunContext) -> str:
    current = snap.current
    if current is None:
        raise HandoverError(f"{unit.vault}: the value vanished before it was recorded; the bootstrap Secret stays "
                            "the authority; re-run")
    marker = ctx.markers.of(unit.vault, current.data)
    update = record_metadata(unit, ctx.timestamp(), current.version, marker)
    try:
        md.merged(snap.custom, update)
    except MetadataTooLarge as exc:
        raise HandoverError(f"{unit.vault}: cannot record the handover ({exc}); the bootstrap Secret stays the "
                            "authority") from None
    kv.update_custom_metadata(unit.vault.mount, unit.vault.path, update)
    checkpoint("handover.record")
    return marker


def _consume(kube: Kube, unit: HandoverUnit, snap: Snapshot, ctx: RunContext) -> None:
    secret = _bootstrap_secret(unit, snap)
    if unit.after_handover == "delete":
        # The resourceVersion precondition: never delete a Secret that changed since we compared it.
        kube.delete_secret(secret.namespace, secret.name, resource_version=secret.resource_version or None)
    else:
        annotations = {
            **secret.annotations,
            wk.ANNOTATION_CONSUMED: ctx.timestamp(),
            wk.ANNOTATION_AUTHORITY: wk.AUTHORITY_VAULT,
            wk.ANNOTATION_HANDED_OVER_TO: unit.vault.full,
            **RETIRED_ANNOTATIONS,
        }
        data = dict(INERT_DATA.get(secret.type, {})) if unit.after_handover == "inert" else dict(secret.data)
        kube.update_secret(dataclasses.replace(secret, data=data, annotations=annotations))
    checkpoint("handover.consume")


def _find_entry(ledger: LedgerReader, unit: HandoverUnit, event: str = "handover") -> LedgerEntry | None:
    """An entry a crashed run appended but did not note on the secret (so the ledger never doubles)."""
    for entry in reversed(ledger.for_secret(unit.intent)):
        if (entry.event == event and entry.result == "ok" and entry.path == unit.vault.full
                and entry.details.get("cluster") == unit.cluster):
            return entry
    return None


def _details(unit: HandoverUnit) -> dict[str, str]:
    return {"environment": unit.environment, "cluster": unit.cluster, "source": unit.source,
            "after-handover": unit.after_handover}


def _ledger(kv: KV, ledger: Ledger, unit: HandoverUnit, snap: Snapshot, ctx: RunContext, gitops: str) -> int:
    """The ``handover`` entry: after the consume (it records the retirement too: ``retired.<cluster>``), or, while
    GitOps still applies the bootstrap Secret, before it (``handover-seq.<cluster>``; the retirement gets its own
    entry later). ``gitops``: the controller that had applied the Secret (flux, argocd, none; unknown when a crash
    hid it: a deleted Secret's labels are gone)."""
    deferred = snap.owner is not None and snap.owner.applies
    entry = _find_entry(ledger, unit)
    if entry is None:
        custom = snap.custom
        entry = ledger.append(
            "handover",
            actor=ctx.actor,
            secret=unit.intent,
            path=unit.vault.full,
            run=ctx.run,
            reason=ctx.reason,
            details={
                **_details(unit),
                "version": custom.get(wk.VALUE_VERSION, ""),
                "marker": custom.get(wk.VALUE_MARKER, ""),
                "policy": custom.get(wk.POLICY_NAME, ""),
                "authority": wk.AUTHORITY_VAULT,
                "gitops": gitops,
                "retirement": "awaiting-gitops" if deferred else "done",
            },
        )
        checkpoint("handover.ledger")
    key = wk.handover_seq_key(unit.cluster) if deferred else wk.retired_key(unit.cluster)
    update = {key: str(entry.seq)}
    if wk.LEDGER_SEQ not in snap.custom:
        update[wk.LEDGER_SEQ] = str(entry.seq)
    kv.update_custom_metadata(unit.vault.mount, unit.vault.path, update)
    checkpoint("handover.deferred" if deferred else "handover.done")
    return entry.seq


def _retire(kv: KV, ledger: Ledger, unit: HandoverUnit, snap: Snapshot, ctx: RunContext, gitops: str | None) -> int:
    """The ``retire`` entry of a consume that waited for GitOps, and ``retired.<cluster>``. The controller that had
    applied the Secret: as observed before the consume, else as the handover entry recorded it."""
    handover_seq = snap.custom.get(wk.handover_seq_key(unit.cluster), "")
    entry = _find_entry(ledger, unit, "retire")
    if entry is None:
        if gitops is None:
            recorded = ledger.entry(int(handover_seq)) if handover_seq.isdigit() else None
            gitops = recorded.details.get("gitops", "unknown") if recorded is not None else "unknown"
        entry = ledger.append("retire", actor=ctx.actor, secret=unit.intent, path=unit.vault.full, run=ctx.run,
                              reason=ctx.reason, details={**_details(unit), "gitops": gitops,
                                                          "handover-seq": handover_seq})
        checkpoint("handover.retire")
    kv.update_custom_metadata(unit.vault.mount, unit.vault.path, {wk.retired_key(unit.cluster): str(entry.seq)})
    checkpoint("handover.retired")
    return entry.seq


# ------------------------------------------------------------------------------------------------ running


def _plan_from(step: Step, deferred: bool) -> list[str]:
    order = DEFERRED_ORDER if deferred else ORDER
    return [s.value for s in order[order.index(step):]] if step in order else [step.value]


def _seq(custom: Mapping[str, str], key: str) -> int | None:
    text = custom.get(key)
    return int(text) if text and text.isdigit() else None


def hand_over(
    unit: HandoverUnit, kv: KV, kube: Kube, ledger: Ledger, ctx: RunContext, *, dry_run: bool = False,
    gitops: KubeCustomObjects | None = None,
) -> UnitOutcome:
    """Bring one unit as far as it can go: to ``done``, to ``awaiting-retirement`` (GitOps still applies the
    bootstrap Secret: nothing consumed), or to a conflict/blocked verdict that touches nothing. ``gitops``: where to
    ask whether Flux or Argo CD still applies the bootstrap Secret (None: nobody is asked; the lab's stand-in)."""
    ledger = ledger.for_environment(unit.environment)  # its partition (environment, this cluster)
    done: list[str] = []
    marker: str | None = None
    seq: int | None = None
    step = Step.WRITE
    recorded = False
    tracked: str | None = None  # the controller that had applied the Secret, while it could still be seen
    try:
        for _ in range(MAX_STEPS):
            snap = observe(kv, kube, unit, gitops)
            state = classify(snap, unit)
            recorded = state.recorded
            decision = next_step(state)
            step = decision.step
            marker = snap.custom.get(wk.VALUE_MARKER, marker)
            tracked = snap.owner.controller if snap.owner is not None else tracked
            applier = snap.owner.describe() if snap.owner is not None and snap.owner.applies else None
            if step is Step.DONE:
                result: Result = "handed-over" if done else "already-handed-over"
                seq = _seq(snap.custom, wk.retired_key(unit.cluster)) or seq
                return UnitOutcome(unit, result, decision.why, done, marker, seq)
            if step is Step.AWAIT and not dry_run:
                seq = _seq(snap.custom, wk.handover_seq_key(unit.cluster)) or seq
                return UnitOutcome(unit, "awaiting-retirement", f"{decision.why} ({applier} applies Secret "
                                   f"{unit.source})", done, marker, seq, gitops=applier)
            if step in TERMINAL and step is not Step.AWAIT:
                verdict: Result = "conflict" if step is Step.CONFLICT else "blocked"
                return UnitOutcome(unit, verdict, f"{decision.why} ({unit.vault}, Secret {unit.source})", done)
            if dry_run:
                return UnitOutcome(unit, "planned", decision.why, _plan_from(step, state.gitops), marker,
                                   gitops=applier)
            try:
                if step is Step.WRITE:
                    _write(kv, unit, snap)
                elif step is Step.RECORD:
                    marker = _record(kv, unit, snap, ctx)
                elif step is Step.CONSUME:
                    _consume(kube, unit, snap, ctx)
                elif step is Step.LEDGER:
                    seq = _ledger(kv, ledger, unit, snap, ctx, tracked or "unknown")
                else:
                    seq = _retire(kv, ledger, unit, snap, ctx, tracked)
            except KubeConflict:
                continue  # the Secret changed under us: observe again and decide afresh
            done.append(step.value)
    except (AuthorityError, KubeError) as exc:
        holder = (
            "Vault is already the authority; re-run to finish retiring the bootstrap Secret"
            if recorded
            else f"the bootstrap Secret {unit.source} stays the authority; re-run once this is fixed"
        )
        raise HandoverError(f"handover of {unit.intent} to {unit.vault} stopped at step {step.value}: {exc}. "
                            f"{holder}") from None
    raise HandoverError(f"handover of {unit.intent} to {unit.vault} did not settle after {MAX_STEPS} steps "
                        "(concurrent changes?); re-run")


def run_handover(
    units: list[HandoverUnit], kv: KV, kube: Kube, ledger: Ledger, ctx: RunContext, *, dry_run: bool = False,
    gitops: KubeCustomObjects | None = None,
) -> HandoverReport:
    """Hand over every unit. A conflict or blocked unit does not stop the others (they are independent secrets);
    an unavailable authority or API server stops the run (nothing after it could succeed either)."""
    return HandoverReport([hand_over(u, kv, kube, ledger, ctx, dry_run=dry_run, gitops=gitops) for u in units])
