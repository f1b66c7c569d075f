"""Bounded RotationRun history: the last ``keep`` finished runs of each secret stay, older objects are deleted.

:func:`prunable` is pure (the listed objects, ``keep``, the request retention and an injected ``now`` in; the names
to delete out); :class:`RunHistory` lists the RotationRun objects of the controller namespace once per pass and
deletes what it names, each with the resourceVersion it listed as a precondition (an object that changed since —
a run published again — is left for the next pass). Best effort: an API error is counted, never raised.

What is never deleted:

* an unfinished run's object (``status.phase`` not terminal) — nor one whose status was never published;
* a pending webhook request (an ``rq-*`` object without status: the leader has not taken it yet);
* any ``rq-*`` object younger than the request retention: its name is the replay record of the request it
  persisted (:mod:`chamberlain.triggers.store`). Signed requests are stale after the webhook window anyway; a bearer
  request carries no timestamp, so its idempotency key is remembered for the retention only.

Settled requests that started no run of their own (merged into another run, refused, dropped) are bookkeeping:
they are deleted once older than the retention and do not count among the ``keep`` runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from chamberlain import wellknown as wk
from chamberlain.clock import Clock, parse_rfc3339
from chamberlain.controller.metrics import ControllerMetrics
from chamberlain.controller.resources import RUN_OBJECTS, RunObjectsKube
from chamberlain.kube.api import KubeConflict, KubeError
from chamberlain.rotation.run import TERMINAL
from chamberlain.triggers.store import PREFIX

if TYPE_CHECKING:  # collaborators holds these objects: a type-only import, no cycle at run time
    from chamberlain.controller.collaborators import Logger

REQUESTED_AT = "chamberlain.dev/requested-at"  # annotation of a persisted request (triggers.store.manifest)


@dataclass(frozen=True)
class Listed:
    """One RotationRun object as pruning sees it."""

    name: str
    secret: str
    resource_version: str | None
    finished: bool  # a terminal run, or a settled request
    run: bool  # it carries a run's status (else a request that started no run)
    when: datetime | None  # finishedAt of a run; creation (or request time) otherwise
    created: datetime | None


def listed(obj: Mapping[str, Any]) -> Listed:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    status = obj.get("status") or {}
    phase = status.get("phase")
    created = (parse_rfc3339(str((meta.get("annotations") or {}).get(REQUESTED_AT, "")))
               or parse_rfc3339(str(meta.get("creationTimestamp") or "")))
    settled = not phase and bool(status.get("request"))
    return Listed(
        name=str(meta.get("name", "")),
        secret=str(spec.get("secret") or (meta.get("labels") or {}).get(wk.LABEL_SECRET, "")),
        resource_version=str(meta["resourceVersion"]) if meta.get("resourceVersion") else None,
        finished=phase in TERMINAL or settled,
        run=bool(phase),
        when=parse_rfc3339(str(status.get("finishedAt") or "")) or created,
        created=created,
    )


def prunable(objects: Iterable[Mapping[str, Any]], keep: int, now: datetime, retention: timedelta
             ) -> list[Listed]:
    """The objects to delete (pure): per secret, finished runs beyond the ``keep`` newest, and settled requests
    that started no run; never an unfinished one, never an ``rq-*`` object younger than ``retention`` (or of
    unknown age)."""
    by_secret: dict[str, list[Listed]] = {}
    doomed: list[Listed] = []
    for obj in objects:
        o = listed(obj)
        if not o.name or not o.finished:
            continue
        if o.run:
            by_secret.setdefault(o.secret, []).append(o)
        else:
            doomed.append(o)
    for runs in by_secret.values():
        newest_first = sorted(runs, key=lambda o: (o.when is not None, o.when or now, o.name), reverse=True)
        doomed.extend(newest_first[keep:])

    def young_request(o: Listed) -> bool:
        return o.name.startswith(PREFIX) and (o.created is None or now - o.created < retention)

    return sorted((o for o in doomed if not young_request(o)), key=lambda o: o.name)


@dataclass
class RunHistory:
    """Deletes what :func:`prunable` names (loop thread): a pass lists every RotationRun of the namespace, so it
    runs at start, then at most once every ``every`` seconds after runs finished (:meth:`finished`), and once every
    ``idle_every`` seconds otherwise (settled requests age past the retention; another replica's runs finished): a
    steady state does not list thousands of objects every 30 s."""

    kube: RunObjectsKube
    namespace: str
    clock: Clock
    keep: int
    retention: timedelta
    metrics: ControllerMetrics
    log: Logger
    every: float = 60.0
    idle_every: float = 3600.0
    failures: int = 0
    deleted: int = 0
    _last: float | None = None
    _finished: bool = False  # a run finished since the last pass

    def finished(self) -> None:
        """A run finished: its object may push an older one out (pruned at the next pass, ``every`` from the last)."""
        self._finished = True

    def prune(self) -> int:
        """One pass when due; returns how many objects were deleted."""
        mono = self.clock.monotonic()
        if self._last is not None:
            since = mono - self._last
            if since < self.every or (not self._finished and since < self.idle_every):
                return 0
        self._last, self._finished = mono, False
        try:
            objects = self.kube.list_custom_objects(RUN_OBJECTS, self.namespace)
        except KubeError as exc:
            self.failures += 1
            self.log.warning("history: cannot list RotationRuns", error=type(exc).__name__, detail=str(exc)[:400])
            return 0
        gone = 0
        for o in prunable(objects, self.keep, self.clock.now(), self.retention):
            try:
                self.kube.delete_custom_object(RUN_OBJECTS, self.namespace, o.name, o.resource_version)
            except KubeConflict:
                continue  # changed since listed: looked at again next pass
            except KubeError as exc:
                self.failures += 1
                self.log.warning("history: cannot delete a RotationRun", run=o.name, error=type(exc).__name__,
                                 detail=str(exc)[:400])
                continue
            gone += 1
        if gone:
            self.deleted += gone
            self.metrics.pruned_runs.inc(gone)
            self.log.info("history pruned", deleted=gone, keep=self.keep)
        return gone


__all__ = ["Listed", "RunHistory", "listed", "prunable"]
