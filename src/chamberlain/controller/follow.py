"""A following cluster's controller: it restarts its own consumers for versions another cluster rotated.

When the controller's cluster is not its environment's rotating cluster (:mod:`chamberlain.rotation.clusters`),
the loop's time-trigger evaluation hands every secret's metadata here instead of rotating. For each secret whose
``value-version`` is past this cluster's acknowledgement (:func:`~chamberlain.rotation.clusters.follow_due`):

1. every ExternalSecret of the secrets to follow is poked at once (``force-sync``), so ESO refreshes them in
   parallel;
2. each secret's consumer Secrets are awaited until they carry its marker (bounded by the propagation timeout; a
   secret not in sync yet is tried again at the next evaluation, e.g. while ESO cannot reach the authority);
3. the workloads of the secrets in sync roll once, through the controller's one restart wave (a workload fed by
   several of them rolls once), with the owner's run id as the restart token: the same token in every cluster,
   and a crash before step 4 never rolls twice;
4. the acknowledgement is written under this cluster's own path (check-and-set).

A follower writes nothing else: no runtime value, no metadata, no run record (its orchestrator policy allows none).
Acknowledged versions are remembered in memory, so steady state costs no read beyond the metadata the evaluation
reads anyway; a restarted controller reads each acknowledgement once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from chamberlain.authority.errors import AuthorityError, AuthorityUnavailable
from chamberlain.authority.kv import KV, SecretMetadata
from chamberlain.clock import Clock
from chamberlain.controller.batch import RestartWave, batch_token
from chamberlain.controller.collaborators import Logger, Silent
from chamberlain.errors import ChamberlainError
from chamberlain.kube.api import KubeError, KubePropagation
from chamberlain.propagation import Change, WaitInterrupted, force_refresh, wait_in_sync
from chamberlain.rotation import clusters
from chamberlain.rotation import manual as rm
from chamberlain.rotation import workflow as wf


@dataclass(frozen=True)
class Pending:
    """One secret to follow this evaluation."""

    placed: rm.Placed
    follow: clusters.Follow
    cas: int  # the acknowledgement record's version (0: none yet)


@dataclass
class Follower:
    """The follow protocol of one cluster's controller (loop thread only)."""

    kv: KV
    kube: KubePropagation
    clock: Clock
    wave: RestartWave
    cluster: str
    timeout: float = 120.0
    poll: float = 0.5
    log: Logger = field(default_factory=Silent)
    acknowledged: dict[str, tuple[int, int]] = field(default_factory=dict)  # secret -> (version acked, record cas)
    followed: int = 0  # versions acknowledged by this process (restarts included or not)
    attempts: dict[str, int] = field(default_factory=dict)  # secret -> refreshes asked for by this process
    # every consumer a placed secret reaches (the loop adds other intents' templated consumers)
    consumers: Callable[[rm.Placed], list[wf.Consumer]] = field(default=lambda placed: rm.consumers_of(placed.intent))
    # the controller is stopping (Controller.stopping): no more waits; what is left is followed by the next leader
    interrupted: Callable[[], bool] = field(default=lambda: False)

    def due(self, placed: rm.Placed, meta: SecretMetadata | None) -> Pending | None:
        """The follow ``placed`` needs given its metadata; reads its acknowledgement once per process."""
        if meta is None:
            return None
        known = self.acknowledged.get(placed.name)
        if known is None:
            ack, cas = clusters.read_acknowledgement(self.kv, placed.vault, self.cluster)
            known = (ack.version if ack is not None else 0, cas)
            self.acknowledged[placed.name] = known
        version, cas = known
        # no record at all: the first acknowledgement (no restart); a record: restart for any later version
        seen = clusters.Acknowledgement(self.cluster, version, "-", "", self.clock.now()) if cas else None
        found = clusters.follow_due(meta.custom, seen)
        return Pending(placed, found, cas) if found is not None else None

    def follow(self, pending: list[Pending]) -> None:
        """Refresh, wait, restart once, acknowledge (see the module). Failures are logged and retried at the next
        evaluation; an outage of the authority propagates (the tick stops)."""
        if not pending or self.interrupted():
            return
        poked: list[Pending] = []
        for p in pending:
            # a new token per attempt: a poke ESO missed (or could not act on) is a change again next time
            attempt = self.attempts[p.placed.name] = self.attempts.get(p.placed.name, 0) + 1
            try:
                force_refresh(self.kube, [c.external_secret for c in self.consumers(p.placed)],
                              f"follow.{p.follow.run or p.follow.version}.{attempt}")
            except KubeError as exc:  # its API server is not back yet: no point waiting, next evaluation
                self.log.warning("follow: refresh failed; tried again at the next evaluation", secret=p.placed.name,
                                 error=type(exc).__name__)
                continue
            poked.append(p)
        ready: list[Pending] = []
        for p in poked:
            consumers = [c.secret for c in self.consumers(p.placed)]
            try:
                late = [r for r in wait_in_sync(self.kube, consumers, p.follow.marker, self.clock, self.timeout,
                                                self.poll, self.interrupted) if not r.in_sync]
            except WaitInterrupted:  # stopping: nothing of this pass is acknowledged (no restart begun either)
                return
            if late:
                self.log.warning("follow: consumers not in sync yet; tried again at the next evaluation",
                                 secret=p.placed.name, version=p.follow.version,
                                 late=[f"{r.consumer.namespace}/{r.consumer.name}" for r in late])
                continue
            ready.append(p)
        if self.interrupted():
            return
        restarting = [p for p in ready if p.follow.restart]
        self.wave.begin([p.follow.run or f"v{p.follow.version}" for p in restarting])
        for p in ready:
            self._acknowledge(p)

    def _acknowledge(self, p: Pending) -> None:
        name = p.placed.name
        try:
            rolled: tuple[str, ...] = ()
            if p.follow.restart:
                change = Change(name, tuple((c.secret, c.workloads) for c in self.consumers(p.placed)))
                rolled = self.wave.restart(change, batch_token([p.follow.run or f"v{p.follow.version}"])).rolled
            ack = clusters.Acknowledgement(self.cluster, p.follow.version, p.follow.marker, p.follow.run,
                                           self.clock.now())
            cas = clusters.write_acknowledgement(self.kv, p.placed.vault, ack, p.cas)
        except AuthorityUnavailable:
            raise
        except (AuthorityError, ChamberlainError) as exc:  # KubeError and CasConflict included: next evaluation
            self.acknowledged.pop(name, None)  # read the record again then
            self.log.warning("follow: cannot acknowledge", secret=name, version=p.follow.version,
                             error=type(exc).__name__, detail=str(exc)[:200])
            return
        self.acknowledged[name] = (p.follow.version, cas)
        self.attempts.pop(name, None)
        self.followed += 1
        self.log.info("followed a version rotated by another cluster", secret=name, version=p.follow.version,
                      run=p.follow.run, restarted=list(rolled))


__all__ = ["Follower", "Pending"]
