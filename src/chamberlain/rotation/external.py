"""Observed external rotations: a producer (an operator) replaced its Secret, ESO pushed it, consumers must follow.

A derived or config intent (``source.publication``) is written by ESO's PushSecret into an internal mount
(``<internal>/<env>/<cluster>/<ns>/<name>``); chamberlain never generates nor reads that value. When the producer
changes its Secret, the PushSecret writes a new KV version. The controller observes that version and runs the
pipeline a chamberlain rotation ends with: mark the version, force-sync every consumer ExternalSecret, wait until
every consumer Secret carries the marker, restart the declared workloads once, record a ``RotationRun`` of trigger
``external`` and a ledger entry naming the producer.

Belongs here: the pure decisions, with the monotonic clock passed in — what changed (:func:`decide`), whether a
burst of pushes has settled (the debounce), what ESO's PushSecret status says about a declared key missing from the
producer Secret (:func:`missing_key`) — and the record that persists what was handled (:class:`ExternalRecord`,
JSON in the orchestrator's own runtime mount, :func:`record_path`). The I/O lives in
:mod:`chamberlain.controller.external`.

The version marker of an external version cannot be the usual HMAC over the values (the orchestrator has no
``read`` on internal data, by design): it is the keyed HMAC (:class:`~chamberlain.values.markers.Markers`) of the
KV version number and the run id that observed it (:func:`marker_input`). It is as non-reversible as the value
marker, unique per observation, and ESO copies it into the consumers' ``chamberlain.dev/version-marker`` like any
other marker. It is written next to ESO's ``managed-by`` custom_metadata marker, which stays intact (ESO refuses to
push over a secret without it); ESO replaces the whole custom_metadata on its next push, which is itself the signal
that a new version needs a marker.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from chamberlain import wellknown as wk
from chamberlain.intent.paths import EXTERNAL_PREFIX, VaultPath

ESO_MANAGED_BY = wk.ESO_PUSH_MANAGED_BY  # ESO pushes only over a secret carrying it
ESO_MANAGER = wk.ESO_PUSH_MANAGER
# ESO v0.16 (pushsecret_controller.go): "set secret failed: secret key <key> does not exist"
_MISSING_KEY = re.compile(r"secret key (\S{1,253}) does not exist")

DEFAULT_QUIET = 1.0  # seconds without a further push before a burst of versions counts as settled
DEFAULT_MAX_SETTLE = 30.0  # ... but never wait longer than this after the first push of a burst


def record_path(runtime: str, vault: VaultPath, cluster: str) -> VaultPath:
    """Where the controller of ``cluster`` records the external versions of the internal secret ``vault`` it
    handled: in its own runtime mount, under its own cluster segment (a policy grants exactly that subtree)."""
    environment, _, rest = vault.path.partition("/")
    rest = rest.removeprefix(f"{cluster}/")  # internal paths name their cluster already: <env>/<cluster>/<ns>/<name>
    return VaultPath(runtime, f"{EXTERNAL_PREFIX}/{environment}/{cluster}/{vault.mount}/{rest}")


@dataclass(frozen=True)
class PushState:
    """What ESO's PushSecret status says (condition ``Ready``), names and messages only, never a value."""

    name: str  # the PushSecret
    ready: bool | None  # None: ESO has not reported yet
    reason: str = ""
    message: str = ""

    @classmethod
    def of(cls, obj: Mapping[str, object]) -> PushState:
        meta = obj.get("metadata")
        name = str(meta.get("name", "")) if isinstance(meta, Mapping) else ""
        status = obj.get("status")
        conditions = status.get("conditions") if isinstance(status, Mapping) else None
        for c in conditions if isinstance(conditions, list) else ():
            if isinstance(c, Mapping) and c.get("type") == "Ready":
                return cls(name, c.get("status") == "True", str(c.get("reason") or ""),
                           str(c.get("message") or "")[:400])
        return cls(name, None)


def missing_key(state: PushState | None, declared: Sequence[str]) -> str | None:
    """The declared key ESO reports missing from the producer Secret, or None. A key ESO names that the intent
    does not declare is reported too (the PushSecret and the intent disagree: equally held)."""
    if state is None or state.ready is not False:
        return None
    m = _MISSING_KEY.search(state.message)
    if m is None:
        return None
    return m.group(1)


@dataclass(frozen=True)
class ExternalRecord:
    """What one cluster's controller handled of one internal secret (persisted; names and numbers only)."""

    version: int  # the KV version consumers were last brought to (0: none yet)
    marker: str = ""  # its marker
    run: str = ""  # the run that handled it (or is handling ``pending``)
    stage: str = "done"  # done | refreshed | propagated | restarted (a run in flight resumes from here)
    pending: int = 0  # the version a run in flight brings consumers to (0: none)
    held: int = 0  # the version recorded as held (a declared key missing), so it is recorded once
    restart: bool = True  # the run in flight restarts workloads (False: the first version, a baseline)
    started: str = ""  # RFC 3339 start of the run in flight

    def to_data(self) -> dict[str, str]:
        return {"record": json.dumps(self.__dict__, sort_keys=True)}

    @classmethod
    def from_data(cls, data: Mapping[str, str]) -> ExternalRecord | None:
        try:
            raw = json.loads(data.get("record", ""))
            return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})
        except (ValueError, TypeError, KeyError):
            return None


@dataclass(frozen=True)
class Seen:
    """The loop's memory of a burst of pushes (monotonic seconds; in memory only: a restart settles anew)."""

    version: int
    first: float  # when a version past the record was first seen
    last: float  # when the version last moved


Action = Literal["none", "wait", "hold", "start", "resume", "remark"]


@dataclass(frozen=True)
class Decision:
    action: Action
    version: int = 0
    restart: bool = True  # start: whether workloads restart (False for the first version ever seen)
    key: str | None = None  # hold: the declared key the producer Secret lacks
    until: float | None = None  # wait: settle until this monotonic time
    why: str = ""


def settle(seen: Seen | None, version: int, now: float) -> Seen:
    """The burst memory after seeing ``version`` at ``now``."""
    if seen is None:
        return Seen(version, now, now)
    if version != seen.version:
        return Seen(version, seen.first, now)
    return seen


def decide(record: ExternalRecord | None, current: int, custom: Mapping[str, str], seen: Seen | None,
           push: PushState | None, declared: Sequence[str], now: float, *, quiet: float = DEFAULT_QUIET,
           max_settle: float = DEFAULT_MAX_SETTLE) -> Decision:
    """What to do for one published secret. ``current``: the internal path's KV version (0: nothing pushed yet);
    ``custom``: its custom_metadata; ``seen``: the burst memory (:func:`settle`, already updated with
    ``current``); ``push``: the PushSecret status; ``now``: monotonic seconds.

    - a run in flight resumes (whatever ESO does meanwhile: its version is finished first);
    - the PushSecret cannot push because the producer Secret lacks a declared key: hold (consumers keep their
      last good value: no marker, no refresh, no restart), recorded once per version;
    - a version past the record: wait until the burst settled (``quiet`` seconds without a further push, at most
      ``max_settle`` after the first), then start one run for the latest version — the first version ever seen
      is a baseline (consumers refreshed, nothing restarted);
    - the recorded version lost its marker (ESO rewrote the metadata without a new version): write it again.
    """
    if record is not None and record.pending:
        return Decision("resume", record.pending, record.restart, why=f"run {record.run} at {record.stage}")
    key = missing_key(push, declared)
    if key is not None:
        return Decision("hold", current, key=key, why=f"the producer Secret lacks the declared key {key!r}")
    if current <= 0:
        return Decision("none", why="nothing pushed yet")
    handled = record.version if record is not None else 0
    if current == handled:
        if record is not None and record.marker and custom.get(wk.VALUE_MARKER) != record.marker:
            return Decision("remark", current, why="the marker of the handled version is gone")
        return Decision("none", current, why="in sync")
    if seen is None or seen.version != current:
        return Decision("wait", current, until=now + quiet, why="a new version, settling")
    if now - seen.last < quiet and now - seen.first < max_settle:
        return Decision("wait", current, until=min(seen.last + quiet, seen.first + max_settle),
                        why="settling a burst of pushes")
    return Decision("start", current, restart=handled > 0, why=f"version {handled} -> {current}")


def marker_input(version: int, run: str) -> dict[str, str]:
    """What the keyed marker of an external version is computed over: the version and the observing run."""
    return {"authority-version": str(version), "observed-by": run}


def marked_metadata(custom: Mapping[str, str], marker: str, version: int, run: str, at: str) -> dict[str, str]:
    """The custom_metadata keys to merge in for a handled version. ESO's ``managed-by`` marker is not among them:
    the merge keeps it as ESO wrote it (:func:`~chamberlain.authority.kv.merge_custom_metadata`), and chamberlain
    never writes it (a path ESO did not push to stays one ESO refuses, as ESO intends)."""
    del custom  # the merge reads the current map itself
    return {wk.VALUE_MARKER: marker, wk.VALUE_VERSION: str(version), wk.LAST_RUN: run, wk.LAST_ROTATED: at}


HELD_REASON = "ProducerKeyMissing"


def _condition(kind: str, ok: bool, reason: str, message: str, previous: Sequence[Mapping[str, object]],
               at: str) -> dict[str, str]:
    status = "True" if ok else "False"
    before = next((c for c in previous if c.get("type") == kind), None)
    kept = before is not None and before.get("status") == status and before.get("lastTransitionTime")
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": str(kept) if kept else at}


def published_status(record: ExternalRecord | None, current: int, held: str | None,
                     previous: Sequence[Mapping[str, object]], at: str) -> dict[str, object]:
    """The SecretIntent status of a published intent, in the words of the runtime intents' status
    (docs/status.md): ``phase`` ``Pending`` (nothing pushed yet), ``Rotating`` (an external run in flight),
    ``Held`` (the producer Secret lacks a declared key) or ``Ready``; ``currentVersion``, ``lastRun``; the
    conditions ``Ready`` and ``Held``. ``previous``: the conditions the object carries (a condition keeps its
    transition time while unchanged)."""
    pending = record is not None and record.pending > 0
    synced = record is not None and record.version > 0 and not pending and record.version == current
    if held is not None:
        phase, ready = "Held", (False, HELD_REASON, held)
    elif pending:
        phase, ready = "Rotating", (False, "ConsumersOutOfSync",
                                    f"run {record.run if record else ''}: consumers follow version {current}")
    elif synced and record is not None:
        phase, ready = "Ready", (True, "Current", f"consumers carry authority version {record.version}")
    elif current > 0:
        phase, ready = "Pending", (False, "ConsumersOutOfSync", f"version {current} not followed yet")
    else:
        phase, ready = "Pending", (False, "NotProvisioned", "the producer has not published a value yet")
    return {
        "phase": phase,
        "currentVersion": current or None,
        "lastRun": record.run if record is not None and record.run else None,
        "conditions": [
            _condition("Ready", ready[0], ready[1], ready[2], previous, at),
            _condition("Held", held is not None, HELD_REASON if held is not None else "NotHeld", held or "",
                       previous, at),
        ],
    }


def hold_message(key: str, producer: str, push: str) -> str:
    return (f"the producer Secret {producer} lacks the declared key {key!r}: PushSecret {push} cannot push it; "
            "consumers keep their last good value")


__all__ = [
    "DEFAULT_MAX_SETTLE",
    "DEFAULT_QUIET",
    "ESO_MANAGED_BY",
    "ESO_MANAGER",
    "EXTERNAL_PREFIX",
    "HELD_REASON",
    "Decision",
    "ExternalRecord",
    "PushState",
    "Seen",
    "decide",
    "hold_message",
    "marked_metadata",
    "marker_input",
    "missing_key",
    "published_status",
    "record_path",
    "settle",
]
