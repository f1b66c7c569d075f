"""The controller's configuration: what an operator chose, fixed for the life of the process.

Intervals, timeouts, parallelism, the actor named in the ledger, the Lease. Read by the loop thread; nothing here
changes while the controller runs (:meth:`~chamberlain.controller.loop.Controller.set_evaluate_every` swaps in a
whole new value, it never edits this one). No I/O, no clients: those are
:class:`~chamberlain.controller.collaborators.Collaborators`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chamberlain.rotation.policy import FailureBackoff

DEFAULT_LEASE = "chamberlain-controller"
REQUEST_RETENTION_FLOOR = 300.0  # triggers.webhook.DEFAULT_WINDOW: a signed request is stale after it


@dataclass(frozen=True)
class ControllerConfig:
    actor: str = "chamberlain-controller"  # who the ledger and the run records name
    evaluate_every: float = 30.0  # seconds between two evaluations of the time trigger
    # seconds of a pass per tick (None: a whole pass in one tick): 10k metadata reads take seconds, and a trigger
    # that wakes the loop must not wait for all of them
    evaluate_slice: float | None = 0.1
    # the time trigger reads again secrets it already read at most this fast (None: every secret every pass); new,
    # changed and just-rotated secrets are read at once (controller.freshness)
    metadata_reads_per_second: float | None = 20.0
    propagation_timeout: float = 120.0  # seconds a run waits for every consumer Secret to carry the new marker
    poll: float = 0.5  # seconds between two looks at the consumer Secrets while waiting
    workers: int = 1  # runs advanced in parallel (Vault and API calls are I/O; `wire` uses 8)
    max_pause: float = 30.0  # cap of the back-off between ticks while the authority is unreachable
    keep_finished: int = 1000  # finished runs remembered for callers (`Controller.finished`)
    identity: str | None = None  # this replica in the leader Lease (None: no leader election)
    lease_name: str = DEFAULT_LEASE
    lease_seconds: int = 15
    # SecretIntent status and RotationRun history (controller.status)
    keep_runs: int | None = 5  # finished RotationRun objects kept per secret (None: never pruned)
    request_retention: float = 86400.0  # seconds a settled webhook request object (rq-*) is kept at least: its
    # name is the replay record of a bearer request, which carries no timestamp (at least the webhook window)
    consumer_check_every: float = 300.0  # seconds between two looks at the consumer Secrets' markers for status
    # the periodic looks (a GET per consumer Secret: RBAC grants no list) are also held to this rate, so a fleet's
    # quiet secrets cost the API server a bounded load (10k consumers: a full pass every ~5.5 h); a look after a
    # run or a marker change, and the first look of a secret with no status yet, are not held back (a restarted
    # controller takes the count its status already reports as its last look)
    consumer_looks_per_second: float = 0.5
    failure_backoff: FailureBackoff = field(default_factory=FailureBackoff)  # the time trigger after failed runs
    # seconds a producer's burst of PushSecret versions must be quiet before the controller follows the last one
    # (rotation.external.DEFAULT_QUIET)
    external_quiet: float = 1.0
    ack_deadline: float = 3600.0  # seconds past maxOverlap revokeOld waits for follower clusters before alerting

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, not {self.workers}")
        if min(self.evaluate_every, self.propagation_timeout, self.poll, self.max_pause,
               self.evaluate_slice if self.evaluate_slice is not None else 0.0) < 0:
            raise ValueError("controller intervals and timeouts cannot be negative")
        if self.metadata_reads_per_second is not None and self.metadata_reads_per_second <= 0:
            raise ValueError(f"metadata_reads_per_second must be positive, not {self.metadata_reads_per_second}")
        if self.keep_runs is not None and self.keep_runs < 0:
            raise ValueError(f"keep_runs cannot be negative, not {self.keep_runs}")
        if self.request_retention < REQUEST_RETENTION_FLOOR:
            raise ValueError(f"request_retention must be at least {REQUEST_RETENTION_FLOOR:.0f}s (the webhook's "
                             "replay window)")


__all__ = ["DEFAULT_LEASE", "REQUEST_RETENTION_FLOOR", "ControllerConfig"]
