"""``chamberlain retire PATH`` (and ``--undo NAME``): thin commands over :mod:`chamberlain.service.lifecycle`.

Output: one line per retiring secret (state, what this run did, until when an undo is possible), ``-o json|yaml``
for machines; exit 0 when done, 1 when a step failed (a re-run resumes), 2 on usage errors. Never a value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chamberlain.cli.options import GROUPED, DryRun, Target, actor, clock, target_options
from chamberlain.cli.output import ListFormat, ListOutput, RepoPath, emit_data, line
from chamberlain.service.context import Caller, LiveServers


@target_options()
def retire_cmd(
    path: RepoPath,
    undo: Annotated[str | None, typer.Option(
        "--undo", metavar="NAME", help="Restore NAME's soft-deleted data (within its undo window).")] = None,
    target: Target = GROUPED,
    dry_run: DryRun = False,
    output: ListOutput = ListFormat.text,
) -> None:
    """Decommission what Git retires (spec.retire): on the day, soft-delete the data in the authority (recorded in
    the ledger); after the undo window, remove every version and the metadata. Before the day nothing changes
    (the controller warns consumers). Run it daily (CI schedule); safe to re-run, resumes after a crash.

    Example: chamberlain retire examples/acme --cluster dev1;  chamberlain retire examples/acme --undo legacy-token
    """
    from chamberlain.service import lifecycle

    caller = Caller(actor(), clock())
    with LiveServers(target.conn, caller.clock) as servers:
        if undo is not None:
            undone = lifecycle.undo(Path(path), undo, servers, caller, environment=target.environment,
                                    cluster=target.cluster, dry_run=dry_run)
            data = {"run": caller.run, "dryRun": dry_run, "undone": [u.as_dict() for u in undone]}
            if not emit_data(data, output):
                for u in undone:
                    versions = ",".join(str(v) for v in u.restored) or "-"
                    line(f"{'already undone' if u.already else 'would restore' if dry_run else 'restored':<16} "
                         f"{u.target.intent} ({u.target.environment}) {u.target.vault}  versions {versions}")
                line("set another spec.retire.after in Git (or remove spec.retire), or it stays as it is now",
                     err=True)
            return
        result = lifecycle.retire(Path(path), servers, caller, environment=target.environment,
                                  cluster=target.cluster, dry_run=dry_run)
    if emit_data(result.as_dict(), output):
        return
    for o in result.outcomes:
        row = o.as_dict()
        until = f"  undo until {row['undoUntil']}" if row["undoUntil"] else ""
        gone = "  (spec.retire no longer in Git: finished from its mark)" if o.target.from_marker else ""
        line(f"{row['state']:<10} {row['intent']} ({row['environment']}) {row['path']}  retire at {row['retireAt']}"
             f"  {'would' if dry_run else 'steps'}: {','.join(o.steps) or '-'}{until}{gone}")
    if not result.outcomes:
        line("nothing to decommission: no intent of the selected cluster declares spec.retire, and no data is "
             "soft-deleted for a retirement Git no longer declares", err=True)


env_app = typer.Typer(no_args_is_help=True, add_completion=False)  # help: cli.main


def _env(action: str, path: str, name: str, target: Target, output: ListFormat, wait: float) -> None:
    from chamberlain.service import environments

    caller = Caller(actor(), clock())
    with LiveServers(target.conn, caller.clock) as servers:
        run = environments.up if action == "up" else environments.down
        result = run(Path(path), name, servers, caller, cluster=target.cluster, wait_seconds=wait)
    if not emit_data(result.as_dict(), output):
        verb = "generated" if action == "up" else "removed"
        line(f"{result.instance} on {result.cluster}: {len(result.secrets)} secrets {verb}, "
             f"{len(result.objects)} objects {'applied' if action == 'up' else 'deleted'}"
             + (f", ledger #{result.ledger_seq}" if result.ledger_seq is not None else ""))


@env_app.command("up")
@target_options(environment=False)
def env_up(path: RepoPath, name: Annotated[str, typer.Argument(
               metavar="ENV/ID", help="The instance: <env>/<id>, e.g. preview/pr-42.")],
           wait: Annotated[float, typer.Option(
               "--wait", metavar="SECONDS", help="How long to wait until ESO has materialized every consumer "
               "Secret (0: do not wait).")] = 120.0,
           target: Target = GROUPED, output: ListOutput = ListFormat.text) -> None:
    """Create an instance of an ephemeral environment: every secret generated in the authority under
    <env>/_instances/<id>/, its namespaces (<ns>-<id>) with the ExternalSecrets ESO materializes, and a wait
    until every consumer Secret holds its value (exit 1 when one does not in time). Idempotent.

    Example: chamberlain env up examples/acme preview/pr-42 --cluster dev1
    """
    _env("up", path, name, target, output, wait)


@env_app.command("down")
@target_options(environment=False)
def env_down(path: RepoPath, name: Annotated[str, typer.Argument(metavar="ENV/ID", help="The instance: <env>/<id>.")],
             wait: Annotated[float, typer.Option(
                 "--wait", metavar="SECONDS", help="How long to wait until the instance's namespaces are gone "
                 "(exit 1 when one is still terminating).")] = 120.0,
             target: Target = GROUPED, output: ListOutput = ListFormat.text) -> None:
    """Destroy an instance without a trace: its ExternalSecrets, SecretStores and namespaces (the consumer
    Secrets go with them), then every version and the metadata under <env>/_instances/<id>/, with an env-teardown
    ledger entry. Refused (exit 2) for an environment that is not ephemeral. Safe to re-run after an interruption.

    Example: chamberlain env down examples/acme preview/pr-42 --cluster dev1
    """
    _env("down", path, name, target, output, wait)
