"""The running controller: the loop on a thread, the webhook endpoint and ``/metrics``, started and stopped as one.

:func:`chamberlain.service.controller.start` (what ``chamberlain controller run`` and the demo call) builds the
clients, then :func:`wire` builds the :class:`~.loop.Controller` from them (its configuration, its collaborators
built once, its state) and :class:`ControllerApp` runs it. Stopping is graceful: the loop finishes its tick, gives
up the Lease, and the servers shut down; an unfinished run stays recorded in Vault for whichever replica leads next.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol, cast

from chamberlain.audit.ledger import TransitAPI, TransitSigner
from chamberlain.authority.counting import CountingKV
from chamberlain.authority.kv import KV
from chamberlain.authority.pki import PkiClient, VaultCertificateIssuer
from chamberlain.clock import Clock
from chamberlain.controller.batch import BackgroundEvents
from chamberlain.controller.collaborators import Collaborators, Logger, Silent
from chamberlain.controller.config import DEFAULT_LEASE, ControllerConfig
from chamberlain.controller.external import ExternalRotations, PushSecretWatch, WatchKube
from chamberlain.controller.heap import HeapSettler
from chamberlain.controller.history import RunHistory
from chamberlain.controller.leader import LeaderElector
from chamberlain.controller.ledger import SharedLedger
from chamberlain.controller.loop import Controller
from chamberlain.controller.metrics import ControllerMetrics
from chamberlain.controller.probes import DEFAULT_STALL_SECONDS, Check, ProbeServer, liveness, probe_app, readiness
from chamberlain.controller.reconcile import IntentReconciler
from chamberlain.controller.resources import BackgroundPublisher, RunPublisher
from chamberlain.controller.scope import Scope
from chamberlain.controller.status import IntentStatus
from chamberlain.controller.watched import IntentObjects, WatchedAnnotations, WatchedRequests
from chamberlain.controller.watched import WatchKube as WatchedKube
from chamberlain.kube.api import KubeCustomObjects, KubeLeases, KubePropagation, KubeRunObjects
from chamberlain.triggers import AnnotationTrigger, MemoryQueue, RequestStore, RotationRequest, RunObjectStore
from chamberlain.triggers.webhook import DEFAULT_WINDOW, WebhookHandler, WebhookKey, WebhookKeys, WebhookServer
from chamberlain.values.markers import HmacAPI, TransitMarkers

# secrets whose status the report brings up to date at once (IntentStatus.parallel), at most the workers: the
# round trips of a first report overlap, and two cores' API server and authority are kept busy
STATUS_PARALLEL = 4


class ControllerKube(KubePropagation, KubeLeases, KubeRunObjects, KubeCustomObjects, Protocol):
    """Everything the running controller needs from Kubernetes (the real client has it all)."""


class SessionTransit(TransitAPI, HmacAPI, Protocol):
    """The authority's transit engine as the controller uses it: ledger signatures and marker HMACs."""


class VaultSession(PkiClient, Protocol):
    """A logged-in authority client that renews its own token and signs certificates (``VaultClient``)."""

    @property
    def kv(self) -> KV: ...

    @property
    def session_generation(self) -> int: ...

    @property
    def transit(self) -> SessionTransit: ...  # signs ledger entries, keys version markers

    def ensure_fresh(self) -> None: ...


def wire(
    scope: Scope,
    vault: VaultSession,
    kube: ControllerKube,
    clock: Clock,
    *,
    identity: str,
    lease_name: str = DEFAULT_LEASE,
    lease_seconds: int = 15,
    log: Logger | None = None,
    reconcile: bool = False,
    observe_external: bool = True,
    objects: IntentObjects | None = None,
    **options: Any,
) -> Controller:
    """The controller as it runs in a cluster: leader election, RotationRun objects and Events, the annotation
    trigger, SecretIntent status and bounded RotationRun history, Vault requests counted and the token renewed
    (one login per token lifetime, never one per tick).
    ``options`` are further :class:`~.config.ControllerConfig` fields (intervals, timeouts, workers). ``reconcile``
    (a controller driven by the cluster): new generated secrets get their initial value, changed policies are
    brought into force (:mod:`.reconcile`). ``observe_external``: new versions producers push (PushSecret) of the
    derived and config intents of this cluster are followed to their consumers (:mod:`.external`). ``objects``
    (``controller run --from-cluster``): the SecretIntents as the cluster source's watch sees them; the annotation
    trigger and the status reporter read them instead of listing every SecretIntent, persisted webhook requests
    are watched (:mod:`.watched`)."""
    config = ControllerConfig(**{"workers": 8, **options}, actor=f"controller:{identity}", identity=identity,
                              lease_name=lease_name, lease_seconds=lease_seconds)
    metrics = ControllerMetrics()
    metrics.vault_request("login")
    kv = CountingKV(vault.kv, metrics.vault_request, on_error=metrics.vault_error)
    ns = scope.platform.spec.controller.namespace
    queue = MemoryQueue()
    log = log if log is not None else Silent()
    # the real client (and FakeKube) watch and list Secret metadata; a narrower test double keeps the lists
    watching: WatchedKube | None = (cast("WatchedKube", kube) if objects is not None
                                    and hasattr(kube, "watch_custom_objects") else None)
    events = BackgroundEvents(kube)  # Events leave the loop thread (a batch emits three per run)
    status = IntentStatus(events, kv, ns, clock, metrics, log, backoff=config.failure_backoff,
                          consumer_check_every=config.consumer_check_every,
                          consumer_looks_per_second=config.consumer_looks_per_second,
                          report_slice=config.evaluate_slice,
                          list_every=max(config.evaluate_every, 1.0), feed=objects,
                          parallel=min(config.workers, STATUS_PARALLEL))
    history = (RunHistory(kube, ns, clock, config.keep_runs, timedelta(seconds=config.request_retention), metrics,
                          log, every=max(config.evaluate_every, 1.0)) if config.keep_runs is not None else None)
    annotations = (WatchedAnnotations(kube, queue, clock, ns, objects) if objects is not None
                   else AnnotationTrigger(kube, queue, clock, ns))
    requests = WatchedRequests(watching, ns, clock, log) if watching is not None else RunObjectStore(kube, ns)
    ledger = SharedLedger(kv, scope.runtime_mount, clock, cluster=scope.cluster, signer=TransitSigner(vault.transit))
    markers = TransitMarkers(vault.transit)
    reconciler = IntentReconciler(kv, ledger, clock, config.actor, markers=markers,
                                  log=log) if reconcile else None
    external = ExternalRotations(
        kv, kube, clock, markers, ledger, ns, scope.runtime_mount, config.actor, _no_run_id,
        publisher=RunPublisher(events, ns), metrics=metrics, log=log, resync=max(config.evaluate_every, 1.0),
        quiet=config.external_quiet,
    ) if observe_external else None
    if external is not None and isinstance(kube, WatchKube):
        external.watch = PushSecretWatch(kube, external.pushed, log=log)
    parts = Collaborators(
        kv=kv, kube=kube, clock=clock, ledger=ledger, metrics=metrics, reconciler=reconciler,
        queue=queue, elector=LeaderElector(kube, ns, config.lease_name, identity, clock, config.lease_seconds),
        # RotationRun objects leave the loop too: a batch's runs show while it advances, the tick never waits
        publisher=BackgroundPublisher(RunPublisher(events, ns)), annotations=annotations, requests=requests,
        pki=VaultCertificateIssuer(vault), refresh_session=_session_refresher(vault, metrics),
        log=log, markers=markers, status=status, history=history, external=external, events=events,
    )
    if reconciler is not None:
        reconciler.new_run_id = parts.new_run_id
    controller = Controller(scope, parts, config)
    status.interrupted = controller.arrived.is_set  # a trigger waiting cuts the status report's slice short
    if objects is not None:
        objects.on_rotate = controller.nudge  # a rotate annotation the watch saw: tick now, not at the next tick
    if external is not None:
        external.new_run_id = parts.new_run_id
        external.wake = controller.wake.set  # a PushSecret event ticks the loop at once
    return controller


def _no_run_id() -> str:  # replaced by the collaborators' generator once they exist
    raise RuntimeError("run ids come from the collaborators")


def _session_refresher(vault: VaultSession, metrics: ControllerMetrics) -> Callable[[], None]:
    """Renew the authority token when due, counting each renewal (the session says when it logged in again)."""
    seen = [vault.session_generation]

    def refresh_session() -> None:
        vault.ensure_fresh()
        if vault.session_generation != seen[0]:
            seen[0] = vault.session_generation
            metrics.vault_request("renew")

    return refresh_session


class ControllerWebhook(WebhookHandler):
    """The webhook of one replica. Every replica accepts: the request is persisted create-only in the cluster
    (:class:`~chamberlain.triggers.store.RunObjectStore`), so a follower's answer (202) is as good as the
    leader's, the leader picks it up at its next tick, and a leader change loses nothing. The leader also queues
    it at once (200). The rate limit is checked here, when the request is accepted: a clear answer (429), and an
    accepted request is never refused later."""

    def __init__(self, controller: Controller, key: WebhookKey | WebhookKeys, window: timedelta = DEFAULT_WINDOW,
                 store: RequestStore | None = None) -> None:
        def path_of(secret: str) -> str:  # the scope in force now: a controller driven by the cluster swaps it
            placed = controller.scope.placed.get(secret)
            return placed.vault.full if placed is not None else secret

        super().__init__(key, controller.parts.queue, lambda s: controller.scope.knows(s), controller.parts.clock,
                         window=window, store=store if store is not None else controller.parts.requests,
                         path_of=path_of,
                         admit=controller.allowed_at)
        self._controller = controller

    def deliver(self, request: RotationRequest) -> str:
        if not self._controller.is_leader:
            return "persisted"  # the leader's next tick lists it
        return self._controller.request_now(request)


EVENTS_STOP_SECONDS = 5.0  # at shutdown, the Event being sent gets this long (queued ones are dropped)


@dataclass
class ControllerApp:
    controller: Controller
    interval: float = 1.0
    metrics_address: tuple[str, int] | None = None  # (host, port); port 0 picks a free one
    webhook_address: tuple[str, int] | None = None
    webhook_key: WebhookKey | WebhookKeys | None = field(default=None, repr=False)
    stop_event: threading.Event = field(default_factory=threading.Event)
    webhook: WebhookServer | None = None
    metrics_server: ProbeServer | None = None
    stall_seconds: float = DEFAULT_STALL_SECONDS  # /healthz fails when no tick finished for this long
    settle_heap: bool = False  # the controller's own process: settled state frozen out of the gc's walk (.heap)
    _threads: list[threading.Thread] = field(default_factory=list)
    _started: float = field(default_factory=time.monotonic)

    def start(self) -> None:
        self._started = time.monotonic()
        if self.metrics_address is not None:  # /metrics, /healthz and /readyz share the address
            self.metrics_server = ProbeServer(self.metrics_address, probe_app(
                self.controller.parts.metrics.scrape, lambda: [self.health()], self.readiness))
        if self.webhook_address is not None:
            if self.webhook_key is None:
                raise ValueError("a webhook address needs a webhook key")
            self.webhook = WebhookServer(self.webhook_address, ControllerWebhook(self.controller, self.webhook_key))
            t = threading.Thread(target=self.webhook.serve_forever, name="chamberlain-webhook", daemon=True)
            t.start()
            self._threads.append(t)
        loop = threading.Thread(target=self.controller.serve,
                                args=(self.stop_event, self.interval, HeapSettler() if self.settle_heap else None),
                                name="chamberlain-controller", daemon=True)
        loop.start()
        self._threads.append(loop)

    def health(self) -> Check:
        """Liveness: the loop thread runs and finished a tick lately (``/healthz``)."""
        loop = next((t for t in self._threads if t.name == "chamberlain-controller"), None)
        return liveness(loop_alive=loop is not None and loop.is_alive(),
                        last_beat=self.controller.parts.metrics.last_beat, started=self._started,
                        now=time.monotonic(), stall_seconds=self.stall_seconds)

    def readiness(self) -> list[Check]:
        """Readiness, leader or not (``/readyz``): scope, authority session, API server."""
        c = self.controller
        elector = c.parts.elector
        return readiness(scope_loaded=c.scope is not None, ticked=c.parts.metrics.last_beat is not None,
                         authority_ok=c.outages == 0,
                         kube_reachable=elector.api_reachable if elector is not None else None)

    @property
    def metrics_url(self) -> str | None:
        if self.metrics_server is None:
            return None
        host, port = self.metrics_server.server_address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stopped (or ``timeout``); True when the loop has ended."""
        return self.stop_event.wait(timeout)

    def stop(self, timeout: float = 60.0) -> None:
        self.stop_event.set()
        external = self.controller.parts.external
        if isinstance(external, ExternalRotations) and external.watch is not None:
            external.watch.stop()
        if isinstance(self.controller.parts.requests, WatchedRequests):
            self.controller.parts.requests.stop()
        self.controller.wake.set()
        if self.webhook is not None:
            self.webhook.shutdown()
            self.webhook.server_close()
        deadline = time.monotonic() + timeout  # one budget for all the threads, not one each
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if isinstance(self.controller.parts.status, IntentStatus):  # after the loop: a report under way would
            self.controller.parts.status.close()  # make its workers anew
        publisher = self.controller.parts.publisher
        # the loop drained it before giving up the Lease (the drain time is spent once); a loop still alive gets
        # no more time
        done = self.controller.drained_at_stop or any(t.is_alive() for t in self._threads)
        if isinstance(publisher, BackgroundPublisher) and not publisher.close(0.0 if done else publisher.drain):
            self.controller.parts.log.warning("RotationRun states left unpublished at shutdown",
                                              dropped=publisher.dropped, in_flight=publisher.pending)
        events = self.controller.parts.events
        if events is not None:
            before = events.dropped
            if not events.stop(EVENTS_STOP_SECONDS) or events.dropped > before:
                self.controller.parts.log.info("Events left unsent at shutdown", dropped=events.dropped - before)
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()


__all__ = ["DEFAULT_LEASE", "ControllerApp", "ControllerKube", "ControllerWebhook", "VaultSession", "wire"]
