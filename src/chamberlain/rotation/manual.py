"""Glue between a loaded intent repository and the durable workflow, for ``chamberlain rotate`` and ``status``.

Belongs here: choosing the one placement (environment, cluster, Vault path) of an intent a command acts on,
building :class:`~chamberlain.rotation.workflow.RotationDeps` from it (the rotator from the registry, the
:class:`VaultAdmin` source of a ``target.postgres.adminIntent``, :class:`KubeConsumers` for the intent's consumers
in the selected cluster, the ledger, the injected clock), timing propagation, and the per-secret status report
(metadata, ledger, policy in force, consumer sync by marker annotation only). Not here: the CLI, loading the
repository, or selecting intents by namespace (:mod:`chamberlain.triggers.manual`).

Nothing here reads a consumer Secret's data, and nothing here reads a Vault value: the admin login is read by the
workflow's executor through :class:`VaultAdmin`, inside the step that needs it.
"""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chamberlain import wellknown as wk
from chamberlain.audit.ledger import Ledger, LedgerReader, Signer
from chamberlain.authority.errors import NotFound
from chamberlain.authority.kv import KV, SecretMetadata
from chamberlain.clock import Clock, parse_rfc3339, rfc3339
from chamberlain.errors import UsageError
from chamberlain.intent.model import Consumer, Platform, RotationPolicySpec, SecretIntent
from chamberlain.intent.paths import VaultPath, intent_environments, placements, vault_path
from chamberlain.intent.templates import TemplateSyntaxError, references
from chamberlain.kube.api import KubeError, KubePropagation
from chamberlain.propagation import ConsumerRef, ExternalSecretRef, Restarts, WorkloadRef, in_sync
from chamberlain.rotation import clusters
from chamberlain.rotation import run as runs
from chamberlain.rotation import workflow as wf
from chamberlain.rotation.policy import due, from_metadata
from chamberlain.rotation.rotators import Registry
from chamberlain.rotation.rotators.base import CertificateIssuer, Rotator
from chamberlain.rotation.run import RotationRun
from chamberlain.values.markers import LegacyMarkers, Markers, same_version


@dataclass(frozen=True, slots=True)  # one per placed intent
class Placed:
    """One intent in the environment and cluster a command acts on."""

    intent: SecretIntent
    environment: str
    cluster: str
    vault: VaultPath

    @property
    def name(self) -> str:
        return self.intent.metadata.name


def place(platform: Platform, intent: SecretIntent, environment: str | None, cluster: str | None) -> Placed:
    """The one placement of ``intent`` matching the selection; :class:`UsageError` when none or ambiguous."""
    found = [p for p in placements(platform, intent)
             if (environment is None or p.environment == environment) and (cluster is None or p.cluster == cluster)]
    paths = sorted({(p.environment, p.vault) for p in found})
    if not found:
        raise UsageError(f"{intent.metadata.name}: not placed in the selected environment/cluster "
                         f"({environment or '*'}/{cluster or '*'})")
    if len(paths) > 1:
        raise UsageError(f"{intent.metadata.name}: more than one environment matches; pass --environment "
                         f"(candidates: {', '.join(sorted({e for e, _ in paths}))})")
    clusters = sorted({p.cluster for p in found})
    if len(clusters) > 1 and cluster is None:
        raise UsageError(f"{intent.metadata.name}: pass --cluster (candidates: {', '.join(clusters)})")
    first = found[0]
    return Placed(intent, first.environment, first.cluster, first.vault)


def consumers_of(intent: SecretIntent,
                 templated: Sequence[tuple[SecretIntent, Consumer]] = ()) -> list[wf.Consumer]:
    """The ExternalSecret, Secret and workloads of every consumer (rendered under the consumer Secret's name), and
    of each ``templated`` consumer of another intent that reads this one (:func:`templated_readers`): that Secret
    carries this intent's marker in its part annotation, and restarts its workloads when this part changes."""
    own = [
        wf.Consumer(
            ExternalSecretRef(c.namespace, c.secret_name),
            ConsumerRef(c.namespace, c.secret_name),
            tuple(WorkloadRef(w.kind, c.namespace, w.name) for w in c.restart),
        )
        for c in intent.spec.consumers
    ]
    part = wk.part_marker_annotation(intent.metadata.name)
    return own + [
        wf.Consumer(
            ExternalSecretRef(c.namespace, c.secret_name),
            ConsumerRef(c.namespace, c.secret_name, part),
            tuple(WorkloadRef(w.kind, c.namespace, w.name) for w in c.restart),
        )
        for _, c in templated
    ]


class TemplatedIndex:
    """:func:`~chamberlain.intent.templates.templated_readers` for every intent of one environment at once: the
    templates are parsed once, then each look-up is a dictionary read. A batch builds the consumers of every run
    of the scope; asking :func:`templated_readers` for each (a sort and a scan of every intent) made a batch of
    2,000 rotations spend 30 s of CPU in it alone (quadratic). Same answers, same order."""

    def __init__(self, platform: Platform, intents: Iterable[SecretIntent], environment: str) -> None:
        self._readers: dict[str, list[tuple[SecretIntent, Consumer]]] = {}
        templated = [i for i in intents if any(c.template for c in i.spec.consumers)]
        for intent in sorted(templated, key=lambda i: i.metadata.name):
            if environment not in {e.name for e in intent_environments(platform, intent)}:
                continue
            for consumer in intent.spec.consumers:
                for name in _referenced(consumer):
                    self._readers.setdefault(name, []).append((intent, consumer))

    def readers(self, name: str) -> list[tuple[SecretIntent, Consumer]]:
        return [r for r in self._readers.get(name, ()) if r[0].metadata.name != name]


def _referenced(consumer: Consumer) -> set[str]:
    try:
        return {r.intent for text in (consumer.template or {}).values() for r in references(text)}
    except TemplateSyntaxError:
        return set()


_INDEX_SLOTS = 4  # scopes in use at once: the controller's, the one swapping in, the follower's, a test's
_indexes: OrderedDict[tuple[int, int, str], tuple[Platform, Mapping[str, SecretIntent], TemplatedIndex]] = \
    OrderedDict()
_indexes_lock = threading.Lock()


def templated_index(platform: Platform, intents: Mapping[str, SecretIntent], environment: str) -> TemplatedIndex:
    """The :class:`TemplatedIndex` of ``intents`` in ``environment``, built once per mapping (a scope's intents
    never change: a new scope brings a new mapping). The platform and the mapping are kept with it, so their ids
    cannot be reused by other objects while it is cached."""
    key = (id(platform), id(intents), environment)
    with _indexes_lock:
        hit = _indexes.get(key)
        if hit is not None and hit[0] is platform and hit[1] is intents:
            _indexes.move_to_end(key)
            return hit[2]
    index = TemplatedIndex(platform, intents.values(), environment)
    with _indexes_lock:
        _indexes[key] = (platform, intents, index)
        while len(_indexes) > _INDEX_SLOTS:
            _indexes.popitem(last=False)
    return index


def placed_consumers(platform: Platform, intents: Mapping[str, SecretIntent], placed: Placed) -> list[wf.Consumer]:
    """:func:`consumers_of` the placed intent, with the templated consumers of other intents that read it in its
    environment."""
    return consumers_of(placed.intent, templated_index(platform, intents, placed.environment).readers(placed.name))


@dataclass
class TimedPropagation:
    """:class:`~chamberlain.rotation.workflow.Propagation` that measures refresh-start → all in sync, and keeps
    the workloads actually restarted."""

    inner: wf.Propagation
    clock: Clock
    seconds: float | None = None
    restarted: list[str] = field(default_factory=list)
    left_to_reloader: list[str] = field(default_factory=list)
    _started: float | None = None

    def refresh(self, token: str) -> None:
        if self._started is None:  # a retried or repeated refresh does not restart the measurement
            self._started = self.clock.monotonic()
        self.inner.refresh(token)

    def wait(self, marker: str) -> None:
        self.inner.wait(marker)
        if self._started is not None:
            self.seconds = self.clock.monotonic() - self._started

    def restart(self, token: str) -> Restarts:
        done = self.inner.restart(token)
        self.restarted.extend(done.rolled)
        self.left_to_reloader.extend(done.left_to_reloader)
        return done


@dataclass(frozen=True)
class VaultAdmin:
    """:class:`~chamberlain.rotation.workflow.AdminSource` over the authority: each call reads the admin secret's
    latest values; none is kept here (the executor drops them with the step)."""

    kv: KV = field(repr=False)
    path: VaultPath
    secret: str  # the rotating secret, for messages

    def __call__(self) -> dict[str, str]:
        got = self.kv.read(self.path.mount, self.path.path)
        if got is None:
            raise NotFound(f"{self.path}: the admin secret of {self.secret} is not in Vault")
        return dict(got.data)


def admin_source(kv: KV, platform: Platform, intents: Mapping[str, SecretIntent], placed: Placed
                 ) -> VaultAdmin | None:
    """Where the admin login of ``target.postgres.adminIntent`` lives in the same environment/cluster (None without
    a target). Checked now, by metadata only, so a run never starts without its admin secret."""
    target = placed.intent.spec.target
    if target is None:
        return None
    admin = intents.get(target.postgres.admin_intent)
    if admin is None:
        raise UsageError(f"{placed.name}: adminIntent {target.postgres.admin_intent!r} is not in the repository")
    path = vault_path(platform, admin, placed.environment, placed.cluster)
    meta = kv.read_metadata(path.mount, path.path)
    if meta is None or meta.current_version == 0:
        raise NotFound(f"{path}: the admin secret of {placed.name} is not in Vault")
    return VaultAdmin(kv, path, placed.name)


def build_deps(
    kv: KV,
    kube: KubePropagation,
    platform: Platform,
    intents: Mapping[str, SecretIntent],
    placed: Placed,
    *,
    actor: str,
    clock: Clock,
    registry: Registry | None = None,
    ledger: Ledger | None = None,
    timeout: float = 120.0,
    poll: float = 0.5,
    pki: CertificateIssuer | None = None,
    rotator: Rotator | None = None,
    signer: Signer | None = None,
    markers: Markers | None = None,
    interrupted: Callable[[], bool] | None = None,
) -> tuple[wf.RotationDeps, TimedPropagation]:
    """Everything the workflow acts through for one placed intent, plus the timing propagation wrapper. A
    long-lived caller (the controller) hands in its one ``registry`` and ``ledger``; without them they are built
    here (the registry loaded, a ledger over the runtime mount on ``clock``). ``pki`` signs and revokes
    certificates for the ``x509-vault-pki`` rotator; ``rotator`` replaces the registry's choice (an import's
    :class:`~chamberlain.rotation.rotators.imported.ImportedRotator`); ``signer`` signs the entries of a ledger built
    here (the partition of the placed environment and cluster); ``markers`` keys the version markers (every live
    caller passes the authority's TransitMarkers); ``interrupted`` cuts a consumer wait short (a stopping
    controller: :class:`~chamberlain.propagation.WaitInterrupted`)."""
    rotator = rotator or (registry or Registry.load()).for_intent(placed.intent)
    propagation = TimedPropagation(
        wf.KubeConsumers(kube, placed.name, placed_consumers(platform, intents, placed), clock, timeout=timeout,
                         poll=poll, interrupted=interrupted), clock)
    deps = wf.RotationDeps(
        kv=kv, ledger=(ledger if ledger is not None else Ledger(
            kv, platform.spec.authority.mounts.runtime, clock, cluster=placed.cluster, signer=signer))
        .for_environment(placed.environment),
        rotator=rotator,
        intent=placed.intent, propagation=propagation, clock=clock, rng=random.SystemRandom(), actor=actor,
        admin=admin_source(kv, platform, intents, placed), pki=pki,
        markers=markers if markers is not None else LegacyMarkers(),
        # a runtime path is shared by every cluster of the environment: revokeOld waits for the others
        followers=(clusters.followers(platform, placed.environment)
                   if placed.vault.mount == platform.spec.authority.mounts.runtime else ()),
    )
    return deps, propagation


def drive(run: RotationRun, deps: wf.RotationDeps, *, max_wait: float,
          on_step: Callable[[RotationRun], None] | None = None) -> RotationRun:
    """Advance ``run`` until it is finished and recorded, sleeping through waits of at most ``max_wait`` seconds.
    A longer wait (a revoke after a long ``maxOverlap``, a distant retry) returns the run as persisted: it
    resumes from its record (the controller, or ``workflow.resume``). ``on_step`` sees the run before each step
    (a progress display: the stage about to run or wait; runs hold no value)."""
    for _ in range(wf.MAX_STEPS):
        if run.finished and run.ledger_seq is not None:
            return run
        if on_step is not None:
            on_step(run)
        after = wf.advance(run, deps)
        if after == run:
            at = wf.wake_at(run)
            if at is None:  # pragma: no cover - a run that neither waits nor acts
                return run
            delay = (at - deps.clock.now()).total_seconds()
            if delay > max_wait:
                return run
            # past its time, a revoke waits for follower clusters' acknowledgements: look again a little later
            deps.clock.sleep(max(delay, wf.ACK_POLL_SECONDS if clusters.AWAITING_NOTE in run.notes else 0.0))
        run = after
    return run


def run_report(run: RotationRun, propagation: TimedPropagation | None = None) -> dict[str, Any]:
    """What ``rotate`` prints about one run: ids, stages, versions, timings. Never a value (runs hold none)."""
    out: dict[str, Any] = {
        "secret": run.secret,
        "path": run.vault.full,
        "run": run.run_id,
        "trigger": run.trigger,
        "mode": run.mode,
        "reason": run.reason,
        "stage": run.stage,
        "ok": run.succeeded,
        "finished": run.finished,
        "previousVersion": run.previous_version,
        "version": run.current_version,
        "rotatedKeys": list(run.rotated_keys),
        "revokeAt": _iso(run.revoke_at),
        "error": run.last_error,
        "ledgerSeq": run.ledger_seq,
        "propagationSeconds": None if propagation is None or propagation.seconds is None
        else round(propagation.seconds, 3),
        "workloadsRestarted": list(propagation.restarted) if propagation is not None else [],
        "workloadsLeftToReloader": list(propagation.left_to_reloader) if propagation is not None else [],
    }
    return out


# --------------------------------------------------------------------------------------------------- status


def _iso(t: datetime | None) -> str | None:
    return rfc3339(t) if t is not None else None


def last_changed(custom: Mapping[str, str]) -> datetime | None:
    """When the secret last got a value chamberlain knows of: its last rotation, else its creation or handover
    (from the secret's custom_metadata; None when it carries neither)."""
    return (parse_rfc3339(custom.get(wk.LAST_ROTATED)) or parse_rfc3339(custom.get(wk.CREATED_AT))
            or parse_rfc3339(custom.get(wk.HANDED_OVER_AT)))


def consumer_sync(kube: KubePropagation | None, intent: SecretIntent, marker: str,
                  custom: Mapping[str, str] | None = None,
                  templated: Sequence[tuple[SecretIntent, Consumer]] = ()) -> list[dict[str, Any]]:
    """Per consumer Secret: whether its version-marker annotation (a templated consumer's part annotation) equals
    ``marker`` (annotations only), or, with the secret's ``custom`` metadata, is the v1 marker of the same Vault
    version (:func:`same_version`)."""
    rows: list[dict[str, Any]] = []
    for c in consumers_of(intent, templated):
        row: dict[str, Any] = {"namespace": c.secret.namespace, "secret": c.secret.name}
        if kube is None:
            row.update({"exists": None, "inSync": None})
        else:
            try:
                annotations = kube.get_secret_annotations(c.secret.namespace, c.secret.name)
            except KubeError as exc:
                row.update({"exists": None, "inSync": None, "error": type(exc).__name__})
            else:
                legacy = annotations is not None and custom is not None and same_version(
                    annotations.get(c.secret.annotation), custom)
                row.update({"exists": annotations is not None,
                            "inSync": in_sync(annotations, marker, c.secret.annotation) or legacy})
        rows.append(row)
    return rows


def _authority(meta: SecretMetadata | None, custom: Mapping[str, str]) -> str:
    """Who holds the value: chamberlain's record, else ``producer`` when ESO's PushSecret wrote it (§5a)."""
    if custom.get(wk.AUTHORITY):
        return custom[wk.AUTHORITY]
    if meta is None:
        return "none"
    return "producer" if custom.get(wk.ESO_PUSH_MANAGED_BY) == wk.ESO_PUSH_MANAGER else "unknown"


def secret_status(kv: KV, ledger: LedgerReader, kube: KubePropagation | None, placed: Placed, now: datetime,
                  git_policy: RotationPolicySpec | None = None,
                  templated: Sequence[tuple[SecretIntent, Consumer]] = ()) -> dict[str, Any]:
    """The status of one placed secret: authority, version, last rotation, next due, held, consumers in sync
    (with ``templated``: the templated consumers of other intents that read it, by their part annotation)."""
    intent = placed.intent
    meta = kv.read_metadata(placed.vault.mount, placed.vault.path)
    custom: Mapping[str, str] = meta.custom if meta is not None else {}
    policy = from_metadata(custom)
    held = custom.get(wk.HELD) == "true"
    rotations = [e for e in ledger.for_secret(intent.metadata.name) if e.event == "rotation"
                 and e.path == placed.vault.full]
    last_entry = rotations[-1] if rotations else None
    # A derived or config secret has no run record: ESO writes its internal path, and the orchestrator may read
    # only that mount's metadata (a read of the run record's path there would be refused, failing the report).
    run_row: dict[str, Any] | None = None
    try:
        if meta is not None and intent.spec.source.publication is None:
            last_run = runs.load(kv, placed.vault)
            if last_run is not None:
                stage = runs.shown_stage(last_run, meta.current_version, custom)
                run_row = {"id": last_run.run_id, "stage": stage, "finished": last_run.finished}
    except runs.RunUnreadable as exc:  # this secret's row says so; the report goes on
        run_row = {"unreadable": str(exc)[:200]}
    last_rotated = parse_rfc3339(custom.get(wk.LAST_ROTATED))
    since = last_changed(custom) or (parse_rfc3339(last_entry.time) if last_entry else None)
    decision = due(policy, since, now, held=held) if since is not None else None
    marker = custom.get(wk.VALUE_MARKER, "")
    result_field = custom.get(wk.LAST_RESULT, "")
    return {
        "secret": intent.metadata.name,
        "environment": placed.environment,
        "cluster": placed.cluster,
        "path": placed.vault.full,
        "classification": intent.spec.classification,
        "authority": _authority(meta, custom),
        "exists": meta is not None,
        "version": meta.current_version if meta is not None else None,
        "policy": policy.type if policy is not None else (git_policy.type if git_policy else None),
        "policyInForce": policy is not None,
        "lastRotation": None if last_rotated is None and last_entry is None else {
            "at": _iso(last_rotated) or (last_entry.time if last_entry else None),
            "reason": custom.get(wk.LAST_REASON) or (last_entry.reason if last_entry else None),
            "run": custom.get(wk.LAST_RUN) or (last_entry.run if last_entry else None),
            "result": result_field.rpartition(":")[2] or (last_entry.result if last_entry else None),
            "ledgerSeq": last_entry.seq if last_entry else None,
        },
        "run": run_row,
        "nextDue": _iso(decision.next_due) if decision is not None else None,
        "due": decision.due if decision is not None else False,
        "dueReason": decision.reason if decision is not None else ("no-secret" if meta is None else "no-history"),
        "held": held,
        "consumers": consumer_sync(kube, intent, marker, custom, templated),
    }


def pick(intents: Sequence[SecretIntent], names: Sequence[str]) -> list[SecretIntent]:
    by_name = {i.metadata.name: i for i in intents}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise UsageError(f"unknown secret(s): {', '.join(missing)}")
    return [by_name[n] for n in names]


__all__ = [
    "Placed",
    "TemplatedIndex",
    "TimedPropagation",
    "VaultAdmin",
    "admin_source",
    "build_deps",
    "consumer_sync",
    "consumers_of",
    "drive",
    "last_changed",
    "pick",
    "place",
    "placed_consumers",
    "run_report",
    "secret_status",
    "templated_index",
]
