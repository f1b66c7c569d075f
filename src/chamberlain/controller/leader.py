"""Leader election on a ``coordination.k8s.io`` Lease, so two controller replicas never act at once.

The decision is pure (:func:`decide`: the Lease as read, who I am, an injected ``now``); :class:`LeaderElector`
does the one read and, when the decision says so, the one write with the Lease's ``resourceVersion`` as the
precondition — two replicas racing for an expired Lease both try to replace the same version and exactly one
wins (the other gets a conflict and follows).

Why not the ``kubernetes`` client's ``leaderelection`` package: it runs its own blocking loop and callbacks on
threads, while the controller needs leadership as a value it checks before every action, with the clock injected
for tests. The protocol is small: read, then create or replace with a precondition.

Safety margin: a leader stops acting as soon as its own last successful renewal is older than the lease duration,
even if it could not write (API server unreachable): by then another replica may hold the Lease. The run record
in Vault (a check-and-set lease per secret) is the second line of defence.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from chamberlain.clock import Clock
from chamberlain.kube.api import KubeConflict, KubeError, KubeLeases, KubeNotFound, LeaseRecord


class Decision(StrEnum):
    CREATE = "create"  # no Lease yet: create it holding it
    RENEW = "renew"  # I hold it: renew
    TAKE_OVER = "take-over"  # nobody holds it, or the holder stopped renewing
    FOLLOW = "follow"  # someone else holds a live Lease


def expired(record: LeaseRecord, now: datetime) -> bool:
    """Whether the holder's last renewal is older than the lease duration."""
    last = record.renewed or record.acquired
    return last is None or now >= last + timedelta(seconds=record.duration_seconds)


def decide(record: LeaseRecord | None, me: str, now: datetime) -> Decision:
    """What a replica named ``me`` should do about the Lease as read at ``now`` (pure)."""
    if record is None:
        return Decision.CREATE
    if record.holder == me:
        return Decision.RENEW
    if not record.holder or expired(record, now):
        return Decision.TAKE_OVER
    return Decision.FOLLOW


@dataclass
class LeaderElector:
    """Leadership of one controller replica; call :meth:`step` once per loop, before acting.

    :meth:`step` is cheap between two looks: the leader renews once a third of the lease duration has passed since
    its last renewal (one PUT, with the resourceVersion of its own last write as the precondition: no GET), and a
    follower reads the Lease at the same cadence (sooner when the holder's lease expires before that). Every other
    step answers from memory, so a controller ticking every second costs the API server a request every 5 s (15 s
    lease), not a GET and a PUT per tick (client-go's elector renews every 2 s for the same reason)."""

    leases: KubeLeases
    namespace: str
    name: str
    identity: str
    clock: Clock
    duration_seconds: int = 15
    renew_every: float | None = None  # seconds between two renewals or looks; None: a third of the duration
    _renewed: datetime | None = None  # my last successful acquire/renew, on my clock
    _mine: LeaseRecord | None = None  # the Lease as my last write left it (its resourceVersion: the precondition)
    _next_look: datetime | None = None  # a follower's next read of the Lease
    api_reachable: bool | None = None  # did the last request get an answer from the API server (/readyz); None: none
    requests: int = 0  # API requests made (the benchmark counts them)

    @property
    def cadence(self) -> timedelta:
        every = self.renew_every if self.renew_every is not None else self.duration_seconds / 3
        return timedelta(seconds=max(every, 0.0))

    @property
    def is_leader(self) -> bool:
        return (self._renewed is not None
                and self.clock.now() < self._renewed + timedelta(seconds=self.duration_seconds))

    def step(self) -> bool:
        """Acquire or renew the Lease when due; returns whether this replica may act now."""
        now = self.clock.now()
        if self._renewed is not None:
            if now < self._renewed + self.cadence:
                return self.is_leader  # renewed lately: nothing to ask the API server
            if self._mine is not None:
                return self._renew(now)
        elif self._next_look is not None and now < self._next_look:
            return False  # following: the holder's lease cannot be taken before the next look
        return self._look(now)

    def _renew(self, now: datetime) -> bool:
        """Renew blind: replace my own last write. A conflict means someone else wrote the Lease since: read it."""
        assert self._mine is not None
        try:
            self.requests += 1
            self._mine = self.leases.replace_lease(self.namespace, self.name, replace(self._mine, renewed=now))
        except (KubeConflict, KubeNotFound):
            self.api_reachable = True
            return self._look(now)
        except KubeError:
            self.api_reachable = False
            return self.is_leader  # cannot reach the API server: act only while my last renewal is valid
        self.api_reachable = True
        self._renewed = now
        return True

    def _look(self, now: datetime) -> bool:
        """Read the Lease, and acquire or renew it when :func:`decide` says so."""
        try:
            self.requests += 1
            record = self.leases.get_lease(self.namespace, self.name)
            decision = decide(record, self.identity, now)
            self.api_reachable = True
            if decision is Decision.FOLLOW:
                assert record is not None
                self._follow(now, record)
                return False
            mine = LeaseRecord(
                holder=self.identity,
                duration_seconds=self.duration_seconds,
                acquired=record.acquired if record is not None and decision is Decision.RENEW else now,
                renewed=now,
                transitions=(record.transitions if record is not None else 0)
                + (1 if decision is Decision.TAKE_OVER else 0),
                resource_version=record.resource_version if record is not None else "",
            )
            self.requests += 1
            if decision is Decision.CREATE:
                written = self.leases.create_lease(self.namespace, self.name, mine)
            else:
                written = self.leases.replace_lease(self.namespace, self.name, mine)
        except (KubeConflict, KubeNotFound):
            self._follow(now, None)  # another replica won the race: follow
            self.api_reachable = True
            return False
        except KubeError:
            self.api_reachable = False
            return self.is_leader  # cannot reach the API server: act only while my last renewal is valid
        self._renewed, self._mine, self._next_look = now, written, None
        return True

    def _follow(self, now: datetime, record: LeaseRecord | None) -> None:
        """Follow until the next look: a third of the duration from now, or the holder's expiry when sooner."""
        self._renewed, self._mine = None, None
        look = now + self.cadence
        if record is not None and record.holder:
            last = record.renewed or record.acquired
            if last is not None:
                look = min(look, last + timedelta(seconds=record.duration_seconds))
        self._next_look = look

    def release(self) -> None:
        """Give the Lease up on graceful shutdown, so another replica takes over at once (best effort). One PATCH
        with my last write's resourceVersion as the precondition, no GET first (a stop waits for each request). A
        conflict means the Lease was written since: by another replica, or by a renewal of mine whose answer was
        lost; only then is it read, and cleared if it still names me."""
        mine = self._mine
        self._renewed, self._mine = None, None
        if mine is None:
            return
        try:
            self.requests += 1
            self.leases.replace_lease(self.namespace, self.name, replace(mine, holder=None, renewed=None))
        except KubeConflict:
            try:
                self.requests += 1
                record = self.leases.get_lease(self.namespace, self.name)
                if record is not None and record.holder == self.identity:
                    self.requests += 1
                    self.leases.replace_lease(self.namespace, self.name, replace(record, holder=None, renewed=None))
            except KubeError:
                pass  # changed again, or unreachable: the Lease expires by itself
        except KubeError:
            pass  # unreachable, or gone: the Lease expires by itself


__all__ = ["Decision", "LeaderElector", "decide", "expired"]
