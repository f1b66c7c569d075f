"""SecretIntent status and Events: what ``kubectl get secretintents`` and Argo CD read about each secret.

Three parts, kept apart as the rest of the controller is:

* :func:`compute_status` — **pure**: one secret's :class:`IntentFacts` (what the controller already knows: the
  custom metadata the time trigger reads, the run it drives, the last look at the consumer Secrets' markers, the
  validation findings of the intent) and an injected ``now`` in; the ``status`` out (``phase``, kstatus-style
  conditions ``Ready``, ``Rotating``, ``Held``, ``Degraded``, versions and times, consumers synced n/m). A
  condition keeps its ``lastTransitionTime`` while its status does not change. :func:`transitions` compares two
  statuses and names the Events a change deserves (overdue, held, invalid, recovered): once per transition, never
  once per tick.
* :class:`StatusWriter` — patches the status subresource only when the status differs from what the API server
  has (as last written, or as last listed): a steady state costs no PATCH at all. Best effort, as
  :class:`~.resources.RunPublisher`: an API error is counted and the next pass tries again.
* :class:`IntentStatus` — the loop's hooks (:meth:`~IntentStatus.saw` metadata, :meth:`~IntentStatus.started`,
  :meth:`~IntentStatus.finished` a run, :meth:`~IntentStatus.report` once per tick), which gather the facts,
  re-read only what a finished run changed, look at consumer Secrets (annotations only) at most every
  ``consumer_check_every`` seconds, emit Events on the SecretIntent and set the overdue gauge.

Never a value: the status holds versions, times, counts, run ids, rule ids and the run's error text (which carries
no value by contract, :func:`~chamberlain.rotation.run.clean_error`). Reasons are documented in
``docs/status.md``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from chamberlain import wellknown as wk
from chamberlain.authority.errors import AuthorityError, AuthorityUnavailable
from chamberlain.authority.kv import KV, SecretMetadata
from chamberlain.clock import Clock, rfc3339
from chamberlain.controller.metrics import ControllerMetrics
from chamberlain.controller.scope import policy_of
from chamberlain.intent.model import (
    GROUP,
    SECRET_INTENTS,
    VERSION,
    Consumer,
    Retire,
    RotationPolicySpec,
    SecretIntent,
)
from chamberlain.kube.api import CustomResource, KubeCustomObjects, KubeError, KubePropagation, KubeRunObjects
from chamberlain.lifecycle import retire as lr
from chamberlain.rotation import manual as rm
from chamberlain.rotation.policy import (
    FailureBackoff,
    expires_at,
    failure_retry_at,
    failure_streak,
    jitter_of,
    overdue,
    renewal_time,
)
from chamberlain.rotation.run import RotationRun
from chamberlain.values.markers import VALUE_MARKER_V1, VALUE_MARKER_V1_VERSION

if TYPE_CHECKING:  # collaborators holds these objects: a type-only import, no cycle at run time
    from chamberlain.controller.collaborators import Logger

INTENT_OBJECTS = CustomResource(GROUP, VERSION, SECRET_INTENTS)
# what rotation.manual.consumer_sync reads of a secret's custom metadata (values.markers.same_version)
_MARKER_KEYS = (wk.VALUE_MARKER, wk.VALUE_VERSION, VALUE_MARKER_V1, VALUE_MARKER_V1_VERSION)
KIND = "SecretIntent"
MAX_MESSAGE = 300

# Phases, most urgent first where several apply (see compute_status).
INVALID, PENDING, HELD, ROTATING, OVERDUE, FAILING, OUT_OF_SYNC, READY = (
    "Invalid", "Pending", "Held", "Rotating", "Overdue", "Failing", "OutOfSync", "Ready")
RETIRED = "Retired"  # spec.retire: soft-deleted, or its day passed and nothing is left
# Retiring reasons that are announced as Events, on the SecretIntent and in each consumer namespace
RETIRE_NOTICES = (lr.SCHEDULED, lr.DUE, lr.SOFT_DELETED)


class Reason:
    """Condition reasons (CamelCase, machine-readable; docs/status.md lists what each means)."""

    CURRENT = "Current"
    INVALID = "Invalid"
    NOT_PROVISIONED = "NotProvisioned"
    HELD = "Held"
    NOT_HELD = "NotHeld"
    OVERDUE = "Overdue"
    ROTATION_FAILED = "RotationFailed"
    CONSUMERS_OUT_OF_SYNC = "ConsumersOutOfSync"
    IN_PROGRESS = "InProgress"
    RETRYING = "Retrying"
    BACKING_OFF = "BackingOff"
    IDLE = "Idle"
    AS_EXPECTED = "AsExpected"


class EventReason:
    """Reasons of the Events on a SecretIntent."""

    STARTED = "RotationStarted"
    SUCCEEDED = "RotationSucceeded"
    FAILED = "RotationFailed"
    HELD = "RotationHeld"
    OVERDUE = "TTLOverdue"
    INVALID = "InvalidIntent"
    RECOVERED = "Recovered"


# ----------------------------------------------------------------------------------------------- pure: status


@dataclass(frozen=True, slots=True)
class Consumers:
    """How many consumer Secrets of the cluster carry the current version marker, of how many declared."""

    synced: int
    total: int

    @property
    def all_synced(self) -> bool:
        return self.synced >= self.total


@dataclass(frozen=True, slots=True)
class IntentFacts:
    """What the controller knows about one secret, as :func:`compute_status` reads it. No value."""

    name: str
    generation: int | None = None  # the SecretIntent object's metadata.generation
    exists: bool = False  # a value exists in the authority
    current_version: int | None = None
    last_rotated: datetime | None = None  # last rotation, else creation or handover
    policy: RotationPolicySpec | None = None  # the policy in force (Vault metadata)
    held: bool = False
    held_run: str | None = None
    failures: int = 0  # consecutive failed runs
    last_failure: datetime | None = None
    last_error: str | None = None  # of the last failed run this replica saw (no value, by contract)
    last_run: str | None = None
    active: RotationRun | None = None  # the unfinished run driving the secret
    consumers: Consumers | None = None  # None: not looked at
    invalid: tuple[tuple[str, str], ...] = ()  # (rule id, message) of an intent that failed validation
    authority: str | None = None
    retire: Retire | None = None  # the intent's spec.retire
    decommissioned_at: datetime | None = None  # when chamberlain soft-deleted the data
    decommission_undone_for: str = ""  # the retire day an undo was for
    decommission_undo_until: datetime | None = None  # the end of the undo window promised at the soft-delete


def _iso(t: datetime | None) -> str | None:
    return rfc3339(t) if t is not None else None


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."


def compute_status(facts: IntentFacts, now: datetime, backoff: FailureBackoff | None = None,
                   previous: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The ``status`` of one SecretIntent (pure). Keys whose value is unknown are None (a merge patch removes
    them). ``previous``: the conditions the object carries, whose ``lastTransitionTime`` is kept while their
    status does not change."""
    f = facts
    active = f.active if f.active is not None and not f.active.finished else None
    held = f.held and active is None
    since = f.last_rotated
    late = f.exists and active is None and since is not None and overdue(f.policy, since, now)
    expiry = expires_at(f.policy, since) if since is not None else None
    retry_at = (failure_retry_at(f.failures, f.last_failure, backoff, jitter_of(f.name, f.failures))
                if backoff is not None else None)
    renewal = renewal_time(since, f.policy) if since is not None and f.policy is not None else None
    next_rotation = None
    if f.exists and not held and active is None and not f.invalid and renewal is not None:
        next_rotation = max(renewal, retry_at) if retry_at is not None else renewal
    failing = f.failures > 0
    out_of_sync = f.consumers is not None and not f.consumers.all_synced and active is None
    invalid = "; ".join(f"{rule}: {message}" for rule, message in f.invalid)
    held_msg = f"held after run {f.held_run or '?'}; release with `chamberlain rotate {f.name} --release`"
    late_msg = f"past its ttl since {_iso(expiry)}" + (" (held)" if held else " (rotations failing)" if failing
                                                        else "")
    fail_msg = f"{f.failures} consecutive failed run(s)" + (f", last: {f.last_error}" if f.last_error else "")
    if retry_at is not None and renewal is not None and not held and active is None:
        fail_msg += f"; next attempt at {_iso(max(renewal, retry_at))}"

    # Ready: the value in force is fine (cert-manager's convention: it stays True while a routine rotation runs).
    # What degrades the secret, most urgent first: Degraded says it, and Ready is False for it.
    problem = next(((reason, msg) for hit, reason, msg in (
        (f.invalid, Reason.INVALID, invalid), (held, Reason.HELD, held_msg), (late, Reason.OVERDUE, late_msg),
        (failing, Reason.ROTATION_FAILED, fail_msg)) if hit), None)
    ready: tuple[bool, str, str]
    if problem is not None and (f.invalid or f.exists):  # without a value yet, only invalidity outranks that
        ready = (False, *problem)
    elif not f.exists:
        ready = (False, Reason.NOT_PROVISIONED, "no value in the authority yet")
    elif out_of_sync and f.consumers is not None:
        ready = (False, Reason.CONSUMERS_OUT_OF_SYNC,
                 f"{f.consumers.synced}/{f.consumers.total} consumer Secrets carry version {f.current_version}")
    else:
        ready = (True, Reason.CURRENT, f"version {f.current_version}" + (", rotating" if active else ""))
    retiring = (lr.status_of(f.retire, f.decommissioned_at, f.decommission_undone_for, now, f.decommission_undo_until)
                if f.retire is not None else None)
    retired = f.decommissioned_at is not None or (retiring is not None and retiring[0] == lr.DUE and not f.exists)
    if retired and retiring is not None and retiring[0] == lr.DUE:  # purged after its undo window
        retiring = (lr.PURGED, f"retired since {f.retire.after.isoformat() if f.retire else '?'}: nothing of it is "
                               "left in the authority; remove the intent from Git")
    if retired and not f.invalid:
        ready = (False, lr.SOFT_DELETED, retiring[1] if retiring is not None else "soft-deleted")

    rotating: tuple[bool, str, str]
    if active is not None:
        retrying = active.next_retry_at is not None
        rotating = (True, Reason.RETRYING if retrying else Reason.IN_PROGRESS,
                    f"run {active.run_id}: {active.stage}"
                    + (f", retry at {_iso(active.next_retry_at)}: {active.last_error or ''}" if retrying else ""))
    elif held:
        rotating = (False, Reason.HELD, "rotations wait for a release")
    elif failing:
        rotating = (False, Reason.BACKING_OFF, fail_msg)
    else:
        rotating = (False, Reason.IDLE, "")

    degraded = (True, *problem) if problem is not None else (False, Reason.AS_EXPECTED, "")

    phase = (INVALID if f.invalid else RETIRED if retired else PENDING if not f.exists else HELD if held
             else ROTATING if active else OVERDUE if late else FAILING if failing else OUT_OF_SYNC if out_of_sync
             else READY)
    before = {c.get("type"): c for c in previous}
    stamp = rfc3339(now)

    def cond(kind: str, value: tuple[bool, str, str]) -> dict[str, Any]:
        ok, reason, message = value
        status = "True" if ok else "False"
        old = before.get(kind)
        kept = old.get("lastTransitionTime") if old is not None and old.get("status") == status else None
        c: dict[str, Any] = {"type": kind, "status": status, "reason": reason, "message": _short(message),
                             "lastTransitionTime": str(kept) if kept else stamp}
        if f.generation is not None:
            c["observedGeneration"] = f.generation
        return c

    consumers = f.consumers
    conditions = [cond("Ready", ready), cond("Rotating", rotating), cond("Held", (held, Reason.HELD if held
                  else Reason.NOT_HELD, held_msg if held else "")), cond("Degraded", degraded)]
    if retiring is not None:  # only on an intent that declares spec.retire: other statuses stay as they were
        conditions.append(cond("Retiring", (retiring[0] != lr.UNDONE, *retiring)))
    return {
        "observedGeneration": f.generation,
        "phase": phase,
        "conditions": conditions,
        "authority": f.authority,
        "currentVersion": f.current_version if f.exists else None,
        "lastRotated": _iso(since) if f.exists else None,
        "nextRotation": _iso(next_rotation),
        "expiresAt": _iso(expiry) if f.exists else None,
        "overdue": bool(late),
        "consumers": None if consumers is None else {"synced": consumers.synced, "total": consumers.total},
        "consumersSynced": None if consumers is None else f"{consumers.synced}/{consumers.total}",
        "failedRuns": f.failures,
        "lastFailure": _iso(f.last_failure) if failing else None,
        "heldRun": f.held_run if held else None,
        "activeRun": active.run_id if active is not None else None,
        "lastRun": f.last_run,
    }


def condition(status: Mapping[str, Any] | None, kind: str) -> Mapping[str, Any]:
    """The condition ``kind`` of ``status`` ({} when absent)."""
    for c in (status or {}).get("conditions") or ():
        if isinstance(c, Mapping) and c.get("type") == kind:
            return c
    return {}


@dataclass(frozen=True)
class Notice:
    """An Event a status change deserves."""

    reason: str
    message: str
    warning: bool = True


def transitions(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[Notice]:
    """The Events the change from ``previous`` (None: never written) to ``current`` deserves, each once per
    transition: past the ttl, held, found invalid, and back to Ready after one of those or a failure streak."""
    notices: list[Notice] = []
    held = condition(current, "Held")
    degraded = condition(current, "Degraded")
    if current.get("overdue") and not (previous or {}).get("overdue"):
        notices.append(Notice(EventReason.OVERDUE, str(condition(current, "Ready").get("message")
                                                       or degraded.get("message") or "past its ttl")))
    if held.get("status") == "True" and condition(previous, "Held").get("status") != "True":
        notices.append(Notice(EventReason.HELD, str(held.get("message", ""))))
    if degraded.get("reason") == Reason.INVALID and (
            condition(previous, "Degraded").get("reason") != Reason.INVALID
            or condition(previous, "Degraded").get("message") != degraded.get("message")):
        notices.append(Notice(EventReason.INVALID, str(degraded.get("message", ""))))
    retiring = condition(current, "Retiring")
    if retiring.get("reason") in RETIRE_NOTICES and condition(previous, "Retiring").get("reason") != retiring.get(
            "reason"):
        notices.append(Notice(str(retiring["reason"]), str(retiring.get("message", ""))))
    was = condition(previous, "Ready")
    if (previous is not None and condition(current, "Ready").get("status") == "True" and was.get("status") == "False"
            and was.get("reason") in (Reason.OVERDUE, Reason.ROTATION_FAILED, Reason.HELD, Reason.INVALID)):
        notices.append(Notice(EventReason.RECOVERED, f"ready again ({was.get('reason')} cleared)", warning=False))
    return notices


def normalized(status: Mapping[str, Any] | None) -> dict[str, Any]:
    """``status`` without its None values: what the API server keeps of a merge patch."""
    return {k: v for k, v in (status or {}).items() if v is not None}


# ----------------------------------------------------------------------------------------------- I/O: writing


class StatusKube(KubeCustomObjects, KubeRunObjects, KubePropagation, Protocol):
    """What the status reporter needs: list SecretIntents, patch their status, Events, consumer annotations."""


@dataclass(frozen=True, slots=True)
class Written:
    """What the writer remembers of a status the API server has: a digest of the whole (to skip unchanged
    writes) and the little :func:`compute_status` and :func:`transitions` read back (condition types, statuses,
    reasons, transition times; the Degraded message only when it lists rule ids) — a few hundred bytes per
    secret instead of the status itself (10k intents)."""

    digest: bytes
    conditions: tuple[tuple[str, str, str, str, str], ...]  # (type, status, reason, lastTransitionTime, message)
    overdue: bool
    # the consumers the status reports (synced, total) and for which version: a restarted controller takes them
    # as its last look instead of reading every consumer Secret again at once
    consumers: tuple[int, int] | None = None
    version: int | None = None
    generation: int | None = None  # observedGeneration: the consumers the spec declared then

    @classmethod
    def of(cls, status: Mapping[str, Any]) -> Written:
        # interned: a handful of types, statuses and reasons, and the few ticks transitions happened at
        conditions = tuple(
            (sys.intern(str(c.get("type", ""))), sys.intern(str(c.get("status", ""))),
             sys.intern(str(c.get("reason", ""))), sys.intern(str(c.get("lastTransitionTime", ""))),
             str(c.get("message", "")) if c.get("reason") == Reason.INVALID else "")
            for c in status.get("conditions") or () if isinstance(c, Mapping))
        conditions = _shared(conditions)
        counted = status.get("consumers")
        consumers = None
        if isinstance(counted, Mapping) and isinstance(counted.get("synced"), int) and isinstance(
                counted.get("total"), int):
            consumers = (int(counted["synced"]), int(counted["total"]))
        version, generation = status.get("currentVersion"), status.get("observedGeneration")
        return cls(_digest(status), conditions, bool(status.get("overdue")), consumers,
                   version if isinstance(version, int) else None, generation if isinstance(generation, int) else None)

    def status(self) -> dict[str, Any]:
        """The remembered part, shaped as a status."""
        return {"overdue": self.overdue, "conditions": [
            {"type": t, "status": st, "reason": r, "lastTransitionTime": at, "message": m}
            for t, st, r, at, m in self.conditions]}


_CONDITIONS: dict[tuple[tuple[str, str, str, str, str], ...], tuple[tuple[str, str, str, str, str], ...]] = {}
_SHARED_MAX = 20_000


def _shared(conditions: tuple[tuple[str, str, str, str, str], ...]) -> tuple[tuple[str, str, str, str, str], ...]:
    """One tuple per distinct set of conditions: thousands of secrets written at one tick carry the same (about
    300 bytes each at 10k intents). Bounded: past ``_SHARED_MAX`` distinct sets the table starts afresh."""
    if len(_CONDITIONS) >= _SHARED_MAX:
        _CONDITIONS.clear()
    return _CONDITIONS.setdefault(conditions, conditions)


def _digest(status: Mapping[str, Any]) -> bytes:
    text = json.dumps(normalized(status), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


@dataclass
class StatusWriter:
    """Patches a SecretIntent's status subresource only when it changed (loop thread only)."""

    kube: StatusKube
    namespace: str
    metrics: ControllerMetrics | None = None
    failures: int = 0
    patches: int = 0
    _known: dict[str, Written] = field(default_factory=dict)  # what the API server has, by intent name
    _count: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def seen(self, name: str, status: Mapping[str, Any] | None) -> None:
        """What a list returned for ``name`` (the truth, should anything else have written)."""
        if status:
            self._known[name] = Written.of(status)
        else:
            self._known.pop(name, None)

    def seen_summary(self, name: str, written: Written | None) -> None:
        """:meth:`seen`, from a summary a watch already made (:class:`Written`; None: no status)."""
        if written is not None:
            self._known[name] = written
        else:
            self._known.pop(name, None)

    def reported(self, name: str, version: int | None, generation: int | None) -> Consumers | None:
        """The consumers the status the API server has reports, when it reports them for this value ``version``
        and object ``generation`` (None otherwise)."""
        got = self._known.get(name)
        if (got is None or got.consumers is None or version is None or got.version != version
                or generation is None or got.generation != generation):
            return None
        return Consumers(*got.consumers)

    def known(self, name: str) -> dict[str, Any] | None:
        """The remembered part of the status the API server has (None: none yet)."""
        got = self._known.get(name)
        return got.status() if got is not None else None

    def write(self, name: str, status: Mapping[str, Any]) -> bool:
        """Patch when changed; True when a PATCH was sent and accepted."""
        want = Written.of(status)
        known = self._known.get(name)
        if known is not None and known.digest == want.digest:
            return False
        try:
            self.kube.patch_custom_object_status(INTENT_OBJECTS, self.namespace, name, dict(status))
        except KubeError:
            with self._count:
                self.failures += 1
            if self.metrics is not None:
                self.metrics.status_writes.labels("failed").inc()
            return False
        with self._count:  # the report's workers write at once
            self.patches += 1
        if self.metrics is not None:
            self.metrics.status_writes.labels("patched").inc()
        self._known[name] = want
        return True


# ----------------------------------------------------------------------------------------------- the hooks


@dataclass(frozen=True, slots=True)
class Observed:
    """One SecretIntent object as the status reporter needs it: never its spec, only a digest of its status."""

    generation: int | None
    uid: str | None
    status: Written | None


class ObjectFeed(Protocol):
    """The SecretIntent objects changed since the last drain, as a watch saw them (None: deleted)."""

    def drain(self) -> Mapping[str, Observed | None]: ...


@dataclass(slots=True)
class _Looked:
    marker: str
    consumers: Consumers
    at: float  # monotonic


@dataclass
class IntentStatus:
    """The SecretIntent status of every secret in scope (and of intents rejected by validation), kept by the
    leader's loop thread. :meth:`set_rejected` may be called from another thread (it swaps one reference)."""

    kube: StatusKube
    kv: KV
    namespace: str
    clock: Clock
    metrics: ControllerMetrics
    log: Logger
    backoff: FailureBackoff | None = field(default_factory=FailureBackoff)
    consumer_check_every: float = 300.0
    list_every: float = 30.0  # seconds between two lists of the SecretIntents (generation, uid, status)
    # a watch of the SecretIntents (controller run --from-cluster): read instead of listing them
    feed: ObjectFeed | None = None
    consumer_looks_per_second: float | None = None  # periodic looks' rate limit (None: none; see ControllerConfig)
    report_slice: float | None = None  # seconds of status work per report (None: no limit)
    # True when a trigger from outside waits for the loop: a sliced report then stops early (wire: the loop's
    # Controller.arrived)
    interrupted: Callable[[], bool] = field(default=lambda: False)
    # secrets brought up to date at once: each costs a metadata read, consumer GETs and a PATCH, one after
    # another; a first report of 10k intents, one secret at a time, took minutes of round trips
    parallel: int = 1
    # the templated consumers of other intents that read a placed secret (the loop sets it from its scope)
    templated: Callable[[rm.Placed], Sequence[tuple[SecretIntent, Consumer]]] = field(default=lambda _placed: ())
    writer: StatusWriter = field(init=False)
    failures: int = 0  # API errors of lists and events (status patches count in writer.failures)
    _objects: dict[str, tuple[int | None, str | None]] = field(default_factory=dict)  # (generation, uid)
    _listed_at: float | None = None
    # per secret, what its metadata said (compact: 10k intents) and the few keys a look at the consumers needs
    _facts_of: dict[str, IntentFacts] = field(default_factory=dict)
    _markers: dict[str, dict[str, str]] = field(default_factory=dict)
    _reread: set[str] = field(default_factory=set)
    _dirty: set[str] = field(default_factory=set)
    _runs: dict[str, RotationRun] = field(default_factory=dict)  # the active run last seen, by secret
    _errors: dict[str, str] = field(default_factory=dict)  # the last failed run's error, by secret
    _looked: dict[str, _Looked] = field(default_factory=dict)
    _force_look: set[str] = field(default_factory=set)  # a run finished: look at its consumers at once
    _tokens: float = 0.0  # periodic consumer looks (GETs) allowed now (consumer_looks_per_second)
    _tokens_at: float | None = None
    _rejected: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pool: ThreadPoolExecutor | None = None

    def __post_init__(self) -> None:
        self.writer = StatusWriter(self.kube, self.namespace, self.metrics)

    @property
    def backlog(self) -> bool:
        """Statuses left for the next report (a report stops after ``report_slice`` seconds)."""
        with self._lock:
            return bool(self._dirty)

    # ------------------------------------------------------------------ what the loop tells

    def saw(self, name: str, meta: SecretMetadata | None) -> None:
        """The time trigger read ``name``'s metadata (no second read needed)."""
        self._remember(name, meta)
        self._reread.discard(name)
        self._dirty.add(name)

    def forget(self, name: str) -> None:
        """An intent the scope no longer holds: nothing of it is remembered (the loop drops its metrics too)."""
        for cache in (self._facts_of, self._markers, self._runs, self._errors, self._looked):
            cache.pop(name, None)
        self._reread.discard(name)
        self._force_look.discard(name)
        self._dirty.discard(name)

    def set_rejected(self, rejected: Mapping[str, Iterable[tuple[str, str]]]) -> None:
        """Intents that failed validation in the cluster, with (rule id, message) findings: ``Degraded`` with
        the rule ids, phase ``Invalid``. Replaces the previous set."""
        fresh = {name: tuple(findings) for name, findings in rejected.items()}
        with self._lock:
            changed = set(fresh) ^ set(self._rejected) | {n for n in fresh if fresh[n] != self._rejected.get(n)}
            self._rejected = fresh
            self._dirty |= changed

    def started(self, run: RotationRun) -> None:
        self._dirty.add(run.secret)
        self._event(run.secret, EventReason.STARTED,
                    f"run {run.run_id} started ({run.trigger}: {run.reason})", warning=False)

    def finished(self, run: RotationRun) -> None:
        """A run ended and was recorded: its metadata is read again at the next report, the consumers looked at.
        A failure alerts (Warning Event) once per streak: later failures of the same streak only back off."""
        name = run.secret
        self._runs.pop(name, None)
        self._reread.add(name)
        self._force_look.add(name)
        self._dirty.add(name)
        if run.succeeded:
            self._errors.pop(name, None)
            self._event(name, EventReason.SUCCEEDED, f"run {run.run_id}: version {run.current_version} "
                        f"({run.stage})", warning=False)
        elif run.stage == "failed":
            self._errors[name] = run.last_error or run.stage
            if run.failures_before == 0:  # once per streak (the loop logs the repeats)
                self._event(name, EventReason.FAILED, f"run {run.run_id} failed: {run.last_error or run.stage}")
        else:  # held: the Held condition's transition says so (once)
            self._errors[name] = run.last_error or run.stage

    # ------------------------------------------------------------------ one pass per tick

    def report(self, placed: Mapping[str, rm.Placed], active: Mapping[str, RotationRun], now: datetime) -> int:
        """Bring the status of every secret that may have changed up to date; returns the PATCHes sent."""
        self._list()
        for name, run in active.items():
            if self._runs.get(name) != run:
                self._runs[name] = run
                self._dirty.add(name)
        for name in list(self._runs):
            if name not in active:
                del self._runs[name]
                self._dirty.add(name)
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            rejected = self._rejected
        todo = sorted(dirty, reverse=True)
        deadline = None if self.report_slice is None else self.clock.monotonic() + self.report_slice
        sent = 0
        while todo:
            if deadline is not None and len(dirty) - len(todo) > 1 and (self.interrupted()
                                                                         or self.clock.monotonic() >= deadline):
                with self._lock:  # the rest at the next tick: a first report of 10k intents takes minutes, and
                    self._dirty |= set(todo)  # the loop must renew its Lease and serve triggers meanwhile
                break
            names = [todo.pop() for _ in range(min(self.parallel, len(todo)))]
            if self.parallel <= 1:
                outcomes = [self._one(names[0], placed, rejected, now)]
            else:  # each secret in one worker: its own status and Events stay in order
                outcomes = list(self._workers().map(lambda n: self._one(n, placed, rejected, now), names))
            unavailable = next((o for o in outcomes if isinstance(o, AuthorityUnavailable)), None)
            if unavailable is not None:
                with self._lock:
                    self._dirty |= {n for n, o in zip(names, outcomes, strict=True)
                                    if isinstance(o, AuthorityUnavailable)} | set(todo)  # next tick
                raise unavailable
            sent += sum(o for o in outcomes if isinstance(o, int))
        return sent

    def _workers(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.parallel, thread_name_prefix="chamberlain-status")
        return self._pool

    def close(self) -> None:
        """Stop the report's workers (if any ran)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def _one(self, name: str, placed: Mapping[str, rm.Placed], rejected: Mapping[str, tuple[tuple[str, str], ...]],
             now: datetime) -> int | AuthorityUnavailable:
        """One secret's status brought up to date: the PATCHes sent (0 or 1), or the authority's unavailability
        (returned, not raised: the caller requeues the chunk and raises once)."""
        if name not in self._objects:  # no SecretIntent object (a controller run from a checkout): no status
            return 0
        try:
            facts = self._facts(name, placed.get(name), rejected.get(name, ()))
        except AuthorityUnavailable as exc:
            return exc
        except AuthorityError as exc:
            self.log.warning("status: cannot read a secret's metadata", secret=name, error=type(exc).__name__)
            return 0
        if facts is None:
            return 0
        p = placed.get(name)
        return self._apply(name, facts, now, p.vault.full if p is not None else "",
                           p.intent.spec.consumers if p is not None else ())

    def _list(self) -> None:
        if self.feed is not None:
            self._drain(self.feed)
            return
        mono = self.clock.monotonic()
        if self._listed_at is not None and mono - self._listed_at < self.list_every:
            return
        try:
            objects = self.kube.list_custom_objects(INTENT_OBJECTS, self.namespace)
        except KubeError as exc:
            self.failures += 1
            self.log.warning("status: cannot list SecretIntents", error=type(exc).__name__, detail=str(exc)[:400])
            return
        self._listed_at = mono
        fresh: dict[str, tuple[int | None, str | None]] = {}
        for obj in objects:
            meta = obj.get("metadata") or {}
            name = str(meta.get("name", ""))
            if not name:
                continue
            generation = meta.get("generation")
            # only what the status needs: a kept object would keep its annotations (last-applied: the whole spec)
            fresh[name] = (generation if isinstance(generation, int) else None, str(meta.get("uid") or "") or None)
            if self._objects.get(name, (None, None))[0] != fresh[name][0] or name not in self._objects:
                self._dirty.add(name)
            self.writer.seen(name, obj.get("status"))
        self._objects = fresh

    def _drain(self, feed: ObjectFeed) -> None:
        """What the watch saw since the last tick, instead of a list (no request)."""
        for name, observed in feed.drain().items():
            if observed is None:
                self._objects.pop(name, None)
                self.writer.seen_summary(name, None)
                continue
            fresh = (observed.generation, observed.uid)
            if self._objects.get(name) != fresh:
                self._dirty.add(name)
            self._objects[name] = fresh
            self.writer.seen_summary(name, observed.status)
        self._listed_at = self.clock.monotonic()

    def _facts(self, name: str, placed: rm.Placed | None,
               invalid: tuple[tuple[str, str], ...]) -> IntentFacts | None:
        gen = self._objects[name][0]
        if placed is None:
            return IntentFacts(name, gen, invalid=invalid) if invalid else None
        if name in self._reread or name not in self._facts_of:
            self._remember(name, self.kv.read_metadata(placed.vault.mount, placed.vault.path))
            self._reread.discard(name)
        known = self._facts_of[name]
        return replace(known, generation=gen, last_error=self._errors.get(name), active=self._runs.get(name),
                       consumers=self._consumers(name, placed, self._markers[name], known.current_version)
                       if known.exists else None,
                       invalid=invalid, retire=placed.intent.spec.retire)

    def _remember(self, name: str, meta: SecretMetadata | None) -> None:
        custom: Mapping[str, str] = meta.custom if meta is not None else {}
        failures, last_failure = failure_streak(custom)
        self._facts_of[name] = IntentFacts(
            name=name, exists=meta is not None and meta.current_version > 0,
            current_version=meta.current_version if meta is not None else None,
            last_rotated=rm.last_changed(custom), policy=policy_of(custom),
            held=custom.get(wk.HELD) == "true", held_run=custom.get(wk.HELD_RUN) or None,
            failures=failures, last_failure=last_failure, last_run=custom.get(wk.LAST_RUN) or None,
            authority=sys.intern(custom[wk.AUTHORITY]) if custom.get(wk.AUTHORITY) else None,
            decommissioned_at=lr.observe_time(custom.get(wk.DECOMMISSIONED_AT)),
            decommission_undone_for=custom.get(wk.DECOMMISSION_UNDONE_FOR, ""),
            decommission_undo_until=lr.observe_time(custom.get(wk.DECOMMISSION_UNDO_UNTIL)),
        )
        self._markers[name] = {k: custom[k] for k in _MARKER_KEYS if k in custom}

    def _consumers(self, name: str, placed: rm.Placed, custom: Mapping[str, str],
                   version: int | None = None) -> Consumers | None:
        """Synced n/m from the consumer Secrets' marker annotations, looked at again when the marker changed, a
        run finished, or ``consumer_check_every`` passed; a run in flight is not looked at (it checks itself).
        Without a look of its own yet, the count the object's status reports for the current version stands for
        one (a restart reads no consumer Secret at once: 10k GETs one after another took minutes), due again
        within ``consumer_check_every`` at a point spread by name."""
        marker = custom.get(wk.VALUE_MARKER, "")
        last = self._looked.get(name)
        mono = self.clock.monotonic()
        if last is None and name not in self._force_look:
            reported = self.writer.reported(name, version, self._objects.get(name, (None, None))[0])
            if reported is not None:
                spread = (int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "big")
                          % 1000) / 1000 * self.consumer_check_every
                last = self._looked[name] = _Looked(marker, reported, mono - spread)
        forced = name in self._force_look or (last is not None and last.marker != marker)
        if last is not None and (name in self._runs or (not forced and mono - last.at < self.consumer_check_every)):
            return last.consumers
        if last is not None and not forced and not self._spend(len(placed.intent.spec.consumers), mono):
            return last.consumers  # over the periodic looks' budget: looked at again at a later report
        self._force_look.discard(name)
        rows = rm.consumer_sync(self.kube, placed.intent, marker, custom, self.templated(placed))
        if any(r.get("error") for r in rows) and last is not None:
            return last.consumers  # the API server did not answer: keep the last look
        counted = Consumers(sum(1 for r in rows if r.get("inSync")), len(rows))
        self._looked[name] = _Looked(marker, counted, mono)
        return counted

    def _spend(self, looks: int, mono: float) -> bool:
        """Whether a periodic look of ``looks`` consumer Secrets fits the budget now (and spend it)."""
        rate = self.consumer_looks_per_second
        if rate is None:
            return True
        with self._lock:
            return self._take(looks, mono, rate)

    def _take(self, looks: int, mono: float, rate: float) -> bool:
        cap = max(10.0, rate * 10)
        if self._tokens_at is not None:
            self._tokens = min(self._tokens + (mono - self._tokens_at) * rate, cap)
        self._tokens_at = mono
        if self._tokens < min(looks, cap):  # a secret with more consumers than the cap goes into debt
            return False
        self._tokens -= looks
        return True

    def _apply(self, name: str, facts: IntentFacts, now: datetime, path: str,
               consumers: Sequence[Consumer] = ()) -> int:
        previous = self.writer.known(name)
        status = compute_status(facts, now, self.backoff, (previous or {}).get("conditions") or ())
        self.metrics.overdue.labels(name, path).set(1 if status["overdue"] else 0)
        if facts.failures:  # a series only while failing: per-secret gauges cost memory at 10k intents
            self.metrics.failed_runs.labels(name, path).set(facts.failures)
        else:
            with contextlib.suppress(KeyError):
                self.metrics.failed_runs.remove(name, path)
        if not self.writer.write(name, status):
            return 0
        # Events follow a written change only: an unchanged status (every tick of a steady state) or a failed
        # patch (retried next tick) emits nothing, so each transition is announced once.
        for notice in transitions(previous or None, status):
            self._event(name, notice.reason, notice.message, notice.warning)
            if notice.reason in RETIRE_NOTICES:
                self._consumer_events(name, consumers, notice)
        return 1

    def _consumer_events(self, name: str, consumers: Sequence[Consumer], notice: Notice) -> None:
        """A retirement reaches the teams that consume the secret where they look: an Event in each consumer
        namespace, on the ExternalSecret that materializes it."""
        for c in sorted({(c.namespace, c.secret_name) for c in consumers}):
            involved = {"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "name": c[1],
                        "namespace": c[0]}
            try:
                self.kube.create_event(c[0], involved, notice.reason,
                                       _short(f"SecretIntent {name} (Secret {c[1]}): {notice.message}"), "Warning")
            except KubeError:
                self.failures += 1

    def _event(self, name: str, reason: str, message: str, warning: bool = True) -> None:
        if name not in self._objects:
            self._list()  # the first tick starts runs before its report lists: the Event needs the object's uid
            if self._listed_at is not None and name not in self._objects:
                return  # no SecretIntent object to attach it to (a controller run from a checkout)
        uid = self._objects[name][1] if name in self._objects else None
        involved = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": name, "namespace": self.namespace}
        if uid:
            involved["uid"] = uid
        try:
            self.kube.create_event(self.namespace, involved, reason, _short(f"{name}: {message}"),
                                   "Warning" if warning else "Normal")
        except KubeError:
            self.failures += 1


__all__ = [
    "FAILING",
    "HELD",
    "INVALID",
    "OUT_OF_SYNC",
    "OVERDUE",
    "PENDING",
    "READY",
    "RETIRED",
    "RETIRE_NOTICES",
    "ROTATING",
    "Consumers",
    "EventReason",
    "IntentFacts",
    "IntentStatus",
    "Notice",
    "ObjectFeed",
    "Observed",
    "Reason",
    "StatusKube",
    "StatusWriter",
    "Written",
    "compute_status",
    "condition",
    "normalized",
    "transitions",
]
