"""The controller's configuration: what an operator chose, fixed for the life of the process.

Intervals, timeouts, parallelism, the actor named in the ledger, the Lease. Read by the loop thread; nothing here
changes while the controller runs (:meth:`~chamberlain.controller.loop.Controller.set_evaluate_every` swaps in a
whole new value, it never edits this one). No I/O, no clients: those are
:class:`~chamberlain.controller.collaborators.Collaborators`.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_LEASE = "chamberlain-controller"


@dataclass(frozen=True)
class ControllerConfig:
    actor: str = "chamberlain-controller"  # who the ledger and the run records name
    evaluate_every: float = 30.0  # seconds between two evaluations of the time trigger
    propagation_timeout: float = 120.0  # seconds a run waits for every consumer Secret to carry the new marker
    poll: float = 0.5  # seconds between two looks at the consumer Secrets while waiting
    workers: int = 1  # runs advanced in parallel (Vault and API calls are I/O; `wire` uses 8)
    max_pause: float = 30.0  # cap of the back-off between ticks while the authority is unreachable
    keep_finished: int = 1000  # finished runs remembered for callers (`Controller.finished`)
    identity: str | None = None  # this replica in the leader Lease (None: no leader election)
    lease_name: str = DEFAULT_LEASE
    lease_seconds: int = 15

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, not {self.workers}")
        if min(self.evaluate_every, self.propagation_timeout, self.poll, self.max_pause) < 0:
            raise ValueError("controller intervals and timeouts cannot be negative")


__all__ = ["DEFAULT_LEASE", "ControllerConfig"]
