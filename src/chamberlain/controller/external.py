"""The controller's side of an observed external rotation: watch the PushSecrets, follow each new authority version
to every consumer, restart once, record it (decisions in :mod:`chamberlain.rotation.external`).

Each tick of the leader, :meth:`ExternalRotations.step` looks at the published (derived, config) intents of its
cluster that may have changed: those a PushSecret watch event named (ESO updates the status after every push and
every refresh), those whose burst of pushes is settling or whose run is in flight, and all of them every
``resync`` seconds (a watch that missed an event). For each it reads the internal path's *metadata* (never the
value: the orchestrator may not read it), decides, and acts:

1. ``start``: a run id, the version's keyed marker merged into the custom_metadata (ESO's ``managed-by`` kept),
   the record saved (the run is resumable from here), every consumer ExternalSecret force-synced;
2. the following ticks check the consumer Secrets' marker annotations (a poke ESO missed is repeated every
   ``repoke`` seconds); once all carry it, the declared workloads of every run ready in this tick roll in one
   restart wave (each workload once, the run id as the restart token: a resumed run never rolls twice);
3. a ledger entry ``rotation`` (``details.trigger: external``, the producer, the PushSecret, the versions), the
   record closed, the ``RotationRun`` (trigger ``external``) published done.

``hold`` (the producer Secret lacks a declared key, as ESO reports): nothing is marked, refreshed or restarted, so
consumers keep their last good value; the SecretIntent gets ``Held`` (reason ``ProducerKeyMissing``, naming the key
and the Secret), and a new version pushed meanwhile (a partial push) is recorded once as a held ``RotationRun`` and
a failed ledger entry. The SecretIntent status of a published intent is written here (the status reporter covers
the runtime intents only).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from chamberlain.authority.errors import AuthorityError, AuthorityUnavailable
from chamberlain.authority.kv import KV
from chamberlain.clock import Clock, parse_rfc3339, rfc3339
from chamberlain.controller.batch import RestartWave, batch_token
from chamberlain.controller.collaborators import Logger, Silent
from chamberlain.controller.metrics import ControllerMetrics
from chamberlain.controller.resources import RunPublisher
from chamberlain.controller.scope import Scope
from chamberlain.controller.status import INTENT_OBJECTS, StatusWriter
from chamberlain.errors import ChamberlainError
from chamberlain.intent.model import PublicationSource
from chamberlain.intent.paths import VaultPath
from chamberlain.kube.api import (
    CustomResource,
    KubeCustomObjects,
    KubeError,
    KubeGone,
    KubePropagation,
    KubeRunObjects,
    WatchEvent,
)
from chamberlain.propagation import Change, force_refresh
from chamberlain.propagation.sync import in_sync
from chamberlain.render import naming
from chamberlain.rotation import external as ext
from chamberlain.rotation import manual as rm
from chamberlain.rotation import workflow as wf
from chamberlain.rotation.run import RotationRun, Stage
from chamberlain.values.markers import Markers

PUSH_SECRETS = CustomResource("external-secrets.io", "v1alpha1", "pushsecrets")
# the record's stage -> the RotationRun phase it is published as
_PHASES: dict[str, Stage] = {"started": "promoted", "refreshed": "promoted", "propagated": "propagated",
                             "restarted": "restarted", "done": "done"}


class ExternalKube(KubePropagation, KubeCustomObjects, KubeRunObjects, Protocol):
    """Consumers and workloads, PushSecrets, RotationRuns and SecretIntent status."""


@runtime_checkable
class WatchKube(Protocol):
    def list_custom_objects_versioned(self, resource: CustomResource, namespace: str, *, limit: int = 500,
                                      page: str = "") -> Any: ...

    def watch_custom_objects(self, resource: CustomResource, namespace: str, resource_version: str,
                             timeout_seconds: int) -> Iterator[WatchEvent]: ...


@dataclass
class PushSecretWatch:
    """List-then-watch of the PushSecrets of each producer namespace (one daemon thread per namespace): their
    status by (namespace, name), and ``on_change(namespace, name)`` for each event."""

    kube: WatchKube
    on_change: Callable[[str, str], None]
    log: Logger = field(default_factory=Silent)
    retry: float = 5.0
    watch_seconds: int = 240
    stop_event: threading.Event = field(default_factory=threading.Event)
    _states: dict[tuple[str, str], ext.PushState] = field(default_factory=dict)
    _threads: dict[str, threading.Thread] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def state(self, namespace: str, name: str) -> ext.PushState | None:
        with self._lock:
            return self._states.get((namespace, name))

    def watching(self, namespace: str) -> bool:
        return namespace in self._threads

    def ensure(self, namespaces: set[str]) -> None:
        """Start a watch for each namespace not watched yet (a namespace dropped from the scope is harmless)."""
        for ns in sorted(namespaces - set(self._threads)):
            t = threading.Thread(target=self._run, args=(ns,), name=f"chamberlain-pushsecrets-{ns}", daemon=True)
            self._threads[ns] = t
            t.start()

    def stop(self) -> None:
        self.stop_event.set()

    def _put(self, ns: str, obj: Any) -> None:
        state = ext.PushState.of(obj)
        with self._lock:
            self._states[(ns, state.name)] = state
        # every event, even with the same condition: ESO's refresh after a push changes only refreshTime
        self.on_change(ns, state.name)

    def _run(self, ns: str) -> None:
        version = ""
        while not self.stop_event.is_set():
            try:
                if not version:
                    page = ""
                    while True:
                        got = self.kube.list_custom_objects_versioned(PUSH_SECRETS, ns, page=page)
                        for obj in got.items:
                            self._put(ns, obj)
                        if not got.next_page:
                            break
                        page = got.next_page
                    version = got.resource_version
                events = 0
                for event in self.kube.watch_custom_objects(PUSH_SECRETS, ns, version, self.watch_seconds):
                    events += 1
                    if self.stop_event.is_set():
                        return
                    if event.type in ("ADDED", "MODIFIED"):
                        self._put(ns, event.object)
                    elif event.type == "DELETED":
                        with self._lock:
                            self._states.pop((ns, event.name), None)
                    if event.resource_version:
                        version = event.resource_version
                if not events:  # a watch that ended at once without news (a fake, a proxy): never spin
                    self.stop_event.wait(1.0)
            except KubeGone:
                version = ""
            except KubeError as exc:
                self.log.warning("cannot watch PushSecrets", namespace=ns, error=type(exc).__name__,
                                 detail=str(exc)[:200])
                version = ""
                self.stop_event.wait(self.retry)


@dataclass(frozen=True)
class Published:
    """A published intent on this controller's cluster: where ESO pushes it and who produces it."""

    placed: rm.Placed
    source: PublicationSource
    push: str  # the PushSecret's name (in the producer namespace)
    consumers: tuple[wf.Consumer, ...] = ()  # its own consumers and the templated ones of other intents reading it

    @property
    def name(self) -> str:
        return self.placed.name

    @property
    def producer(self) -> str:
        return f"{self.source.namespace}/{self.source.secret_name}"


def published_of(scope: Scope) -> dict[str, Published]:
    """The derived and config intents placed in the scope's environment and cluster (the internal mounts)."""
    out: dict[str, Published] = {}
    for name, intent in sorted(scope.intents.items()):
        source = intent.spec.source.publication
        if source is None:
            continue
        try:
            placed = rm.place(scope.platform, intent, scope.environment, scope.cluster)
        except ChamberlainError:
            continue
        if placed.vault.mount == scope.runtime_mount:
            continue
        out[name] = Published(placed, source, naming.publisher_name(scope.environment, name),
                              tuple(rm.placed_consumers(scope.platform, scope.intents, placed)))
    return out


@dataclass
class _Live:
    """The loop's memory of one published intent (not persisted: the record is the truth)."""

    record: ext.ExternalRecord | None = None
    loaded: bool = False
    cas: int = 0
    seen: ext.Seen | None = None
    wait_until: float | None = None
    poked_at: float | None = None
    attempts: int = 0
    held: str | None = None  # the hold message in force (logged and evented once)


@dataclass
class ExternalRotations:
    """Observed external rotations of one controller (the loop thread calls :meth:`step`)."""

    kv: KV
    kube: ExternalKube
    clock: Clock
    markers: Markers
    ledger: Any  # SharedLedger (appends through for_environment)
    namespace: str  # the controller's namespace (RotationRuns, SecretIntent status)
    runtime: str  # the orchestrator's runtime mount (the records)
    actor: str
    new_run_id: Callable[[], str]
    publisher: RunPublisher | None = None
    metrics: ControllerMetrics | None = None  # chamberlain_rotations_total{trigger="external"}
    log: Logger = field(default_factory=Silent)
    quiet: float = ext.DEFAULT_QUIET
    max_settle: float = ext.DEFAULT_MAX_SETTLE
    resync: float = 30.0  # seconds between two looks at every published intent (a watch may miss events)
    repoke: float = 10.0  # seconds before consumers not in sync yet are force-synced again
    watch: PushSecretWatch | None = None  # None: the PushSecret status is read at each look (tests, fakes)
    writer: StatusWriter | None = None
    wave: RestartWave | None = None
    observed: int = 0  # external rotations finished by this process
    _live: dict[str, _Live] = field(default_factory=dict)
    _dirty: set[str] = field(default_factory=set)
    _dirty_lock: threading.Lock = field(default_factory=threading.Lock)
    _resynced_at: float | None = None
    _scope: Scope | None = None
    _published: dict[str, Published] = field(default_factory=dict)
    wake: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        if self.writer is None:
            self.writer = StatusWriter(self.kube, self.namespace)
        if self.wave is None:
            self.wave = RestartWave(self.kube, self.clock)

    # ------------------------------------------------------------------ watch events (any thread)

    def pushed(self, namespace: str, push: str) -> None:
        """A PushSecret changed (watch thread): look at its intent at the next tick, and wake the loop."""
        with self._dirty_lock:
            self._dirty.add(f"{namespace}/{push}")
        if self.wake is not None:
            self.wake()

    # ------------------------------------------------------------------ one pass (loop thread)

    def step(self, scope: Scope) -> None:
        if scope is not self._scope:  # a scope never changes: a new one is swapped in (placing 10k intents costs)
            self._scope, self._published = scope, published_of(scope)
        published = self._published
        if self.watch is not None:
            self.watch.ensure({p.source.namespace for p in published.values()})
        mono = self.clock.monotonic()
        resync = self._resynced_at is None or mono - self._resynced_at >= self.resync
        if resync:
            self._resynced_at = mono
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, set()
        ready: list[tuple[Published, _Live]] = []
        for name, pub in published.items():
            live = self._live.setdefault(name, _Live())
            due = (resync or f"{pub.source.namespace}/{pub.push}" in dirty or not live.loaded
                   or (live.record is not None and live.record.pending > 0)
                   or (live.wait_until is not None and mono >= live.wait_until))
            if not due:
                continue
            try:
                if self._look(pub, live, mono):
                    ready.append((pub, live))
            except AuthorityUnavailable:
                live.loaded = False  # the record is read again (another leader may have moved it meanwhile)
                raise
            except (AuthorityError, ChamberlainError) as exc:  # this intent only; the others go on
                live.loaded = False
                self.log.warning("external rotation: cannot act", secret=name, error=type(exc).__name__,
                                 detail=str(exc)[:200])
        if ready:
            self._restart_and_finish(ready)
        for gone in set(self._live) - set(published):
            del self._live[gone]

    def _push_state(self, pub: Published) -> ext.PushState | None:
        if self.watch is not None and self.watch.watching(pub.source.namespace):
            return self.watch.state(pub.source.namespace, pub.push)
        obj = self.kube.get_custom_object(PUSH_SECRETS, pub.source.namespace, pub.push)
        return ext.PushState.of(obj) if obj is not None else None

    def _load(self, pub: Published, live: _Live) -> None:
        if live.loaded:
            return
        where = self._record_path(pub)
        got = self.kv.read(where.mount, where.path)
        live.record = ext.ExternalRecord.from_data(got.data) if got is not None else None
        live.cas = got.version if got is not None else 0
        live.loaded = True

    def _record_path(self, pub: Published) -> VaultPath:
        return ext.record_path(self.runtime, pub.placed.vault, pub.placed.cluster)

    def _save(self, pub: Published, live: _Live, record: ext.ExternalRecord) -> None:
        where = self._record_path(pub)
        live.cas = self.kv.write(where.mount, where.path, record.to_data(), cas=live.cas)
        live.record = record

    def _look(self, pub: Published, live: _Live, mono: float) -> bool:
        """Decide and act for one intent; True when its run waits only for the restart wave."""
        self._load(pub, live)
        vault = pub.placed.vault
        meta = self.kv.read_metadata(vault.mount, vault.path)
        current = meta.current_version if meta is not None else 0
        custom = dict(meta.custom) if meta is not None else {}
        record = live.record
        if current > 0 and (record is None or current != record.version):
            live.seen = ext.settle(live.seen, current, mono)
        else:
            live.seen = None
        push = self._push_state(pub)
        d = ext.decide(record, current, custom, live.seen, push, pub.source.keys or [], mono,
                       quiet=self.quiet, max_settle=self.max_settle)
        live.wait_until = d.until if d.action == "wait" else None
        if d.action != "hold" and live.held is not None:
            live.held = None
            self.log.info("external rotation: producer fixed, no longer held", secret=pub.name)
        if d.action == "hold":
            self._hold(pub, live, d, current, push)
        elif d.action == "start":
            self._start(pub, live, d, custom)
        elif d.action == "remark" and record is not None:
            self.kv.update_custom_metadata(vault.mount, vault.path, ext.marked_metadata(
                custom, record.marker, record.version, record.run, rfc3339(self.clock.now())))
        ready = False
        if live.record is not None and live.record.pending:
            ready = self._advance(pub, live, custom, mono)
        self._status(pub, live, current)
        return ready

    # ------------------------------------------------------------------ the steps

    def _start(self, pub: Published, live: _Live, d: ext.Decision, custom: dict[str, str]) -> None:
        vault = pub.placed.vault
        run_id = self.new_run_id()
        marker = self.markers.of(vault, ext.marker_input(d.version, run_id))
        before = live.record.version if live.record is not None else 0
        now = rfc3339(self.clock.now())
        record = ext.ExternalRecord(version=before, marker=marker, run=run_id, stage="started", pending=d.version,
                                    held=live.record.held if live.record is not None else 0, restart=d.restart,
                                    started=now)
        self._save(pub, live, record)  # the run exists from here: a crash resumes it
        self.kv.update_custom_metadata(vault.mount, vault.path,
                                       ext.marked_metadata(custom, marker, d.version, run_id, now))
        live.poked_at, live.attempts, live.seen = None, 0, None
        self.log.info("external rotation observed", secret=pub.name, producer=pub.producer, push_secret=pub.push,
                      version=d.version, previous=before, run=run_id, restart=d.restart)
        self._publish(pub, record)

    def _advance(self, pub: Published, live: _Live, custom: dict[str, str], mono: float) -> bool:
        record = live.record
        assert record is not None
        vault = pub.placed.vault
        consumers = pub.consumers
        if record.stage in ("started", "refreshed"):
            if custom.get("value-marker") != record.marker and custom.get("value-version") != str(record.pending):
                # ESO replaced the metadata since (a push): the marker of the version this run brings
                self.kv.update_custom_metadata(vault.mount, vault.path, ext.marked_metadata(
                    custom, record.marker, record.pending, record.run, record.started or rfc3339(self.clock.now())))
            if live.poked_at is None or mono - live.poked_at >= self.repoke:
                live.attempts += 1
                force_refresh(self.kube, [c.external_secret for c in consumers],
                              f"external.{record.run}.{live.attempts}")
                live.poked_at = mono
                if record.stage == "started":
                    record = _with(record, stage="refreshed")
                    self._save(pub, live, record)
            late = [c for c in consumers
                    if not in_sync(self.kube.get_secret_annotations(c.secret.namespace, c.secret.name),
                                   record.marker, c.secret.annotation)]
            if late:
                return False
            record = _with(record, stage="propagated")
            self._save(pub, live, record)
            self._publish(pub, record)
        return record.stage in ("propagated", "restarted")

    def _restart_and_finish(self, ready: list[tuple[Published, _Live]]) -> None:
        """One restart wave for every run ready in this tick (each workload rolls once), then each run ends."""
        assert self.wave is not None
        restarting = [(p, live) for p, live in ready if live.record is not None and live.record.restart
                      and live.record.stage == "propagated"]
        self.wave.begin([live.record.run for _, live in restarting if live.record is not None])
        for pub, live in ready:
            record = live.record
            assert record is not None
            try:
                rolled: tuple[str, ...] = ()
                if record.stage == "propagated":
                    if record.restart:
                        change = Change(pub.name, tuple((c.secret, c.workloads)
                                                        for c in pub.consumers))
                        done = self.wave.restart(change, batch_token([record.run]))
                        rolled = done.rolled
                    record = _with(record, stage="restarted")
                    self._save(pub, live, record)
                self._finish(pub, live, record, rolled)
            except AuthorityUnavailable:
                live.loaded = False
                raise
            except (AuthorityError, ChamberlainError) as exc:
                live.loaded = False
                self.log.warning("external rotation: cannot finish; tried again at the next tick", secret=pub.name,
                                 error=type(exc).__name__, detail=str(exc)[:200])

    def _finish(self, pub: Published, live: _Live, record: ext.ExternalRecord, rolled: tuple[str, ...]) -> None:
        entry = self.ledger.for_environment(pub.placed.environment).append(
            "rotation", actor=self.actor, secret=pub.name, path=pub.placed.vault.full, run=record.run,
            reason=f"external: producer {pub.producer} pushed version {record.pending} (PushSecret {pub.push})",
            details={"trigger": "external", "producer": pub.producer, "pushSecret": pub.push,
                     "version": str(record.pending), "previousVersion": str(record.version),
                     "restarted": ",".join(rolled) if record.restart else "no (first version)"})
        done = ext.ExternalRecord(version=record.pending, marker=record.marker, run=record.run, stage="done",
                                  held=record.held, started=record.started)
        self._save(pub, live, done)
        self._publish(pub, record, finished=done, ledger_seq=entry.seq)
        self.observed += 1
        if self.metrics is not None:
            self.metrics.rotations.labels(pub.name, "external", "ok").inc()
        self.log.info("external rotation done", secret=pub.name, producer=pub.producer, version=record.pending,
                      run=record.run, restarted=list(rolled))

    def _hold(self, pub: Published, live: _Live, d: ext.Decision, current: int,
              push: ext.PushState | None) -> None:
        message = ext.hold_message(d.key or "?", pub.producer, pub.push)
        if live.held != message:
            live.held = message
            self.log.warning("external rotation held", secret=pub.name, producer=pub.producer, key=d.key,
                             push_secret=pub.push)
            with contextlib.suppress(KubeError):  # best effort, as every Event
                self.kube.create_event(self.namespace, {"apiVersion": f"{INTENT_OBJECTS.group}/"
                                                        f"{INTENT_OBJECTS.version}", "kind": "SecretIntent",
                                                        "name": pub.name, "namespace": self.namespace},
                                       ext.HELD_REASON, message, "Warning")
        record = live.record
        handled = record.version if record is not None else 0
        if current <= handled or (record is not None and record.held == current):
            return
        # a version pushed while a declared key is missing (a partial push): recorded once, held
        run_id = self.new_run_id()
        entry = self.ledger.for_environment(pub.placed.environment).append(
            "rotation", actor=self.actor, secret=pub.name, path=pub.placed.vault.full, run=run_id, result="failed",
            reason=f"external: held, {message}",
            details={"trigger": "external", "producer": pub.producer, "pushSecret": pub.push,
                     "version": str(current), "previousVersion": str(handled), "missingKey": d.key or ""})
        held = ext.ExternalRecord(version=handled, marker=record.marker if record else "",
                                  run=record.run if record else "", held=current,
                                  started=record.started if record else "")
        self._save(pub, live, held)
        now = self.clock.now()
        run = RotationRun(run_id=run_id, secret=pub.name, path=pub.placed.vault.path, mount=pub.placed.vault.mount,
                          trigger="external", reason=f"producer {pub.producer} changed", stage="held",
                          started_at=now, updated_at=now, finished_at=now, previous_version=handled,
                          current_version=None, staging_base=0, last_error=message, ledger_seq=entry.seq,
                          notes={"producer": pub.producer, "pushSecret": pub.push, "authorityVersion": str(current)})
        if self.publisher is not None:
            self.publisher.publish(run)
        if self.metrics is not None:
            self.metrics.rotations.labels(pub.name, "external", "held").inc()

    # ------------------------------------------------------------------ mirrors

    def _publish(self, pub: Published, record: ext.ExternalRecord, *, finished: ext.ExternalRecord | None = None,
                 ledger_seq: int | None = None) -> None:
        if self.publisher is None:
            return
        now = self.clock.now()
        started = parse_rfc3339(record.started) if record.started else now
        stage: Stage = "done" if finished is not None else _PHASES.get(record.stage, "promoted")
        run = RotationRun(run_id=record.run, secret=pub.name, path=pub.placed.vault.path,
                          mount=pub.placed.vault.mount, trigger="external",
                          reason=f"producer {pub.producer} changed (PushSecret {pub.push})", stage=stage,
                          started_at=started, updated_at=now, finished_at=now if finished is not None else None,
                          previous_version=record.version, current_version=record.pending, staging_base=0,
                          pending_marker=record.marker, ledger_seq=ledger_seq,
                          notes={"producer": pub.producer, "pushSecret": pub.push,
                                 "restart": "yes" if record.restart else "no (first version)"})
        self.publisher.publish(run)

    def _status(self, pub: Published, live: _Live, current: int) -> None:
        if self.writer is None:
            return
        status = ext.published_status(live.record, current, live.held,
                                      (self.writer.known(pub.name) or {}).get("conditions") or (),
                                      rfc3339(self.clock.now()))
        self.writer.write(pub.name, status)


def _with(record: ext.ExternalRecord, **changes: Any) -> ext.ExternalRecord:
    return ext.ExternalRecord(**{**record.__dict__, **changes})


__all__ = ["PUSH_SECRETS", "ExternalRotations", "Published", "PushSecretWatch", "published_of"]
