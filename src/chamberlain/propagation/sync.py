"""Is each consumer Secret in sync with the version just written? Decided from annotations, never from data.

The rendered ExternalSecret (:func:`chamberlain.render.eso.add_version_marker`) makes ESO copy the Vault secret's
``value-marker`` custom metadata into the Secret annotation ``chamberlain.dev/version-marker``. ESO writes data and
annotations in one update, so a Secret carrying the new marker also carries the new data. The marker is a
non-reversible HMAC (:mod:`chamberlain.values.markers`): comparing it reveals nothing about the value.

:func:`in_sync` is the pure decision; :func:`wait_in_sync` polls with an injected clock and reports, per consumer,
whether and after how long it got there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from chamberlain import wellknown as wk
from chamberlain.clock import Clock
from chamberlain.kube.api import KubePropagation, KubeUnavailable


@dataclass(frozen=True, order=True)
class ConsumerRef:
    """A materialized Secret (the ExternalSecret's target) in a consumer namespace."""

    namespace: str
    name: str
    # The annotation that carries the marker to wait for: a templated consumer Secret carries one per part
    # (:func:`wk.part_marker_annotation`); every other consumer the intent's own.
    annotation: str = wk.ANNOTATION_VERSION_MARKER


@dataclass(frozen=True)
class ConsumerSync:
    consumer: ConsumerRef
    in_sync: bool
    latency: float | None  # seconds from the start of the wait until the marker was seen; None when never
    observed: str | None  # the marker the Secret carried last (a marker, never a value); None when absent


class WaitInterrupted(BaseException):
    """The wait was cut short because its caller is stopping (a graceful shutdown), not because of the consumers.
    A ``BaseException``, like ``KeyboardInterrupt``: it is no failure of the step that waited, so no ``except
    Exception`` on the way records it as one. The caller that asked for the interruption catches it."""


FIRST_POLL = 0.05  # seconds before the second look at the consumers; doubled each round up to the poll interval


def in_sync(annotations: Mapping[str, str] | None, marker: str,
            annotation: str = wk.ANNOTATION_VERSION_MARKER) -> bool:
    """True when the Secret exists and carries exactly ``marker`` (in ``annotation``). An empty expected marker
    never matches: an empty annotation means "the Vault secret has no marker", which proves nothing about the
    version."""
    if annotations is None or not marker:
        return False
    return annotations.get(annotation) == marker


def wait_in_sync(
    kube: KubePropagation,
    consumers: Sequence[ConsumerRef],
    marker: str,
    clock: Clock,
    timeout: float,
    poll: float = 0.25,
    interrupted: Callable[[], bool] | None = None,
) -> list[ConsumerSync]:
    """Poll every consumer's annotations until all carry ``marker`` or ``timeout`` seconds pass.

    Consumers already in sync are not read again. A transient API error is a miss for this round, not a failure:
    the deadline alone decides (the caller's failureStrategy applies to what is still out of sync). The pause
    between rounds starts at :data:`FIRST_POLL` and doubles up to ``poll``: ESO usually writes a force-synced
    Secret within a tenth of a second, and a run (and the controller's tick, and the triggers waiting for it)
    should not idle half a second after that. ``interrupted`` is asked before each pause: when it answers True
    while consumers are still out of sync, :class:`WaitInterrupted` is raised (a stopping controller does not
    wait out ``timeout`` for an ESO that may be down).
    """
    start = clock.monotonic()
    pending = sorted(set(consumers))
    done: dict[ConsumerRef, ConsumerSync] = {}
    observed: dict[ConsumerRef, str | None] = {}
    pause = min(FIRST_POLL, poll)
    while True:
        still: list[ConsumerRef] = []
        for ref in pending:
            try:
                annotations = kube.get_secret_annotations(ref.namespace, ref.name)
            except KubeUnavailable:
                still.append(ref)
                continue
            observed[ref] = annotations.get(ref.annotation) if annotations is not None else None
            if in_sync(annotations, marker, ref.annotation):
                done[ref] = ConsumerSync(ref, True, clock.monotonic() - start, marker)
            else:
                still.append(ref)
        pending = still
        if not pending or clock.monotonic() - start >= timeout:
            break
        if interrupted is not None and interrupted():
            raise WaitInterrupted
        clock.sleep(min(pause, timeout - (clock.monotonic() - start)))  # the last look at the deadline itself
        pause = min(pause * 2, poll)
    for ref in pending:
        done[ref] = ConsumerSync(ref, False, None, observed.get(ref))
    return [done[ref] for ref in sorted(done)]
