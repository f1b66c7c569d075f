"""``chamberlain drill authority-loss``: lose the authority's data, restore it from a backup, prove nothing was lost.

On a lab whose cluster has consumer Secrets materialized by ESO (the demo through handover or workloads):

1. settle: ask ESO to sync every chamberlain ExternalSecret; the consumer Secrets that carry a version marker are
   the ones the drill proves (``secrets``); the authority's own ``value-marker`` and version of every value are
   read as the orchestrator;
2. ``chamberlain backup`` (the backup identity);
3. the disaster: stop the authority, delete its data directory, start it empty (the RTO clock starts here);
4. ``chamberlain restore --force`` with the custodians' identities (threshold of them);
5. ask ESO to sync again and wait until every ExternalSecret reports a sync after the restore (the RTO clock
   stops here);
6. compare: every consumer Secret carries the marker it had (``matched``), the authority holds the same marker and
   version of every value (``regenerated`` = 0), and ``audit verify`` passes across the restore.

The decisions (what matched, whether a value was regenerated, the report) are pure (:mod:`.report` and
:func:`regenerated`); the rest acts on the lab through the same service calls the commands make.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chamberlain.drill.report import (
    DrillError,
    DrillReport,
    Step,
    chamberlain_external_secrets,
    compare_markers,
    resync,
    snapshot_markers,
    synced_since,
    target_secret,
    wait_resynced,
)
from chamberlain.errors import ChamberlainError

if TYPE_CHECKING:
    from chamberlain.clock import Clock
    from chamberlain.drill.report import ConsumerCluster, SecretRef
    from chamberlain.lab.lab import Lab
    from chamberlain.service.context import LiveServers

Progress = Callable[[str], None]
NAME = "authority-loss"

VaultMarkers = dict[str, tuple[str, int]]  # "mount/path" -> (value-marker, current version)


# ------------------------------------------------------------------------------------------------ pure


def regenerated(before: Mapping[str, tuple[str, int]], after: Mapping[str, tuple[str, int]]) -> list[str]:
    """Values whose marker or current version differs after the recovery, or that are gone: each one is a value
    the recovery lost or made anew."""
    return sorted(path for path, was in before.items() if after.get(path) != was)


# ------------------------------------------------------------------------------------------------ acting


@dataclass(frozen=True)
class DrillOptions:
    repo: Path  # the intent repository the lab runs (the demo's copy)
    lab_dir: Path
    identities: tuple[Path, ...]  # the threshold of custodians' identities (or the root's)
    work: Path  # where the backup goes
    environment: str = "dev"
    cluster: str = "dev1"
    timeout: float = 180.0


def settle(kube: ConsumerCluster, clock: Clock, timeout: float, *, stamp: str, quiet: int = 3) -> list[SecretRef]:
    """Ask ESO to sync everything now and wait until each chamberlain ExternalSecret is in sync, or the set in sync
    stopped growing for ``quiet`` rounds (a producer-published secret the lab does not run never syncs); the
    consumer Secrets of the ones in sync."""
    since = clock.now()
    deadline = clock.monotonic() + timeout
    last, unchanged, asked = -1, 0, 0
    while True:
        asked += 1
        resync(kube, f"{stamp}-settle-{asked}")
        clock.sleep(2.0)
        items = chamberlain_external_secrets(kube)
        ready = [es for es in items if synced_since(es, since)]
        unchanged = unchanged + 1 if len(ready) == last else 0
        last = len(ready)
        if len(ready) == len(items) or unchanged >= quiet or clock.monotonic() > deadline:
            return sorted(target_secret(es) for es in ready)


def authority_markers(servers: LiveServers, options: DrillOptions) -> VaultMarkers:
    """The value-marker and current version of every value the cluster's scope places in the authority (runtime
    and handed-over secrets), read as the cluster's orchestrator."""
    from chamberlain import wellknown as wk
    from chamberlain.controller.loop import scope_of
    from chamberlain.service.repository import load_valid

    repo = load_valid(options.repo)
    platform = repo.platform
    if platform is None:  # pragma: no cover - load_valid guarantees one
        raise DrillError(f"{options.repo}: no Platform")
    scope = scope_of(platform, {i.obj.metadata.name: i.obj for i in repo.intents}, options.environment,
                     options.cluster)
    kv = servers.orchestrator(platform, options.cluster).kv
    out: VaultMarkers = {}
    for _, placed in sorted(scope.placed.items()):
        if placed.intent.spec.classification not in ("runtime", "bootstrap"):
            continue
        meta = kv.read_metadata(placed.vault.mount, placed.vault.path)
        if meta is not None:
            out[placed.vault.full] = (meta.custom.get(wk.VALUE_MARKER, ""), meta.current_version)
    return out


def lose_data(lab: Lab) -> None:
    """The disaster: the authority stops, its data directory is deleted, it starts again empty."""
    authority = lab.authority
    authority.stop()
    shutil.rmtree(authority.dir / "data", ignore_errors=True)
    proc = authority.start()
    authority.wait(proc)


def run(options: DrillOptions, servers: LiveServers, lab: Lab, progress: Progress = lambda _m: None) -> DrillReport:
    """The drill on a running lab (see the module docstring). Never raises for a failed proof: the report says."""
    report = DrillReport(NAME)
    try:
        _run(options, servers, lab, progress, report)
    except ChamberlainError as exc:  # our messages carry no value
        report.error = str(exc)
    return report


def _timed(report: DrillReport, clock: Clock, name: str, progress: Progress,
           step: Callable[[], dict[str, Any]]) -> None:
    progress(f"[drill] {name}")
    started = clock.monotonic()
    facts = step()
    report.steps.append(Step(name, clock.monotonic() - started, facts))


def _run(options: DrillOptions, servers: LiveServers, lab: Lab, progress: Progress, report: DrillReport) -> None:
    from chamberlain.service import audit, backup
    from chamberlain.service.context import Caller

    kube = servers.kube()
    clock = servers.clock
    stamp = f"drill-{int(clock.now().timestamp())}"
    caller = Caller(f"chamberlain drill {NAME}", servers.clock)
    state: dict[str, Any] = {}

    def before() -> dict[str, Any]:
        refs = settle(kube, clock, min(options.timeout, 60.0), stamp=stamp)
        state["refs"] = refs
        state["before"] = snapshot_markers(kube, refs)
        state["vault"] = authority_markers(servers, options)
        return {"consumerSecrets": len(refs), "authorityValues": len(state["vault"])}

    _timed(report, clock, "record", progress, before)
    if not state["refs"]:
        raise DrillError("no consumer Secret is materialized: run the demo through handover (or workloads) first")
    directory = options.work / f"backup-{stamp}"

    def take_backup() -> dict[str, Any]:
        result = backup.backup(backup.BackupRequest(options.repo, directory, options.cluster), servers, caller)
        return {"directory": str(directory), "bytes": sum(f.bytes for f in result.manifest.files.values()),
                "raftIndex": result.manifest.authority.raft_index, "takenAs": result.identity}

    _timed(report, clock, "backup", progress, take_backup)
    disaster = clock.monotonic()
    def destroy() -> dict[str, Any]:
        lose_data(lab)
        return {"dataDirectory": "deleted", "restartedEmpty": True}

    _timed(report, clock, "destroy", progress, destroy)

    def restore() -> dict[str, Any]:
        result = backup.restore(backup.RestoreRequest(options.repo, directory, options.identities, force=True,
                                                      cluster=options.cluster), servers, caller)
        state["restored_at"] = clock.now()
        return {"mode": result.mode, "unsealedWith": result.unsealed_with, "ledgerSeq": result.ledger_seq,
                "secretRecreated": result.secret_recreated}

    _timed(report, clock, "restore", progress, restore)
    _timed(report, clock, "resync", progress, lambda: {"seconds": round(wait_resynced(
        kube, state["restored_at"], options.timeout, stamp=stamp, only=set(state["refs"]), sleep=clock.sleep,
        monotonic=clock.monotonic), 2)})
    report.rto_seconds = clock.monotonic() - disaster
    report.comparison = compare_markers(state["before"], snapshot_markers(kube, state["refs"]))

    def check() -> dict[str, Any]:
        lost = regenerated(state["vault"], authority_markers(servers, options))
        report.regenerated = len(lost)
        verified = audit.verify(options.repo, servers, cluster=options.cluster)
        report.ledger_verified = verified.ok
        return {"regenerated": lost, "ledgerEntries": verified.entries, "ledgerProblems": verified.problems}

    _timed(report, clock, "verify", progress, check)


__all__ = ["NAME", "DrillOptions", "authority_markers", "lose_data", "regenerated", "run", "settle"]
