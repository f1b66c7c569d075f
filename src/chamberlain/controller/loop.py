"""The controller loop: triggers in, durable runs forward, one tick at a time, only while leader.

The controller is three parts (kopf's and cert-manager's shape): its :class:`~.config.ControllerConfig`
(immutable), its :class:`~.collaborators.Collaborators` (built once: clients, the rotator registry, the one ledger
writer, the publisher, metrics, triggers) and its :class:`~.state.TickState` (mutable, owned by the loop thread;
the lock discipline is written down there). :class:`Controller` holds the three and runs the tick. It decides
nothing about a run: the workflow's pure :func:`~chamberlain.rotation.workflow.next_step` does, from the run, what
Vault holds and whether an authority outage interrupted the run; the loop only carries that fact over.

One :meth:`Controller.tick`:

1. leader election (:mod:`.leader`); a follower drops what it drove and does nothing else;
2. the Vault session is renewed when half its lifetime has passed (never a login per reconcile, ESO #1273);
3. on becoming leader, unfinished runs recorded in Vault are adopted (a crashed or stopped leader's runs resume);
4. the time trigger evaluates the policy in force of every secret in scope (every ``evaluate_every`` seconds, from
   metadata read at a bounded rate: :mod:`.freshness`; a ttl below the Platform's ``limits.minimumTtl`` is
   evaluated as the floor), the annotation trigger polls the
   SecretIntents, and the webhook requests persisted by any replica (RotationRun objects without a status) are
   picked up; all of them, like the CLI, only put requests in the queue;
5. queued requests start runs (a ``time`` request is checked again against fresh metadata first, so a window
   rotates exactly once even when a request waited behind a running rotation; an annotation or manual request is
   refused while the secret's last run started less than ``limits.triggerInterval`` ago, a webhook request was
   checked when a replica accepted it), each new run going on to *promoted* on the worker that started it. A
   persisted webhook request's run takes the request object's name as its run id;
6. runs advance in three passes so one tick is one batch: every run up to *promoted*, each run's ExternalSecrets
   poked the moment it is promoted (ESO syncs while the others still promote; the poke pass after the first pass
   catches any poke that failed), all before anyone waits (not one wait after another); every run up
   to *propagated*; then the rest, with one restart wave — a workload fed by several secrets of the batch rolls
   once (Reloader #220, VSO #644);
7. RotationRun objects: the running controller's publisher (:class:`~.resources.BackgroundPublisher`) is handed
   each new state of a run where it happens and sends it from its own threads, so runs show while the batch
   advances and the tick never waits for the API server; a plain :class:`~.resources.RunPublisher` (tests) publishes
   the runs that changed once each, at the end of the tick.

A controller whose cluster *follows* its environment (another cluster rotates it; :mod:`chamberlain.rotation.clusters`)
adopts, starts and drives no run: step 4 hands each secret's metadata to :mod:`.follow` instead (refresh, wait,
restart once, acknowledge), and step 5 drops every request with a log line naming the rotating cluster. The
rotating cluster's runs wait for those acknowledgements before ``revokeOld`` (the workflow's ``revoke-wait``).

The loop holds no value: values live inside one workflow step (the admin login of a target included). Everything
it acts through is injected, so unit tests drive it with fakes and a fake clock; ``chamberlain controller run``
wires the real clients (:func:`~.app.wire`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TypeVar

from chamberlain import wellknown as wk
from chamberlain.authority.errors import AuthorityError, AuthorityUnavailable
from chamberlain.controller import freshness
from chamberlain.controller.batch import BatchedPropagation, RestartWave, spread_by_workload
from chamberlain.controller.collaborators import Collaborators, Logger
from chamberlain.controller.config import ControllerConfig
from chamberlain.controller.follow import Follower, Pending
from chamberlain.controller.freshness import Reading
from chamberlain.controller.heap import HeapSettler
from chamberlain.controller.resources import BackgroundPublisher
from chamberlain.controller.scope import Scope, schedule_of, scope_of
from chamberlain.controller.state import Active, TickState
from chamberlain.errors import ChamberlainError
from chamberlain.kube.api import KubeError
from chamberlain.propagation import WaitInterrupted, WorkloadRef
from chamberlain.propagation.restart import Change
from chamberlain.rotation import clusters
from chamberlain.rotation import manual as rm
from chamberlain.rotation import run as runs
from chamberlain.rotation import workflow as wf
from chamberlain.rotation.rotators import RotatorError, rotator_name_for
from chamberlain.rotation.run import PROMOTED_OR_LATER, RotationRun, RunActive
from chamberlain.triggers import RotationRequest, SecretSchedule, is_stored
from chamberlain.triggers import limits as floors
from chamberlain.triggers.timer import evaluate, time_due

PROPAGATED_OR_LATER = PROMOTED_OR_LATER - {"promoted"}
ACK_LOOK_EVERY = 5.0  # seconds between two reads of the follower clusters' acknowledgements of a waiting revoke

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Opened:
    """What a worker made of one request (the loop thread applies it): the run to drive, and the request that
    waits for it when the run was another one already holding the secret."""

    active: Active
    started: bool  # a new run (else one found holding the secret's lease)
    deferred: RotationRequest | None = None
    first: RotationRun | None = None  # the run as started (the worker may have advanced it since)
    error: BaseException | None = None  # what stopped the worker advancing it (raised by the loop thread)


def _started(run: RotationRun, request: RotationRequest) -> bool:
    """Whether ``run`` is the one ``request`` started (pure): the run of a persisted webhook request bears its
    name; an annotation's run, the annotation's value as its reason (a value already acted on never triggers
    again: the annotation trigger records its hash)."""
    if is_stored(request.request_id):
        return run.run_id == request.request_id
    return request.kind == "annotation" and run.trigger == "annotation" and run.reason == request.reason


class Controller:
    """The loop over one :class:`~.scope.Scope`; :meth:`tick` is called by :meth:`serve` on the loop thread.

    Other threads use :meth:`request`, :attr:`wake`, :meth:`set_evaluate_every`, :meth:`set_scope`, the read-only
    properties (snapshots, see :mod:`.state`) and the collaborators in :attr:`parts` (queue, clock, metrics,
    publisher)."""

    def __init__(self, scope: Scope, parts: Collaborators, config: ControllerConfig | None = None) -> None:
        self.scope = scope
        self.parts = parts
        self.config = config if config is not None else ControllerConfig()
        self.state = TickState(RestartWave(parts.kube, parts.clock))
        # Another cluster rotates this environment: this controller follows (controller.follow), never rotates.
        self.follower = Follower(parts.kv, parts.kube, parts.clock, self.state.wave, scope.cluster,
                                 self.config.propagation_timeout, self.config.poll, parts.log)
        # templated consumers of other intents follow each part too (the scope of the moment: it may be swapped)
        self.follower.consumers = lambda placed: rm.placed_consumers(self.scope.platform, self.scope.intents, placed)
        self.follower.interrupted = self.stopping
        if parts.status is not None:
            parts.status.templated = lambda placed: rm.templated_index(
                self.scope.platform, self.scope.intents, placed.environment).readers(placed.name)
        self.wake = threading.Event()  # set by any thread (a new request): tick now; cleared by the loop thread
        self.arrived = threading.Event()  # a trigger from another thread since the tick started (nudge)
        self._scope_lock = threading.Lock()
        self._lease_lock = threading.Lock()  # the elector: stepped by the loop thread, and during a tick by _kept_lease
        self._lost_in_tick = False  # _kept_lease saw the Lease lost or let it go (under _lease_lock)
        self.keep_lease_every = 1.0  # seconds between two looks of _kept_lease (a renewal only when due)
        self._steps = 0  # run steps and phases begun (ever): _kept_lease calls a change of it progress
        self.drained_at_stop = False  # serve() spent the publisher's drain time at shutdown (the app gives no more)
        self._stop: threading.Event | None = None  # serve()'s: once set, no run takes a new step (stopping())
        self._restarting = False  # the restart pass of _drive runs (loop thread; read by the workers)
        self._next_scope: Scope | None = None  # set_scope's, swapped in by the loop thread at its next tick
        self.scope_generation = 0  # moves with every scope swapped in
        self._load_rotators(scope)  # a built-in that cannot load stops the start, as a broken plug-in does

    def _load_rotators(self, scope: Scope) -> None:
        """Load the built-in rotators the scope's intents use now rather than at their first rotation (the registry
        loads built-ins on first use, so a fleet without certificates never imports cryptography). A name no
        rotator has is left for the run to refuse, as before."""
        registry = self.parts.registry
        known = set(registry.names())
        for name in sorted({rotator_name_for(p.intent) for p in scope.placed.values()} & known):
            registry.get(name)

    # ------------------------------------------------------------------------------------------- surface

    @property
    def is_leader(self) -> bool:
        return self.state.leader

    @property
    def following(self) -> bool:
        """Whether another cluster of the environment rotates its runtime secrets (rotation.clusters)."""
        return clusters.is_follower(self.scope.platform, self.scope.environment, self.scope.cluster)

    @property
    def outages(self) -> int:
        """Consecutive ticks the authority could not be reached."""
        return self.state.outages

    @property
    def active(self) -> dict[str, Active]:
        """The runs this replica drives, by secret (a copy)."""
        return self.state.snapshot()[0]

    @property
    def finished(self) -> list[RotationRun]:
        """The runs this replica finished, newest last (a copy; the last ``keep_finished``)."""
        return self.state.snapshot()[1]

    @property
    def backlog(self) -> bool:
        """Work a tick left for the next one (a time-trigger pass, status reports), while leader."""
        status = self.parts.status
        return self.state.leader and (bool(self.state.evaluating) or (status is not None and status.backlog))

    @property
    def evaluate_every(self) -> float:
        return self.config.evaluate_every

    def set_evaluate_every(self, seconds: float) -> None:
        """Evaluate the time trigger every ``seconds`` from now on (the demo slows it down after its timed
        rotation). Swaps in a new configuration: one reference, read by the loop thread at its next evaluation."""
        self.config = replace(self.config, evaluate_every=seconds)

    def set_scope(self, scope: Scope) -> None:
        """Act on ``scope`` from the next tick on (any thread; the cluster source calls it after a change). The loop
        thread swaps it in, then evaluates the time trigger over it at once (a new secret is provisioned and a new
        policy brought into force there). Runs in flight for a secret the new scope drops finish with what they
        started with; requests for it are dropped from then on."""
        with self._scope_lock:
            self._next_scope = scope
        self.wake.set()

    def _swap_scope(self) -> None:
        with self._scope_lock:
            scope, self._next_scope = self._next_scope, None
        if scope is not None:
            known = self.state.known
            if scope.platform != self.scope.platform or scope.policies != self.scope.policies:
                known.clear()  # the floor, a named policy or who rotates may have changed: read everything again
            for name, placed in self.scope.placed.items():
                if scope.placed.get(name) != placed:  # changed or gone: its reading is not the policy in force
                    known.pop(name, None)
                if name not in scope.placed:  # out of scope now: its series and status memory go
                    self.parts.metrics.forget_secret(name, placed.vault.full)
                    if self.parts.status is not None:
                        self.parts.status.forget(name)
            self.scope = scope
            self.scope_generation += 1
            try:
                self._load_rotators(scope)
            except RotatorError as exc:  # its runs fail to start with the same error, the others rotate
                self.parts.log.warning("a rotator the scope uses cannot be loaded", error=type(exc).__name__,
                                       detail=str(exc)[:200])
            self.state.last_evaluation, self.state.evaluating = None, []
            if self.parts.status is not None:  # intents refused by in-cluster validation: Degraded, rule ids
                self.parts.status.set_rejected({name: [(f.rule, f.message) for f in findings]
                                                for name, findings in scope.rejected.items()})

    def request(self, request: RotationRequest) -> None:
        """Queue a request from outside the loop (:meth:`request_now` without its outcome)."""
        self.request_now(request)

    def request_now(self, request: RotationRequest) -> str:
        """Queue a request from outside the loop and wake the loop; the queue's outcome (the webhook answers it)."""
        outcome = self._enqueue(request)
        self.nudge()
        return outcome

    def nudge(self) -> None:
        """A trigger arrived from another thread (any thread, after its request is stored where the tick polls
        it): wake the loop, and end the time trigger's and the status report's slice of a tick under way, so the
        request starts in that tick rather than after up to two slices. Only outside triggers: the loop's own
        requests (a due secret, a persisted request polled again) never cut a slice."""
        self.arrived.set()
        self.wake.set()

    def now(self) -> datetime:
        return self.parts.clock.now()

    # ------------------------------------------------------------------------------------------- tick

    def tick(self) -> bool:
        """One pass of the loop; returns whether this replica was leader (and so acted)."""
        self.arrived.clear()  # this tick serves what came before it; what arrives from now on cuts a slice short
        self._swap_scope()
        if not self._lead():
            return False
        with self._kept_lease():
            self._act()
        self._flush()
        self._report()
        self.parts.metrics.active_runs.set(len(self.state.active))
        return True

    def _act(self) -> None:
        """The leader's work of one tick."""
        try:
            self.parts.refresh_session()
            if not self.state.adopted:
                self._adopt()
            self._progressed()
            self._evaluate()
            self._progressed()
            if self.parts.external is not None and not self.stopping():  # a producer pushed a new version
                self.parts.external.step(self.scope)
            self._poll_annotations()
            self._poll_stored()
            self._progressed()
            self._start(self._take_requests())
            self._drive()
        except AuthorityUnavailable as exc:  # Vault unreachable or sealed: nothing moves; runs resume next tick
            self._outage(exc)
        except AuthorityError as exc:  # a refusal (403, 404, ...) is not an outage: no run pays for it
            self.state.outages = 0
            self.parts.log.warning("tick stopped by the authority", error=type(exc).__name__, detail=str(exc)[:200])
        else:
            self.state.outages = 0

    @contextlib.contextmanager
    def _kept_lease(self) -> Iterator[None]:
        """While the tick runs, a thread renews the Lease when due (a third of its duration). One tick drives a whole
        batch, and a batch of 2,000 rotations lasts about a minute against a 15 s Lease: without it, the other
        replica found the Lease expired mid-batch, took it and drove the same runs beside the leader. It decides
        nothing for the tick: a loss it sees is handled at the next tick (:meth:`_lead`), as any loss is.

        It renews only while the tick makes progress (a run step or a phase done): a tick stuck longer than the
        longest step may wait (a consumer wait of ``propagation_timeout``) plus a Lease duration lets the Lease
        go, so the other replica takes over, as it would have without this thread."""
        elector = self.parts.elector
        if elector is None:
            yield
            return
        stop = threading.Event()
        clock = self.parts.clock
        patience = self.config.propagation_timeout + elector.duration_seconds

        def keep() -> None:
            seen, since = self._steps, clock.monotonic()
            while not stop.wait(self.keep_lease_every):
                if self._steps != seen:
                    seen, since = self._steps, clock.monotonic()
                with self._lease_lock:
                    if stop.is_set():
                        return
                    if clock.monotonic() - since > patience:  # stuck: let the Lease go, never renew it again
                        self._lost_in_tick = True
                        return
                    if not elector.step():
                        self._lost_in_tick = True

        keeper = threading.Thread(target=keep, name="chamberlain-lease", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            stop.set()
            # one renewal at most (its requests time out); past a Lease duration the Lease is lost anyway, and a
            # renewal still in flight holds _lease_lock, which the next tick's look and the release wait for
            keeper.join(timeout=self.keep_lease_every + elector.duration_seconds)

    def stopping(self) -> bool:
        """A graceful stop was asked for (``serve``'s event is set): the tick under way ends between run steps
        instead of driving its batch to the end. A 2,000-run batch lasts about a minute, past Kubernetes' 30 s
        grace period; a stop that waited for it ended in SIGKILL. No new run opens and no run takes a new step,
        except one: once the batch's restart pass has begun, its runs still at *propagated* take their restart
        step, so each workload the batch rolls rolls once (a resumed run is in another batch, under another
        token). Every run stays where its last save left it; the next leader adopts it, as after a crash."""
        return self._stop is not None and self._stop.is_set()

    def _may_step(self, run: RotationRun) -> bool:
        """Whether ``run`` may take its next step now (worker thread): always, unless the controller is stopping
        (:meth:`stopping`)."""
        return not self.stopping() or (self._restarting and run.stage == "propagated")

    def _progressed(self) -> None:
        self._steps += 1  # any thread; a lost increment only delays what _kept_lease sees by one step

    def _step_lease(self) -> bool:
        elector = self.parts.elector
        if elector is None:
            return True
        with self._lease_lock:
            return elector.step()

    def _lead(self) -> bool:
        leader = self._step_lease()
        lost, self._lost_in_tick = self._lost_in_tick, False
        if lost and leader and self.state.leader:  # lost during the last tick and taken again since: the other
            # replica may have adopted and moved our runs meanwhile, so ours are stale; adopt again from the records
            self.parts.log.info("leadership lost during the tick and regained")
            self._follow()
        if leader != self.state.leader:
            self.parts.log.info("leadership", leader=leader)
            if not leader:  # stop driving at once; the new leader adopts the runs from their records
                self._follow()
        self.state.leader = leader
        self.parts.metrics.leader.set(1 if leader else 0)
        return leader

    def _follow(self) -> None:
        """Drop every run and request held (the leader adopts the runs from their records)."""
        for request in self.state.follow():
            self.parts.queue.done(request.secret)  # its queue slot, else the secret waits forever
        if isinstance(self.parts.publisher, BackgroundPublisher):  # the leader publishes those runs
            self.parts.publisher.forget_unfinished()

    def _outage(self, exc: AuthorityUnavailable) -> None:
        """Every run in flight lived through the outage: say so to its next step, where its policy decides."""
        self.state.outages += 1
        for a in self.state.active.values():
            if a.outage is None and not a.run.finished:
                a.outage = runs.clean_error(exc)
        self.parts.log.warning("authority unavailable; retrying", error=type(exc).__name__,
                               detail=str(exc)[:200], consecutive=self.state.outages)

    def _refused(self, event: str, secret: str, exc: AuthorityError, **fields: str) -> None:
        self.parts.log.warning(event, secret=secret, error=type(exc).__name__, detail=str(exc)[:200], **fields)

    def pause(self, interval: float) -> float:
        """Seconds to wait before the next tick: ``interval``, backing off exponentially with jitter while the
        authority is unreachable (a fleet of controllers must not hammer a recovering Vault in step)."""
        if self.state.outages == 0:
            return interval
        nominal = min(interval * 2 ** min(self.state.outages, 10), self.config.max_pause)
        return float(nominal / 2 + self.parts.rng.random() * nominal / 2)

    def serve(self, stop: threading.Event, interval: float = 1.0, heap: HeapSettler | None = None) -> None:
        """Tick until ``stop`` is set; then give up the Lease (graceful shutdown: the tick under way stops between
        run steps, see :meth:`stopping`; runs stay recorded in Vault and the next leader resumes them). The thread
        calling this is the loop thread. ``heap``: the controller's own process freezes its settled state out of the
        collector's walk (:mod:`.heap`)."""
        self._stop = stop
        try:
            while not stop.is_set():
                try:
                    self.tick()
                    if heap is not None:
                        heap.after_tick((self.scope_generation, self.state.leader), self.backlog)
                except ChamberlainError as exc:  # our messages carry no values (KubeError included)
                    self.parts.log.warning("tick failed", error=type(exc).__name__, detail=str(exc)[:200])
                except Exception as exc:  # a bug must not end the loop: every other secret still rotates;
                    # a foreign exception's text is unvetted, so only its type is logged
                    self.parts.log.warning("tick failed (internal error)", error=type(exc).__name__)
                self.parts.metrics.heartbeat(self.parts.clock.now().timestamp(), self.state.outages == 0)
                if not self.backlog or self.state.outages:  # a sliced pass goes on at once: the next tick
                    self.wake.wait(self.pause(interval))
                self.wake.clear()
        finally:
            publisher = self.parts.publisher
            if isinstance(publisher, BackgroundPublisher) and self.state.leader:  # while still the leader
                # Unfinished runs are the next leader's to publish (it adopts them): a state of ours sent after the
                # Lease is gone would overwrite its newer one. Final states only this replica knows: sent first.
                publisher.forget_unfinished()
                self.drained_at_stop = True
                if not publisher.flush(publisher.drain):
                    self.parts.log.warning("RotationRun objects not all published at shutdown",
                                           waiting=publisher.pending)
            if self.parts.elector is not None:
                if self._lease_lock.acquire(timeout=self.parts.elector.duration_seconds):  # expired by then
                    try:  # not while a renewal is in flight: it would take the Lease back after the release
                        self.parts.elector.release()
                    finally:
                        self._lease_lock.release()
                else:  # a renewal hangs: the Lease is left to expire (a Lease duration) instead
                    self.parts.log.warning("leader Lease not released: a renewal is still in flight")
            self.parts.metrics.leader.set(0)
            self.parts.log.info("stopped", active=len(self.state.active))

    # ------------------------------------------------------------------------------------------- intake

    def _adopt(self) -> None:
        if self.following:  # run records belong to the rotating cluster's controller (its policy alone reads them)
            self.state.adopted = True
            return
        for name, placed in self.scope.placed.items():
            if self.stopping():  # one read per secret (10k at fleet scale): not adopted, the next leader will
                return
            if name in self.state.active:
                continue
            try:
                run = runs.load(self.parts.kv, placed.vault)
            except AuthorityUnavailable:
                raise
            except AuthorityError as exc:  # refused for this secret: the others are adopted all the same
                self._refused("cannot read a run record", name, exc)
                continue
            except runs.RunUnreadable as exc:  # a newer release's record, or damage: the others all the same
                self.parts.log.warning("cannot read a run record", secret=name, error=type(exc).__name__,
                                       detail=str(exc)[:200])
                continue
            if run is None or (run.finished and run.ledger_seq is not None):
                continue
            a = self._track(placed, run)
            if a is not None:
                self.state.activate(a)
                if is_stored(run.run_id):  # a webhook request's run: the request object must not start it again
                    with self.state.lock:
                        self.state.taken.add(run.run_id)
                self.parts.log.info("adopted run", secret=name, run=run.run_id, stage=run.stage)
        self.state.adopted = True

    def _evaluate(self) -> None:
        """The time trigger: a pass decides for every secret in scope, one pass every ``evaluate_every`` seconds,
        from each secret's metadata — read from the authority for the secrets :mod:`.freshness` picks (new,
        changed, just rotated, and a paced round robin of the rest), from the last reading for the others. A pass
        over a large scope is spread over several ticks, ``evaluate_slice`` seconds of it per tick, so a trigger
        that wakes the loop (a webhook, an annotation, a manual request) waits for one read, not for 10k: the
        slice ends early when one arrives (:meth:`nudge`)."""
        mono = self.parts.clock.monotonic()
        state = self.state
        todo = state.evaluating
        if not todo:
            last = state.last_evaluation
            if last is not None and mono - last < self.config.evaluate_every:
                return
            state.last_evaluation = mono
            names = list(self.scope.placed)
            rate = None if self.following else self.config.metadata_reads_per_second  # a follower follows versions
            since = mono - state.last_refresh if state.last_refresh is not None else 0.0
            state.last_refresh = mono  # unlike last_evaluation, a scope swap does not reset it: the rate holds
            picked, state.refresh_cursor = freshness.to_read(
                names, state.known, state.refresh_cursor, freshness.refresh_budget(len(names), rate, since))
            # re-reads an interrupted pass (a scope swap) did not reach are carried over, not skipped for a cycle
            state.rereading = picked | (state.rereading & set(names))
            todo = state.evaluating = names[::-1]  # popped from the end: scope order
        budget_s = self.config.evaluate_slice
        deadline = None if budget_s is None else mono + budget_s
        now = self.parts.clock.now()
        metrics, schedules = self.parts.metrics, list[SecretSchedule | None]()
        following, to_follow = self.following, list[Pending]()
        while todo:
            if deadline is not None and schedules and (self.arrived.is_set()
                                                       or self.parts.clock.monotonic() >= deadline):
                # the rest of the pass at the next tick (at least one secret per tick); a trigger that arrived
                # meanwhile is polled and started now, not after the slice (P3's tail at 10k intents)
                break
            name = todo.pop()
            placed = self.scope.placed.get(name)
            if placed is None:
                continue
            reading = None if name in state.rereading else state.known.get(name)
            fresh = reading is None
            if reading is None:
                try:
                    reading = self._read(placed, to_follow if following else None)
                except AuthorityUnavailable:
                    todo.append(name)  # evaluated again once the authority answers
                    raise
                except AuthorityError as exc:  # refused for this secret: the others are evaluated all the same
                    self._refused("cannot read a secret's metadata", name, exc)
                    continue
                state.rereading.discard(name)
                if reading is None:  # nothing in the authority yet: read again next pass
                    state.known.pop(name, None)
                    schedules.append(None)  # counts as evaluated for the slice
                    continue
                state.known[name] = reading
            s = reading.schedule
            schedules.append(s)
            labels = (name, placed.vault.full)
            if fresh:  # what only a reading changes
                metrics.held.labels(*labels).set(1 if reading.held else 0)
                if s is not None and s.policy is not None and s.policy.ttl is not None:
                    metrics.secret_ttl.labels(*labels).set(s.policy.ttl.total_seconds())
                decision = time_due(s, now, self.config.failure_backoff) if s is not None else None
                if decision is not None and decision.next_due is not None:  # a failing secret: its retry time
                    metrics.next_due.labels(*labels).set(decision.next_due.timestamp())
            if s is not None:
                metrics.secret_age.labels(*labels).set(max((now - s.last_rotated).total_seconds(), 0.0))
        if following:
            self.follower.follow(to_follow)
            return
        for request in evaluate([s for s in schedules if s is not None], now, self.config.failure_backoff):
            self._enqueue(request)

    def _read(self, placed: rm.Placed, to_follow: list[Pending] | None) -> Reading | None:
        """One secret's metadata from the authority, as the time trigger keeps it (None: not in the authority).
        On the way: a following cluster's pending versions, the reconciler's settling (a new generated secret
        provisioned, a policy changed in the cluster brought into force) and the status reporter's view."""
        name = placed.name
        meta = self.parts.kv.read_metadata(placed.vault.mount, placed.vault.path)
        if to_follow is not None:  # another cluster rotates (and provisions): follow its versions
            try:
                pending = self.follower.due(placed, meta)
            except AuthorityUnavailable:
                raise
            except AuthorityError as exc:
                self._refused("cannot read an acknowledgement", name, exc)
                pending = None
            if pending is not None:
                to_follow.append(pending)
        elif self.parts.reconciler is not None:
            meta = self.parts.reconciler.settle(self.scope, placed, meta)
        if self.parts.status is not None:
            self.parts.status.saw(name, meta)
        if meta is None:
            return None
        s = schedule_of(name, meta.custom)
        if s is not None:
            policy, raised = floors.floored(s.policy, self.scope.platform.spec.limits)
            if raised:  # never act on a ttl below the Platform's floor, whoever recorded it
                self.parts.log.warning("ttl below the platform floor; evaluated at the floor", secret=name)
                s = replace(s, policy=policy)
        return Reading(s, meta.custom.get(wk.HELD) == "true")

    def _poll_annotations(self) -> None:
        if self.parts.annotations is None:
            return
        try:
            for request in self.parts.annotations.poll():
                self.parts.metrics.requests.labels(request.kind, "queued").inc()
        except KubeError as exc:
            self.parts.log.warning("annotation poll failed", error=type(exc).__name__, detail=str(exc)[:400])

    def _poll_stored(self) -> None:
        """Webhook requests persisted by any replica (this one, a follower, the previous leader): queued here.
        One already queued or in flight has the same request id, so the queue drops the repeat."""
        if self.parts.requests is None:
            return
        try:
            pending = self.parts.requests.pending(self.parts.clock.now())
        except KubeError as exc:
            self.parts.log.warning("persisted requests poll failed", error=type(exc).__name__, detail=str(exc)[:400])
            return
        for request in pending:
            if request.request_id not in self.state.taken:
                self._enqueue(request)

    def _enqueue(self, request: RotationRequest) -> str:
        outcome = self.parts.queue.put(request)
        self.parts.metrics.requests.labels(request.kind, outcome).inc()
        self.wake.set()
        if outcome == "queued":
            self.parts.log.info("rotation requested", secret=request.secret, trigger=request.kind,
                                request=request.request_id)
        return outcome

    def allowed_at(self, secret: str) -> datetime | None:
        """When a triggered rotation of ``secret`` is allowed again (None: now, or unknown secret): the last run's
        start plus ``limits.triggerInterval``. Reads the authority."""
        placed = self.scope.placed.get(secret)
        if placed is None or self.following:  # a follower reads no run record; its intake drops the request
            return None
        started = floors.last_start(self.parts.kv, placed.vault)
        return floors.allowed_at(started, floors.trigger_interval(self.scope.platform.spec.limits))

    def _take_requests(self) -> list[RotationRequest]:
        requests = []
        while (request := self.parts.queue.take(timeout=0)) is not None:
            requests.append(request)
        return requests

    def _start(self, requests: list[RotationRequest]) -> None:
        """Start a run per request (one queue entry per secret: the starts are independent, so they go to the
        workers), each new run going on to *promoted* on the worker that started it: its ExternalSecrets are poked
        while the other requests still start (ESO, the slowest part of a big batch, starts at once instead of after
        every start). The loop thread then records what they opened."""
        todo = [(placed, r) for r in requests if (placed := self._admit(r)) is not None]
        for placed, r in todo:  # a time request reads fresh metadata (or runs): the next pass reads it again too
            if r.kind == "time":
                self.state.known.pop(placed.name, None)
        opened, error = self._each(lambda item: self._open_and_promote(*item), todo)
        for o in opened:
            if o is None:
                continue
            a = o.active
            error = error or o.error
            if a.lost:  # taken over while it advanced: dropped, as a pass drops it
                self._taken_over(a)
                continue
            self.state.activate(a)
            if o.deferred is not None:
                self.state.deferred[a.placed.name] = o.deferred
            if o.started and self.parts.status is not None:
                self.parts.status.started(o.first or a.run)
            if (o.started or a.run is not o.first) and not self._background:
                self.state.dirty[a.run.run_id] = a.run
        if error is not None:
            raise error

    def _open_and_promote(self, placed: rm.Placed, request: RotationRequest) -> Opened | None:
        """:meth:`_open`, then the run up to *promoted* (worker thread). An error while advancing is returned with
        the run (the loop thread activates it, then raises: the run is recorded and resumes next tick)."""
        if self.stopping():  # not opened: its trigger is still there for the next leader (a stored request,
            return None  # an annotation, a due time)
        opened = self._open(placed, request)
        if opened is None:
            return None
        a = opened.active
        first = a.run
        if opened.started:
            self.parts.log.info("run started", secret=first.secret, run=first.run_id, trigger=first.trigger)
            if self._background:
                self._changed(first)
        try:
            self._advance(a, lambda r: r.stage in PROMOTED_OR_LATER)
        except Exception as exc:  # handed to the loop thread with the run, raised there
            return replace(opened, first=first, error=exc)
        return replace(opened, first=first)

    def _admit(self, request: RotationRequest) -> rm.Placed | None:
        """The placement a request may start a run of now (loop thread); None when it is dropped or deferred."""
        placed = self.scope.placed.get(request.secret)
        if placed is None:
            self.parts.log.warning("request for a secret out of scope", secret=request.secret,
                                   trigger=request.kind)
            self._end_request(request, cleared=True, result="dropped: not in this controller's scope")
            return None
        if self.following:
            owner = clusters.rotating_cluster(self.scope.platform, self.scope.environment)
            self.parts.log.warning("request for a secret another cluster rotates", secret=request.secret,
                                   trigger=request.kind, rotating_cluster=owner)
            self._end_request(request, cleared=True, result=f"dropped: rotated by cluster {owner}")
            return None
        active = self.state.active.get(request.secret)
        if active is not None and active.request is None and _started(active.run, request):
            # The adopted run is this request's own (the leader that started it stopped): the request ends with
            # it. Deferred, it started a second rotation for one signal once the run had ended.
            active.request = request
            return None
        if active is not None:  # a run (adopted, or still finishing) holds the secret: after it
            self.state.deferred[request.secret] = request
            return None
        return placed

    def _still_due(self, placed: rm.Placed) -> bool:
        meta = self.parts.kv.read_metadata(placed.vault.mount, placed.vault.path)
        s = schedule_of(placed.name, meta.custom) if meta is not None else None
        if s is None:
            return False
        policy, raised = floors.floored(s.policy, self.scope.platform.spec.limits)  # as the pass evaluates it
        if raised:
            s = replace(s, policy=policy)
        return time_due(s, self.parts.clock.now(), self.config.failure_backoff).due

    def _open(self, placed: rm.Placed, request: RotationRequest) -> Opened | None:
        """Start the run of one admitted request (worker thread; touches no state). None: nothing to drive."""
        log = self.parts.log
        run_id = self._run_id_for(request)
        try:
            if request.kind == "time" and not self._still_due(placed):
                self.parts.metrics.requests.labels("time", "stale").inc()
                self._end_request(request)
                return None
            # A webhook request was checked against the limit when a replica accepted it (and answered 200/202);
            # refusing it now would break that answer. Annotation and manual requests are checked here, from the
            # run record the start reads anyway (one read, not two).
            existing = runs.load(self.parts.kv, placed.vault)
            # This very start, unanswered before, and its lease write was applied: the run is this request's.
            retried = existing is not None and bool(request.run_id) and existing.run_id == request.run_id
            follow = None
            if retried:
                assert existing is not None
                request, follow = request.split_after_run()
                if existing.finished:  # driven to its end meanwhile (adopted): only the later signals are left
                    self._end_request(request, cleared=True, result=f"{existing.stage}: run {existing.run_id}",
                                      run=existing.run_id)
                    if follow is None:
                        return None
                    request, follow, retried = follow, None, False
                    run_id = self._run_id_for(request)
            refused = None if request.kind == "webhook" or retried else floors.refusal(
                placed.name, request.kind, floors.allowed_at(
                    existing.started_at if existing is not None else None,
                    floors.trigger_interval(self.scope.platform.spec.limits)), self.parts.clock.now())
            if refused is not None:
                self.parts.metrics.requests.labels(request.kind, "rate-limited").inc()
                log.warning("trigger refused", secret=placed.name, trigger=request.kind, detail=refused)
                self._end_request(request, cleared=True, result=f"refused: {refused}", state="refused")
                return None
            deps, timing = self._deps(placed)
            try:
                run = wf.start(self.parts.kv, placed.vault, secret=placed.name, run_id=run_id,
                               trigger=request.kind, reason=request.reason, now=self.parts.clock.now(),
                               existing=existing, loaded=True,
                               pending_in=wf.pending_home(deps.rotator, request.kind))
            except RunActive:  # inside the outer try: the join's own read fails as this start would
                return self._join(placed, request)
        except wf.SecretHeld as exc:
            log.warning("secret is held; request dropped", secret=placed.name, trigger=request.kind,
                        detail=str(exc))
            self._end_request(request, cleared=True, result="refused: the secret is held", state="refused")
            return None
        except AuthorityUnavailable:
            # Vault unreachable or sealed: the request must survive the outage. Back in line with the run id this
            # start used (an unanswered lease write may have been applied: the retry joins that run); stop this tick.
            self.parts.queue.done(request.secret)
            self.parts.queue.put(request.unanswered(run_id))
            raise
        except ChamberlainError as exc:  # not found, forbidden, no such rotator...: this request cannot run
            log.warning("cannot start a rotation", secret=placed.name, error=type(exc).__name__,
                        detail=str(exc)[:200])
            self._end_request(request, cleared=True, result=f"failed to start: {type(exc).__name__}")
            return None
        return Opened(Active(placed, run, deps, timing, request, self.parts.clock.monotonic()), started=True,
                      deferred=follow)

    def _run_id_for(self, request: RotationRequest) -> str:
        """A persisted webhook request's run takes its object's name (that object then shows the run); a retried
        start, the run id its unanswered try used; else a new one."""
        if is_stored(request.request_id):
            return request.request_id
        return request.run_id or self.parts.new_run_id()

    def _join(self, placed: rm.Placed, request: RotationRequest) -> Opened | None:
        """Another run holds the secret's lease (started by another process): drive it, the request after it."""
        existing = runs.load(self.parts.kv, placed.vault)
        found = self._track(placed, existing) if existing is not None and not existing.finished else None
        if found is None:  # released between the two reads, or not drivable: the request ends here
            self._end_request(request)
            return None
        return Opened(found, started=False, deferred=request)

    def _deps(self, placed: rm.Placed) -> tuple[wf.RotationDeps, rm.TimedPropagation]:
        """What the workflow acts through for one run: the controller's registry and ledger, its batch's wave."""
        p, cfg = self.parts, self.config
        deps, timing = rm.build_deps(p.kv, p.kube, self.scope.platform, self.scope.intents, placed, actor=cfg.actor,
                                     clock=p.clock, registry=p.registry, ledger=p.ledger,
                                     timeout=cfg.propagation_timeout, poll=cfg.poll, pki=p.pki,
                                     markers=p.markers, interrupted=self.stopping)
        change = Change(placed.name, tuple((c.secret, c.workloads) for c in rm.placed_consumers(
            self.scope.platform, self.scope.intents, placed)))
        propagation = BatchedPropagation(timing, self.state.wave, change)
        return replace(deps, propagation=propagation, on_alert=self._alert, rng=p.rng, on_overdue=self._overdue,
                       ack_deadline=timedelta(seconds=cfg.ack_deadline)), timing

    def _overdue(self, run: RotationRun) -> None:
        """revokeOld waited past the acknowledgement deadline for a follower cluster (down, or its ESO cannot
        sync): alert once per run; the wait goes on."""
        awaited = run.notes.get(clusters.AWAITING_NOTE, "")
        self.parts.metrics.alerts.labels(run.secret).inc()
        self.parts.log.warning("revokeOld waits for follower clusters past the deadline", secret=run.secret,
                               run=run.run_id, awaiting=awaited)
        if self.parts.publisher is not None:
            self.parts.publisher.event(run, "AcknowledgementOverdue",
                                       f"{run.secret}: old credential kept; waiting for cluster(s) {awaited}",
                                       warning=True)

    def _alert(self, run: RotationRun) -> None:
        if run.failures_before > 0:  # alert once per failure streak; the time trigger backs off from the rest
            self.parts.log.warning("rotation failed again; alert already raised", secret=run.secret,
                                   run=run.run_id, failures=run.failures_before + 1)
            return
        self.parts.metrics.alerts.labels(run.secret).inc()
        if self.parts.publisher is not None:
            self.parts.publisher.event(run, "RotationFailed", f"{run.secret}: {run.last_error or run.stage}",
                                       warning=True)

    def _track(self, placed: rm.Placed, run: RotationRun) -> Active | None:
        """A recorded run to drive (adopted, or found holding the lease); None when its deps cannot be built."""
        try:
            deps, timing = self._deps(placed)
        except ChamberlainError as exc:
            self.parts.log.warning("cannot resume a run", secret=placed.name, run=run.run_id,
                                   error=type(exc).__name__)
            return None
        return Active(placed, run, deps, timing, None, self.parts.clock.monotonic())

    # ------------------------------------------------------------------------------------------- drive

    def _drive(self) -> None:
        self._advance_all(lambda r: r.stage in PROMOTED_OR_LATER)
        if self.stopping():  # between passes: nothing rolled in this batch yet, the next leader does it all
            self._complete_all()
            return
        promoted = [a for a in self.state.active.values()
                    if a.run.stage == "promoted" and a.run.next_retry_at is None]
        _, error = self._each(self._poke, promoted)  # one poke per ExternalSecret, all before anyone waits
        if error is not None:
            raise error
        self._advance_all(lambda r: r.stage in PROPAGATED_OR_LATER)
        if self.stopping():
            self._complete_all()
            return
        # A new batch in the one wave, while no worker runs (state.py: the loop thread starts batches).
        self.state.wave.begin([a.run.run_id for a in self.state.active.values() if a.run.stage == "propagated"])
        self._restarting = True
        try:
            self._advance_all(lambda r: False, spread=True)
        finally:
            self._restarting = False
        self._complete_all()

    @staticmethod
    def _workloads(a: Active) -> list[WorkloadRef]:
        propagation = a.deps.propagation
        if not isinstance(propagation, BatchedPropagation):
            return []
        return [w for _, workloads in propagation.change.consumers for w in workloads]

    @staticmethod
    def _poke(a: Active) -> None:
        with contextlib.suppress(KubeError):  # the propagate step itself retries under the failure strategy
            a.deps.propagation.refresh(f"{a.run.run_id}.{a.run.attempts}")

    def _each(self, fn: Callable[[T], R], items: Sequence[T]) -> tuple[list[R], BaseException | None]:
        """``fn`` on every item, on the worker threads; the results of the items that returned, in order, and the
        first error (raised by the caller once it has applied the results)."""
        if self.config.workers <= 1 or len(items) <= 1:
            results: list[R] = []
            first: BaseException | None = None
            for item in items:
                try:
                    results.append(fn(item))
                except Exception as exc:  # the others still run, as on the workers
                    first = first or exc
            return results, first
        with ThreadPoolExecutor(max_workers=self.config.workers, thread_name_prefix="chamberlain-run") as pool:
            futures = [pool.submit(fn, item) for item in items]
        errors = [e for f in futures if (e := f.exception()) is not None]
        return [f.result() for f in futures if f.exception() is None], errors[0] if errors else None

    def _advance_all(self, goal: Callable[[RotationRun], bool], spread: bool = False) -> None:
        """Independent runs (one per secret, each with its own lease) advance side by side; the loop thread then
        notes which changed (published at the end of the tick) and drops the ones another executor took.
        ``spread``: the restart pass, runs sharing a workload taken apart (:func:`~.batch.spread_by_workload`)."""
        actives = list(self.state.active.values())
        if spread:
            actives = spread_by_workload(actives, self._workloads)
        before = [a.run for a in actives]
        _, error = self._each(lambda a: self._advance(a, goal), actives)
        for a, run in zip(actives, before, strict=True):
            if a.lost:
                self.state.drop(a.placed.name)
                self._taken_over(a)
            elif a.run is not run and not self._background:  # (a background publisher had each step already)
                self.state.dirty[a.run.run_id] = a.run
        if error is not None:
            raise error

    @staticmethod
    def _own_unanswered_write(a: Active) -> RotationRun | None:
        """After an outage, a record one revision ahead of ours with our run id is our own write whose answer was
        lost (an authority node died after committing it, before replying): resume from it rather than give the
        run up. Anything else is another executor's."""
        if a.outage is None:
            return None
        try:
            stored = runs.load(a.deps.kv, a.run.vault)
        except (AuthorityError, runs.RunUnreadable):  # unreadable: not ours to go on from (a newer release's?)
            return None
        if stored is None or stored.run_id != a.run.run_id or stored.revision != a.run.revision + 1:
            return None
        return stored

    def _advance(self, a: Active, goal: Callable[[RotationRun], bool]) -> None:
        """Advance one run until it reaches ``goal``, waits, or is finished and recorded (worker thread; it owns
        ``a`` until the pass returns)."""
        log = self.parts.log
        awaiting = a.run.stage == "revoke-wait" and clusters.AWAITING_NOTE in a.run.notes and a.outage is None
        if awaiting and self.parts.clock.monotonic() < a.next_ack_look:
            return  # a follower cluster is behind: its acknowledgement is read every few seconds, not every tick
        for _ in range(wf.MAX_STEPS):
            if (a.run.finished and a.run.ledger_seq is not None) or goal(a.run) or not self._may_step(a.run):
                return
            self._progressed()
            try:
                after = wf.advance(a.run, a.deps, outage=a.outage, then_promote=a.saved)
            except WaitInterrupted:  # stopping: the step is left undone, unsaved (the next leader takes it again)
                return
            except wf.RunLost:
                own = self._own_unanswered_write(a)
                if own is not None:
                    log.info("run record re-read after an unanswered write", secret=a.placed.name,
                             run=a.run.run_id, revision=own.revision)
                    a.run, a.outage = own, None
                    if self._background:
                        self._changed(own)
                    continue
                log.warning("run taken over by another executor", secret=a.placed.name, run=a.run.run_id)
                a.lost = True
                return
            except AuthorityUnavailable as exc:
                # Vault itself is unreachable: the failure cannot even be recorded. The tick stops here; once
                # Vault answers again the run's next step decides (retry resumes, alert/hold stop it).
                if a.outage is None:
                    a.outage = runs.clean_error(exc)
                raise
            except AuthorityError as exc:  # refused for this run only (even its record): the others go on
                self._refused("run step refused", a.placed.name, exc, run=a.run.run_id)
                return
            stopped = a.outage is not None and after.finished and not a.run.finished
            a.outage = None
            if after == a.run or (after.stage == "revoke-wait" and clusters.AWAITING_NOTE in after.notes):
                a.next_ack_look = self.parts.clock.monotonic() + ACK_LOOK_EVERY
            if after == a.run:
                return  # waiting (a retry, maxOverlap before the revoke, or a follower cluster's acknowledgement)
            a.run = after
            if self._background:
                self._changed(after)  # shown while the batch goes on (the publisher keeps the newest state only)
            if stopped:
                log.warning("run stopped after an authority outage", secret=after.secret, run=after.run_id,
                            stage=after.stage)
            log.info("run step", secret=after.secret, run=after.run_id, stage=after.stage,
                     attempts=after.attempts, error=after.last_error)
            if after.stage == "promoted" and after.next_retry_at is None:
                self._poke(a)  # ESO syncs it while the batch's other runs still promote (the poke pass skips it)

    def _complete_all(self) -> None:
        """Finished and recorded runs leave; requests deferred behind them start now."""
        later = []
        for name in [n for n, a in self.state.active.items() if a.run.finished and a.run.ledger_seq is not None]:
            a = self.state.drop(name)
            if a is not None:
                self._complete(a)
            deferred = self.state.deferred.pop(name, None)
            if deferred is not None:
                later.append(deferred)
        self._start(later)

    def _complete(self, a: Active) -> None:
        run, p = a.run, self.parts
        p.metrics.rotations.labels(run.secret, run.trigger, "ok" if run.succeeded else run.stage).inc()
        p.metrics.run_duration.labels(run.trigger).observe(max(p.clock.monotonic() - a.started, 0.0))
        if a.timing.seconds is not None:
            p.metrics.propagation.observe(a.timing.seconds)
        # A failure under `alert` has its Event from the alert itself, once per failure streak (_alert): not again
        if p.publisher is not None and (run.succeeded or run.failure_strategy != "alert"):
            p.publisher.event(run, "RotationSucceeded" if run.succeeded else "RotationFailed",
                              f"{run.secret}: {run.stage}, version {run.current_version}",
                              warning=not run.succeeded)
        p.log.info("run finished", secret=run.secret, run=run.run_id, stage=run.stage, ok=run.succeeded,
                   version=run.current_version, propagation_seconds=a.timing.seconds,
                   restarted=a.timing.restarted, left_to_reloader=a.timing.left_to_reloader)
        self.state.finish(run, self.config.keep_finished)
        self.state.known.pop(run.secret, None)  # its schedule moved (rotated, or a failure streak): read it again
        if p.status is not None:
            p.status.finished(run)
        if p.history is not None:
            p.history.finished()
        if is_stored(run.run_id):
            self.state.taken.add(run.run_id)
        if a.request is not None:
            self._end_request(a.request, cleared=True, result=f"{run.stage}: run {run.run_id}", run=run.run_id)
        elif run.trigger == "annotation":
            self._clear_annotation(run.secret, None)

    def _taken_over(self, a: Active) -> None:
        """A run another executor took over leaves (loop thread): its request ends, so the queue slot of its secret
        is free again (else every later trigger of the secret would wait for a run that is not ours), and the states
        of it still waiting to be published are dropped (the other executor's are newer)."""
        if isinstance(self.parts.publisher, BackgroundPublisher):
            self.parts.publisher.forget(a.run.run_id)
        if a.request is not None:
            self._end_request(a.request, cleared=True, result=f"taken over: run {a.run.run_id} lost its lease",
                              run=a.run.run_id)

    def _end_request(self, request: RotationRequest, cleared: bool = False, result: str = "done",
                     state: str = "dropped", run: str | None = None) -> None:
        self.parts.queue.done(request.secret)
        if cleared and request.kind == "annotation":
            self._clear_annotation(request.secret, request, result)
        self._settle(request, state, result, run)

    def _settle(self, request: RotationRequest, state: str, message: str, run: str | None) -> None:
        """Persisted webhook requests folded into ``request`` are no longer pending: the one whose name is the
        run's id shows that run; the others say what became of them (merged into it, refused, dropped)."""
        store = self.parts.requests
        for key in request.keys:
            if store is None or not is_stored(key) or key == run:
                continue
            with self.state.lock:
                self.state.taken.add(key)
            try:
                store.settle(key, "merged" if run is not None else state, message, run)
            except KubeError as exc:
                self.parts.log.warning("could not settle a persisted request", secret=request.secret,
                                       error=type(exc).__name__)

    def _clear_annotation(self, secret: str, request: RotationRequest | None, result: str = "done") -> None:
        if self.parts.annotations is None:
            return
        try:
            self.parts.annotations.clear_annotation(secret, request, result)
        except KubeError as exc:
            self.parts.log.warning("could not clear the rotate annotation", secret=secret,
                                   error=type(exc).__name__)

    def _report(self) -> None:
        """SecretIntent status (patched only where it changed) and RotationRun history (controller.status,
        controller.history); best effort: neither ever stops a rotation."""
        p = self.parts
        try:
            if p.status is not None:
                p.status.report(self.scope.placed, {n: a.run for n, a in self.state.active.items()},
                                p.clock.now())
            if p.history is not None:
                p.history.prune()
        except ChamberlainError as exc:
            p.log.warning("status report failed", error=type(exc).__name__, detail=str(exc)[:200])

    @property
    def _background(self) -> bool:
        return isinstance(self.parts.publisher, BackgroundPublisher)

    def _changed(self, run: RotationRun) -> None:
        """A run's new state: handed to a background publisher at once (any thread), else published at the end of
        the tick (loop thread only)."""
        if isinstance(self.parts.publisher, BackgroundPublisher):
            self.parts.publisher.publish(run)
        else:
            self.state.dirty[run.run_id] = run

    def _flush(self) -> None:
        """Without a background publisher: publish each run that changed this tick, once, on the workers (a
        RotationRun patch per stage of every run of a big batch would cost more than the rotations themselves)."""
        dirty, self.state.dirty = list(self.state.dirty.values()), {}
        if self.parts.publisher is None or not dirty:
            return
        _, error = self._each(self.parts.publisher.publish, dirty)  # best effort: KubeErrors are counted there
        if error is not None:
            raise error


__all__ = [
    "PROPAGATED_OR_LATER",
    "Active",
    "BatchedPropagation",
    "Controller",
    "Logger",
    "RestartWave",
    "Scope",
    "schedule_of",
    "scope_of",
]
