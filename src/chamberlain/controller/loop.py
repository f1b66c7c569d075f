"""The controller loop: triggers in, durable runs forward, one tick at a time, only while leader.

One :meth:`Controller.tick`:

1. leader election (:mod:`.leader`); a follower drops what it drove and does nothing else;
2. the Vault session is renewed when half its lifetime has passed (never a login per reconcile, ESO #1273);
3. on becoming leader, unfinished runs recorded in Vault are adopted (a crashed or stopped leader's runs resume);
4. the time trigger evaluates the policy in force of every secret in scope (every ``evaluate_every`` seconds) and
   the annotation trigger polls the SecretIntents; both, like the webhook and the CLI, only put requests in the
   queue;
5. queued requests start runs (a ``time`` request is checked again against fresh metadata first, so a window
   rotates exactly once even when a request waited behind a running rotation);
6. runs advance in three passes so one tick is one batch: every run up to *promoted*; every promoted run's
   ExternalSecrets are poked at once (so ESO refreshes them in parallel, not one wait after another); every run up
   to *propagated*; then the rest, with one restart wave — a workload fed by several secrets of the batch rolls
   once (Reloader #220, VSO #644).

The loop holds no value: values live inside one workflow step. Everything it acts through is injected, so unit
tests drive it with fakes and a fake clock; ``chamberlain controller run`` wires the real clients.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from chamberlain import wellknown as wk
from chamberlain.authority.errors import AuthorityError, AuthorityUnavailable
from chamberlain.authority.kv import KV
from chamberlain.clock import Clock
from chamberlain.controller.leader import LeaderElector
from chamberlain.controller.ledger import SharedLedger
from chamberlain.controller.metrics import ControllerMetrics
from chamberlain.controller.resources import RunPublisher
from chamberlain.errors import ChamberlainError, UsageError
from chamberlain.intent.model import Platform, SecretIntent
from chamberlain.kube.api import KubeError, KubePropagation
from chamberlain.propagation import WorkloadRef, plan_restarts, restart
from chamberlain.propagation.restart import Change
from chamberlain.rotation import manual as rm
from chamberlain.rotation import run as runs
from chamberlain.rotation import workflow as wf
from chamberlain.rotation.policy import due, from_metadata
from chamberlain.rotation.rotators import Registry
from chamberlain.rotation.rotators.base import CertificateIssuer
from chamberlain.rotation.run import PROMOTED_OR_LATER, RotationRun, RunActive
from chamberlain.triggers import AnnotationTrigger, MemoryQueue, RequestQueue, RotationRequest, SecretSchedule
from chamberlain.triggers.timer import evaluate

PROPAGATED_OR_LATER = PROMOTED_OR_LATER - {"promoted"}


class Logger(Protocol):
    def info(self, event: str, **kw: Any) -> Any: ...

    def warning(self, event: str, **kw: Any) -> Any: ...


class _Silent:
    def info(self, event: str, **kw: Any) -> None:
        return None

    def warning(self, event: str, **kw: Any) -> None:
        return None


# --------------------------------------------------------------------------------------------------- scope


@dataclass(frozen=True)
class Scope:
    """The secrets one controller acts on: every intent placed in its cluster and environment."""

    platform: Platform
    intents: Mapping[str, SecretIntent]
    environment: str
    cluster: str
    placed: Mapping[str, rm.Placed]

    def knows(self, secret: str) -> bool:
        return secret in self.placed


def scope_of(platform: Platform, intents: Mapping[str, SecretIntent], environment: str, cluster: str) -> Scope:
    """Place every intent in ``environment``/``cluster``; intents not placed there are out of scope, and so are
    derived and config intents: their producers publish them (PushSecret) into the internal mounts, which the
    orchestrator neither reads nor rotates."""
    placed: dict[str, rm.Placed] = {}
    runtime = platform.spec.authority.mounts.runtime
    for name, intent in intents.items():
        try:
            p = rm.place(platform, intent, environment, cluster)
        except UsageError:
            continue
        if p.vault.mount == runtime:
            placed[name] = p
    return Scope(platform, intents, environment, cluster, placed)


def schedule_of(name: str, custom: Mapping[str, str]) -> SecretSchedule | None:
    """What the time trigger needs, from the secret's custom_metadata; None without a known last change."""
    since = rm.last_changed(custom)
    if since is None:
        return None
    return SecretSchedule(name, from_metadata(custom), since, held=custom.get(wk.HELD) == "true")


# --------------------------------------------------------------------------------------------------- restarts


@dataclass
class RestartWave:
    """The restarts of one batch: each workload rolls once, under one token shared by the batch's runs."""

    kube: KubePropagation
    clock: Clock
    token: str = ""
    rolled: set[WorkloadRef] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)  # runs of a batch restart from worker threads

    def begin(self, run_ids: list[str]) -> None:
        # Derived from the runs (not random), so a batch resumed after a crash reuses its token: no second roll.
        if len(run_ids) == 1:
            self.token = run_ids[0]
        else:
            self.token = "batch-" + hashlib.sha256(",".join(sorted(run_ids)).encode()).hexdigest()[:16]
        self.rolled = set()

    def restart(self, change: Change) -> list[str]:
        out = []
        with self.lock:
            for w in sorted(plan_restarts([change])):
                if w in self.rolled:
                    continue
                if restart(self.kube, w, self.token, self.clock) == "restarted":
                    out.append(f"{w.kind}/{w.namespace}/{w.name}")
                self.rolled.add(w)
        return out


@dataclass
class BatchedPropagation:
    """The workflow's :class:`~chamberlain.rotation.workflow.Propagation` for one run inside a batch: refresh and
    wait as usual (timed), restarts through the batch's wave."""

    timed: rm.TimedPropagation
    wave: RestartWave
    change: Change
    refreshed: set[str] = field(default_factory=set)

    def refresh(self, token: str) -> None:
        if token in self.refreshed:  # the batch already poked these ExternalSecrets with this token
            return
        self.timed.refresh(token)
        self.refreshed.add(token)

    def wait(self, marker: str) -> None:
        self.timed.wait(marker)

    def restart(self, token: str) -> list[str]:
        if not self.wave.token:
            self.wave.begin([token])
        rolled = self.wave.restart(self.change)
        self.timed.restarted.extend(rolled)
        return rolled


# --------------------------------------------------------------------------------------------------- controller


@dataclass
class Active:
    """A run this replica drives."""

    placed: rm.Placed
    run: RotationRun
    deps: wf.RotationDeps
    timing: rm.TimedPropagation
    request: RotationRequest | None
    started: float
    interrupted: str | None = None  # the authority became unreachable during this run (nothing could be saved)


@dataclass
class Controller:
    scope: Scope
    kv: KV
    kube: KubePropagation
    clock: Clock
    metrics: ControllerMetrics = field(default_factory=ControllerMetrics)
    queue: RequestQueue = field(default_factory=MemoryQueue)
    elector: LeaderElector | None = None
    publisher: RunPublisher | None = None
    annotations: AnnotationTrigger | None = None
    registry: Registry | None = None
    actor: str = "chamberlain-controller"
    propagation_timeout: float = 120.0
    poll: float = 0.5
    evaluate_every: float = 30.0
    refresh_session: Callable[[], None] = lambda: None
    new_run_id: Callable[[], str] = field(default_factory=lambda: lambda: f"run-{uuid.uuid4().hex[:12]}")
    rng: wf.RandomSource = field(default_factory=random.SystemRandom)
    log: Logger = field(default_factory=_Silent)
    active: dict[str, Active] = field(default_factory=dict)
    deferred: dict[str, RotationRequest] = field(default_factory=dict)
    finished: list[RotationRun] = field(default_factory=list)  # what this replica finished, newest last
    pki: CertificateIssuer | None = None  # for x509-vault-pki intents
    workers: int = 1  # runs advanced in parallel (Vault and API calls are I/O; `wire` uses 8)
    wake: threading.Event = field(default_factory=threading.Event)  # set by a new request: tick now
    outages: int = 0  # consecutive ticks the authority could not be reached
    _dirty: dict[str, RotationRun] = field(default_factory=dict)
    _ledger: SharedLedger | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _leader: bool = False
    _adopted: bool = False
    _last_evaluation: float | None = None
    _wave: RestartWave | None = None

    # ------------------------------------------------------------------------------------------- tick

    def tick(self) -> bool:
        """One pass of the loop; returns whether this replica was leader (and so acted)."""
        leader = self.elector.step() if self.elector is not None else True
        if leader != self._leader:
            self.log.info("leadership", leader=leader)
            if not leader:  # stop driving at once; the new leader adopts the runs from their records
                self.active.clear()
                self.deferred.clear()
                self._adopted = False
        self._leader = leader
        self.metrics.leader.set(1 if leader else 0)
        if not leader:
            return False
        try:
            self.refresh_session()
            if not self._adopted:
                self._adopt()
            self._evaluate()
            self._poll_annotations()
            self._start_requested()
            self._drive()
        except AuthorityError as exc:  # Vault unreachable or sealed: nothing moves; runs resume next tick
            self.outages += 1
            for a in self.active.values():  # every run in flight lived through the outage: its policy decides
                if a.interrupted is None and not a.run.finished:
                    a.interrupted = runs.clean_error(exc)
            self.log.warning("authority unavailable; retrying", error=type(exc).__name__, detail=str(exc)[:200],
                             consecutive=self.outages)
        else:
            self.outages = 0
        self._flush()
        self.metrics.active_runs.set(len(self.active))
        return True

    def pause(self, interval: float) -> float:
        """Seconds to wait before the next tick: ``interval``, backing off exponentially with jitter while the
        authority is unreachable (a fleet of controllers must not hammer a recovering Vault in step)."""
        if self.outages == 0:
            return interval
        nominal = min(interval * 2 ** min(self.outages, 10), 30.0)
        return float(nominal / 2 + self.rng.random() * nominal / 2)

    def serve(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Tick until ``stop`` is set; then give up the Lease (graceful shutdown: the current tick finishes, runs
        stay recorded in Vault and the next leader resumes them)."""
        try:
            while not stop.is_set():
                try:
                    self.tick()
                except ChamberlainError as exc:  # our messages carry no values
                    self.log.warning("tick failed", error=type(exc).__name__, detail=str(exc)[:200])
                except KubeError as exc:  # pragma: no cover - KubeError is a ChamberlainError
                    self.log.warning("tick failed", error=type(exc).__name__)
                self.wake.wait(self.pause(interval))
                self.wake.clear()
        finally:
            if self.elector is not None:
                self.elector.release()
            self.metrics.leader.set(0)
            self.log.info("stopped", active=len(self.active))

    # ------------------------------------------------------------------------------------------- intake

    def _adopt(self) -> None:
        for name, placed in self.scope.placed.items():
            if name in self.active:
                continue
            run = runs.load(self.kv, placed.vault)
            if run is None or (run.finished and run.ledger_seq is not None):
                continue
            self._track(placed, run, None)
            self.log.info("adopted run", secret=name, run=run.run_id, stage=run.stage)
        self._adopted = True

    def _evaluate(self) -> None:
        mono = self.clock.monotonic()
        if self._last_evaluation is not None and mono - self._last_evaluation < self.evaluate_every:
            return
        self._last_evaluation = mono
        now = self.clock.now()
        schedules = []
        for name, placed in self.scope.placed.items():
            meta = self.kv.read_metadata(placed.vault.mount, placed.vault.path)
            if meta is None:
                continue
            s = schedule_of(name, meta.custom)
            labels = (name, placed.vault.full)
            self.metrics.held.labels(*labels).set(1 if meta.custom.get(wk.HELD) == "true" else 0)
            if s is None:
                continue
            schedules.append(s)
            self.metrics.secret_age.labels(*labels).set(max((now - s.last_rotated).total_seconds(), 0.0))
            decision = due(s.policy, s.last_rotated, now, held=s.held)
            if decision.next_due is not None:
                self.metrics.next_due.labels(*labels).set(decision.next_due.timestamp())
        for request in evaluate(schedules, now):
            self._enqueue(request)

    def _poll_annotations(self) -> None:
        if self.annotations is None:
            return
        try:
            for request in self.annotations.poll():
                self.metrics.requests.labels(request.kind, "queued").inc()
        except KubeError as exc:
            self.log.warning("annotation poll failed", error=type(exc).__name__)

    def _enqueue(self, request: RotationRequest) -> None:
        outcome = self.queue.put(request)
        self.metrics.requests.labels(request.kind, outcome).inc()
        self.wake.set()
        if outcome == "queued":
            self.log.info("rotation requested", secret=request.secret, trigger=request.kind,
                          request=request.request_id)

    def _start_requested(self) -> None:
        requests = []
        while (request := self.queue.take(timeout=0)) is not None:
            requests.append(request)
        self._each(self._begin, requests)  # one queue entry per secret: the starts are independent

    def _still_due(self, placed: rm.Placed) -> bool:
        meta = self.kv.read_metadata(placed.vault.mount, placed.vault.path)
        s = schedule_of(placed.name, meta.custom) if meta is not None else None
        return s is not None and due(s.policy, s.last_rotated, self.clock.now(), held=s.held).due

    def _begin(self, request: RotationRequest) -> None:
        placed = self.scope.placed.get(request.secret)
        if placed is None:
            self.log.warning("request for a secret out of scope", secret=request.secret, trigger=request.kind)
            self._end_request(request, cleared=True)
            return
        if request.secret in self.active:  # a run (adopted, or still finishing) holds the secret: after it
            self.deferred[request.secret] = request
            return
        if request.kind == "time" and not self._still_due(placed):
            self.metrics.requests.labels("time", "stale").inc()
            self._end_request(request)
            return
        try:
            deps, timing = self._deps(placed)
            run = wf.start(self.kv, placed.vault, secret=placed.name, run_id=self.new_run_id(),
                           trigger=request.kind, reason=request.reason, now=self.clock.now())
        except RunActive:
            existing = runs.load(self.kv, placed.vault)
            if existing is not None and not existing.finished:
                self._track(placed, existing, None)
                self.deferred[request.secret] = request
            else:  # pragma: no cover - the lease was released between the two reads
                self._end_request(request)
            return
        except wf.SecretHeld as exc:
            self.log.warning("secret is held; request dropped", secret=placed.name, trigger=request.kind,
                             detail=str(exc))
            self._end_request(request, cleared=True)
            return
        except AuthorityUnavailable:
            # Vault unreachable or sealed: the request must survive the outage. Back in line; stop this tick.
            self.queue.done(request.secret)
            self.queue.put(request)
            raise
        except (AuthorityError, UsageError) as exc:  # not found, forbidden, ...: this request cannot run
            self.log.warning("cannot start a rotation", secret=placed.name, error=type(exc).__name__,
                             detail=str(exc)[:200])
            self._end_request(request, cleared=True)
            return
        self.active[placed.name] = Active(placed, run, deps, timing, request, self.clock.monotonic())
        self._publish(run)
        self.log.info("run started", secret=placed.name, run=run.run_id, trigger=run.trigger)

    def _deps(self, placed: rm.Placed) -> tuple[wf.RotationDeps, rm.TimedPropagation]:
        deps, timing = rm.build_deps(self.kv, self.kube, self.scope.platform, self.scope.intents, placed,
                                     actor=self.actor, registry=self.registry, clock=self.clock,
                                     timeout=self.propagation_timeout, poll=self.poll, pki=self.pki)
        change = Change(placed.name, tuple((c.secret, c.workloads) for c in rm.consumers_of(placed.intent)))

        def on_alert(run: RotationRun) -> None:
            self.metrics.alerts.labels(run.secret).inc()
            if self.publisher is not None:
                self.publisher.event(run, "RotationFailed", f"{run.secret}: {run.last_error or run.stage}",
                                     warning=True)

        propagation = BatchedPropagation(timing, self._wave_for(), change)
        return replace(deps, propagation=propagation, on_alert=on_alert, rng=self.rng,
                       ledger=self._shared_ledger()), timing

    def _shared_ledger(self) -> SharedLedger:
        with self._lock:
            if self._ledger is None:
                self._ledger = SharedLedger(self.kv, self.scope.platform.spec.authority.mounts.runtime, self.clock)
            return self._ledger

    def _wave_for(self) -> RestartWave:
        if self._wave is None:
            self._wave = RestartWave(self.kube, self.clock)
        return self._wave

    def _track(self, placed: rm.Placed, run: RotationRun, request: RotationRequest | None) -> None:
        try:
            deps, timing = self._deps(placed)
        except (ChamberlainError, KubeError) as exc:
            self.log.warning("cannot resume a run", secret=placed.name, run=run.run_id, error=type(exc).__name__)
            return
        self.active[placed.name] = Active(placed, run, deps, timing, request, self.clock.monotonic())

    # ------------------------------------------------------------------------------------------- drive

    def _drive(self) -> None:
        self._advance_all(lambda r: r.stage in PROMOTED_OR_LATER)
        promoted = [a for a in self.active.values() if a.run.stage == "promoted" and a.run.next_retry_at is None]
        self._each(self._poke, promoted)  # one poke per ExternalSecret, all before anyone waits
        self._advance_all(lambda r: r.stage in PROPAGATED_OR_LATER)
        ready = [a.run.run_id for a in self.active.values() if a.run.stage == "propagated"]
        if ready:
            self._wave_for().begin(ready)
        self._advance_all(lambda r: False)
        for name in [n for n, a in self.active.items() if a.run.finished and a.run.ledger_seq is not None]:
            self._complete(self.active.pop(name))

    @staticmethod
    def _poke(a: Active) -> None:
        with contextlib.suppress(KubeError):  # the propagate step itself retries under the failure strategy
            a.deps.propagation.refresh(f"{a.run.run_id}.{a.run.attempts}")

    def _each(self, fn: Callable[[Any], object], items: list[Any]) -> None:
        """``fn`` on every item, on the worker threads; the first error is raised once all are done."""
        if self.workers <= 1 or len(items) <= 1:
            for item in items:
                fn(item)
            return
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="chamberlain-run") as pool:
            futures = [pool.submit(fn, item) for item in items]
        errors = [e for f in futures if (e := f.exception()) is not None]
        if errors:
            raise errors[0]

    def _advance_all(self, goal: Callable[[RotationRun], bool]) -> None:
        # Independent runs (one per secret, each with its own lease) advance side by side.
        self._each(lambda a: self._advance(a, goal), list(self.active.values()))

    def _advance(self, a: Active, goal: Callable[[RotationRun], bool]) -> None:
        for _ in range(wf.MAX_STEPS):
            if (a.run.finished and a.run.ledger_seq is not None) or goal(a.run):
                return
            if a.interrupted is not None and not a.run.finished and a.run.failure_strategy != "retry":
                self._stop_after_outage(a)
                continue
            try:
                after = wf.advance(a.run, a.deps)
            except wf.RunLost:
                self.log.warning("run taken over by another executor", secret=a.placed.name, run=a.run.run_id)
                with self._lock:
                    self.active.pop(a.placed.name, None)
                return
            except AuthorityError as exc:
                # Vault itself is unreachable: the failure cannot even be recorded. The tick stops here; once
                # Vault answers again the run's failureStrategy decides (retry resumes, alert/hold stop it).
                if a.interrupted is None:
                    a.interrupted = runs.clean_error(exc)
                raise
            a.interrupted = None
            if after == a.run:
                return  # waiting (a retry, or maxOverlap before the revoke)
            a.run = after
            self._publish(after)
            self.log.info("run step", secret=after.secret, run=after.run_id, stage=after.stage,
                          attempts=after.attempts, error=after.last_error)

    def _stop_after_outage(self, a: Active) -> None:
        """failureStrategy alert/hold after an authority outage interrupted the run: end it as failed or held
        (recorded now that Vault answers); the finalize step then marks the secret held, alerts and ledgers."""
        stage: runs.Stage = "held" if a.run.failure_strategy == "hold" else "failed"
        now = self.clock.now()
        ended = a.run.model_copy(update={"stage": stage, "finished_at": now, "updated_at": now,
                                         "next_retry_at": None, "attempts": a.run.attempts + 1,
                                         "last_error": f"authority unavailable during {a.run.stage}: "
                                                       f"{a.interrupted}"[:runs.MAX_ERROR_CHARS]})
        a.run = runs.save(self.kv, ended)  # raises while Vault is still down: the decision stands for next tick
        a.interrupted = None
        self._publish(a.run)
        self.log.warning("run stopped after an authority outage", secret=a.run.secret, run=a.run.run_id,
                         stage=stage)

    def _complete(self, a: Active) -> None:
        run = a.run
        result = "ok" if run.succeeded else run.stage
        self.metrics.rotations.labels(run.secret, run.trigger, result).inc()
        self.metrics.run_duration.labels(run.trigger).observe(max(self.clock.monotonic() - a.started, 0.0))
        if a.timing.seconds is not None:
            self.metrics.propagation.observe(a.timing.seconds)
        if self.publisher is not None:
            self.publisher.event(run, "RotationSucceeded" if run.succeeded else "RotationFailed",
                                 f"{run.secret}: {run.stage}, version {run.current_version}",
                                 warning=not run.succeeded)
        self.log.info("run finished", secret=run.secret, run=run.run_id, stage=run.stage, ok=run.succeeded,
                      version=run.current_version, propagation_seconds=a.timing.seconds,
                      restarted=a.timing.restarted)
        self.finished.append(run)
        del self.finished[:-1000]
        if a.request is not None:
            self._end_request(a.request, cleared=True)
        elif run.trigger == "annotation" and self.annotations is not None:
            self._clear_annotation(run.secret, None)
        later = self.deferred.pop(run.secret, None)
        if later is not None:
            self._begin(later)

    def _end_request(self, request: RotationRequest, cleared: bool = False) -> None:
        self.queue.done(request.secret)
        if cleared and request.kind == "annotation":
            self._clear_annotation(request.secret, request)

    def _clear_annotation(self, secret: str, request: RotationRequest | None) -> None:
        if self.annotations is None:
            return
        try:
            self.annotations.clear_annotation(secret, request)
        except KubeError as exc:
            self.log.warning("could not clear the rotate annotation", secret=secret, error=type(exc).__name__)

    def _publish(self, run: RotationRun) -> None:
        """Note the run's new state; :meth:`_flush` publishes each changed run once per tick (a RotationRun
        patch per stage of every run of a big batch would cost more than the rotations themselves)."""
        if self.publisher is not None:
            with self._lock:
                self._dirty[run.run_id] = run

    def _flush(self) -> None:
        if self.publisher is None:
            return
        with self._lock:
            dirty, self._dirty = list(self._dirty.values()), {}
        publish = self.publisher.publish
        self._each(publish, dirty)

    # ------------------------------------------------------------------------------------------- triggers

    def request(self, request: RotationRequest) -> None:
        """Queue a request from outside the loop (the webhook server calls the queue directly)."""
        self._enqueue(request)

    def now(self) -> datetime:
        return self.clock.now()

    @property
    def is_leader(self) -> bool:
        return self._leader


__all__ = ["Active", "BatchedPropagation", "Controller", "RestartWave", "Scope", "schedule_of", "scope_of"]
