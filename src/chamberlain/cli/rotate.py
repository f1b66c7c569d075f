"""``chamberlain rotate`` (the manual trigger) and ``chamberlain status``: thin commands over
:mod:`chamberlain.service.rotation`.

``rotate NAME PATH --reason TEXT`` starts a run through the same workflow path every trigger uses and drives it
until it is finished and recorded (a wait longer than ``--max-wait``, such as a revoke after a long maxOverlap,
leaves the run to resume from its record). ``--rollback`` re-promotes the previous version; ``--release`` clears a
hold. ``rotate --namespace X PATH --reason compromise`` rotates every intent with a consumer or producer in X.
Exit 0 ok, 1 failed/held, 2 usage. Connection options are those of ``handover``. Never prints a value. While a
run waits (for a due step, for consumers to sync) its stage and the seconds waited show on stderr
(:mod:`chamberlain.cli.progress`).

``status PATH`` prints, per secret of the selected environment/cluster: classification, authority, version, last
rotation, next due, held, and whether each consumer Secret carries the current version marker (annotations only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from chamberlain.cli.options import GROUPED, MaxWait, SyncTimeout, Target, actor, clock, target_options
from chamberlain.cli.output import ListFormat, ListOutput, RepoPath, emit_data, is_wide, line, stderr
from chamberlain.cli.progress import ReportingClock, WaitProgress
from chamberlain.service.context import Caller, LiveServers
from chamberlain.service.rotation import RotateRequest


def _print_run(row: dict[str, Any], *, wide: bool = False) -> None:
    prop = row["propagationSeconds"]
    extra = ""
    if wide:  # how it was started and what it left behind (ledger entry, revoke time, keys, Reloader's share)
        seq = row.get("ledgerSeq")
        extra = (f"  trigger {row.get('trigger') or '-'}/{row.get('mode') or '-'}"
                 f"  ledger #{'-' if seq is None else seq}"
                 f"  keys {_joined(row.get('rotatedKeys'))}  revoke-at {row.get('revokeAt') or '-'}"
                 f"  left-to-reloader {_joined(row.get('workloadsLeftToReloader'))}")
    line(f"{row['stage']:<12} {row['secret']} {row['path']}  run {row['run']}  "
         f"v{row['previousVersion']} -> v{row['version'] if row['version'] is not None else '?'}  "
         f"propagated {'-' if prop is None else f'{prop:.2f}s'}  "
         f"restarted {','.join(row['workloadsRestarted']) or '-'}" + extra)
    for note in ("error", "message"):
        if row.get(note):
            line(f"  {row[note]}", err=True)


def _joined(items: list[str] | None) -> str:
    return ",".join(items or []) or "-"


def _is_dir(text: str | None) -> bool:
    return text is not None and Path(text).is_dir()


@target_options()
def rotate_cmd(
    path: RepoPath,
    name: Annotated[str | None, typer.Argument(help="The secret (intent name); omit with --namespace.",
                                               show_default=False, metavar="SECRET")] = None,
    reason: Annotated[str | None, typer.Option("--reason", metavar="TEXT", help="Why, for the run and the ledger.",
                                               show_default=False)] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", metavar="NAMESPACE", show_default=False,
                                                  help="Rotate every secret with a consumer or producer here.")
                         ] = None,
    rollback: Annotated[bool, typer.Option("--rollback", help="Re-promote the previous version.")] = False,
    release: Annotated[bool, typer.Option("--release", help="Clear the hold of a secret.")] = False,
    max_wait: MaxWait = 120.0,
    timeout: SyncTimeout = 120.0,
    target: Target = GROUPED,
    output: ListOutput = ListFormat.text,
) -> None:
    """Rotate a secret now through the durable workflow (manual trigger), or roll back / release it.

    Example: chamberlain rotate examples/acme grafana-admin --reason "suspected leak" -e dev --cluster dev1
    """
    from chamberlain.service.rotation import rotate

    # PATH NAME or NAME PATH: accept the secret's name first, as the issue spells it.
    if name is not None and not _is_dir(path) and _is_dir(name):
        path, name = name, path
    wall = clock()
    with WaitProgress(stderr, wall, verb="rollback" if rollback else "rotate") as progress:
        request = RotateRequest(Path(path), name=name, namespace=namespace, reason=reason or "", rollback=rollback,
                                release=release, environment=target.environment, cluster=target.cluster,
                                max_wait=max_wait, timeout=timeout, on_stage=progress.stage)
        caller = Caller(actor(), ReportingClock(wall, progress))
        with LiveServers(target.conn, caller.clock) as servers:
            result = rotate(request, servers, caller)
    if not emit_data(result.as_dict(), output):
        for row in result.rows:
            if release:
                line(f"{'released' if row['released'] else 'not-held':<12} {row['secret']} {row['path']}")
            else:
                _print_run(row, wide=is_wide(output))
    raise typer.Exit(0 if result.ok else 1)


@target_options()
def status_cmd(path: RepoPath, target: Target = GROUPED, output: ListOutput = ListFormat.text) -> None:
    """Per secret: classification, authority, version, last rotation, next due, held, consumers in sync
    (-o wide: with the Vault path, policy, why it is due or not, the last run and each consumer Secret).

    Example: chamberlain status examples/acme -e dev --cluster dev1 -o json
    """
    from chamberlain.service.rotation import status

    with LiveServers(target.conn, clock()) as servers:
        report = status(Path(path), servers, servers.clock, environment=target.environment, cluster=target.cluster)
    if emit_data(report.as_dict(), output):
        return
    wide = is_wide(output)
    for r in report.rows:
        last = r["lastRotation"] or {}
        consumers = r["consumers"]
        synced = sum(1 for c in consumers if c["inSync"])
        line(f"{r['secret']:<28} {r['environment']:<8} {r['classification']:<10} authority={r['authority']:<8} "
             f"v{r['version'] if r['version'] is not None else '-'}  "
             f"last={last.get('at') or '-'} ({last.get('result') or '-'})  next={r['nextDue'] or '-'}  "
             f"{'HELD  ' if r['held'] else ''}in-sync {synced}/{len(consumers)}" + (_wide_status(r) if wide else ""))


def _wide_status(r: dict[str, Any]) -> str:
    run = r.get("run") or {}
    consumers = ",".join(f"{c['namespace']}/{c['secret']}={_sync(c)}" for c in r["consumers"]) or "-"
    return (f"  path={r['path']}  policy={r.get('policy') or '-'}{'' if r.get('policyInForce') else '(git)'}"
            f"  due={'yes' if r.get('due') else 'no'}({r.get('dueReason') or '-'})"
            f"  run={run.get('id') or '-'}:{run.get('stage') or ('unreadable' if run.get('unreadable') else '-')}"
            f"  consumers={consumers}")


def _sync(consumer: dict[str, Any]) -> str:
    return {True: "synced", False: "stale", None: "unknown"}[consumer.get("inSync")] if consumer.get(
        "exists") is not False else "missing"
