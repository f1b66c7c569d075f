"""What the controller acts through, built once per process: clients, the registry, the ledger writer, triggers.

Belongs here: the authority session's KV (counted), the Kubernetes client, the rotator registry (loaded once,
not per run), the one :class:`~.ledger.SharedLedger` every run of the process appends through (on the injected
clock), the RunPublisher, metrics, the leader elector, the request queue and the annotation trigger, the clock,
the RNG, the logger. Each is safe to call from the controller's worker threads (the queue, the ledger, the
publisher and the metrics lock inside) — except the SecretIntent status reporter and the RotationRun history
pruner, which only the loop thread calls. Not here: configuration (:mod:`.config`) or anything that changes from
tick to tick (:mod:`.state`).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from chamberlain.authority.kv import KV, SecretMetadata
from chamberlain.clock import Clock
from chamberlain.controller.batch import BackgroundEvents
from chamberlain.controller.history import RunHistory
from chamberlain.controller.leader import LeaderElector
from chamberlain.controller.ledger import SharedLedger
from chamberlain.controller.metrics import ControllerMetrics
from chamberlain.controller.resources import BackgroundPublisher, RunPublisher
from chamberlain.controller.scope import Scope
from chamberlain.controller.status import IntentStatus
from chamberlain.kube.api import KubePropagation
from chamberlain.rotation import manual as rm
from chamberlain.rotation import workflow as wf
from chamberlain.rotation.rotators import Registry
from chamberlain.rotation.rotators.base import CertificateIssuer
from chamberlain.triggers import AnnotationTrigger, MemoryQueue, RequestQueue, RequestStore
from chamberlain.values.markers import LegacyMarkers, Markers


class Logger(Protocol):
    def info(self, event: str, **kw: Any) -> Any: ...

    def warning(self, event: str, **kw: Any) -> Any: ...


class ScopeReconciler(Protocol):
    """Settles one placed secret whose metadata the time trigger just read (:mod:`.reconcile`: initial values of
    new generated secrets, policies changed in the cluster); returns the metadata after that."""

    def settle(self, scope: Scope, placed: rm.Placed, meta: SecretMetadata | None) -> SecretMetadata | None: ...


class ExternalStep(Protocol):
    """Observed external rotations (:mod:`.external`): one pass over the scope's published intents per tick."""

    def step(self, scope: Scope) -> None: ...


class Silent:
    """A :class:`Logger` that drops everything."""

    def info(self, event: str, **kw: Any) -> None:
        return None

    def warning(self, event: str, **kw: Any) -> None:
        return None


def _no_session_refresh() -> None:
    return None


def _new_run_id() -> str:
    return f"run-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Collaborators:
    kv: KV
    kube: KubePropagation
    clock: Clock
    ledger: SharedLedger  # the one ledger writer of the process (over the scope's runtime mount, on `clock`)
    registry: Registry = field(default_factory=Registry.load)
    metrics: ControllerMetrics = field(default_factory=ControllerMetrics)
    queue: RequestQueue = field(default_factory=MemoryQueue)
    elector: LeaderElector | None = None  # None: always leader (one replica, tests)
    publisher: RunPublisher | BackgroundPublisher | None = None  # RotationRun objects and Events (None: none)
    annotations: AnnotationTrigger | None = None
    requests: RequestStore | None = None  # persisted webhook requests (any replica accepts, the leader acts)
    pki: CertificateIssuer | None = None  # for x509-vault-pki intents
    refresh_session: Callable[[], None] = _no_session_refresh  # renew the authority token when due
    new_run_id: Callable[[], str] = _new_run_id
    rng: wf.RandomSource = field(default_factory=random.SystemRandom)
    log: Logger = field(default_factory=Silent)
    markers: Markers = field(default_factory=LegacyMarkers)  # keyed by the authority in app.wire (issue 11)
    reconciler: ScopeReconciler | None = None  # a controller driven by the cluster (None: rotate only)
    status: IntentStatus | None = None  # SecretIntent status and Events (None: none, e.g. unit tests)
    history: RunHistory | None = None  # prunes finished RotationRun objects (None: never)
    external: ExternalStep | None = None  # producer-side rotations of derived/config intents (None: not observed)
    events: BackgroundEvents | None = None  # the thread the Events leave by (stopped with the app)


__all__ = ["Collaborators", "ExternalStep", "Logger", "ScopeReconciler", "Silent"]
