"""``chamberlain upgrade plan|apply``: thin commands over :mod:`chamberlain.service.upgrade`.

Tokens as ``authority configure`` takes them (``--vault-token-file``/``--vault-token-env``, never argv); without
one, the configurator and the orchestrator log in through Kubernetes (this release's identities, or the previous
release's on an installation not yet upgraded). Output: step ids, states, counts, names; never a value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chamberlain.cli.options import GROUPED, Target, clock, configure_options, target_options
from chamberlain.cli.output import ListFormat, ListOutput, RepoPath, emit_data, is_wide, line
from chamberlain.service.authority import ConfigureOptions, Selection
from chamberlain.service.context import Caller, LiveServers
from chamberlain.service.upgrade import UpgradeRequest, UpgradeResult

upgrade_app = typer.Typer(no_args_is_help=True, add_completion=False)  # help: cli.main

Identities = Annotated[list[Path] | None, typer.Option(
    "--identity", help="age identity file (repeatable): with custody declared and the shares not yet one per "
    "custodian, apply rekeys with them (k custodians' files, or the root's); without, apply leaves custody to "
    "`authority rekey`.", metavar="FILE")]

_MARK = {"done": "ok", "needed": "->", "waiting": "..", "manual": "!!"}


def _print(result: UpgradeResult, *, wide: bool = False) -> None:
    """Each step and what it acts on: the first 20 items of a step, every item with ``wide``."""
    shown = None if wide else 20
    for row in result.applied:
        line(f"applied {row['step']}: {row['outcome']}")
    for step in result.steps:
        line(f"{_MARK[step.state]} {step.id} [{step.state}]: {step.changes}")
        for item in step.items[:shown]:
            line(f"     {item}")
        if shown is not None and len(step.items) > shown:
            line(f"     ... {len(step.items) - shown} more (-o wide lists them all)")
    line(f"cluster {result.cluster}: " + ("upgrade complete (nothing left to do)." if result.complete else
                                          "upgrade not complete."))


def _request(path: str, target: Target, configure: ConfigureOptions, identities: list[Path] | None) -> UpgradeRequest:
    return UpgradeRequest(Selection(Path(path), target.environment, target.cluster, configure),
                          tuple(identities or ()))


@upgrade_app.command("plan")
@target_options(token_file=False, token=True)
@configure_options
def plan_cmd(
    path: RepoPath,
    identity: Identities = None,
    target: Target = GROUPED,
    configure: ConfigureOptions = GROUPED,
    output: ListOutput = ListFormat.text,
) -> None:
    """List the upgrade steps of one cluster (id, what it changes, state: done, needed, waiting, manual); change
    nothing. Exit 0 when the upgrade is complete, 1 when a step is left.

    Example: chamberlain upgrade plan examples/acme --cluster dev1
    """
    from chamberlain.service.upgrade import plan_upgrade

    with LiveServers(target.conn, clock()) as servers:
        result = plan_upgrade(_request(path, target, configure, identity), servers)
    if not emit_data(result.as_dict(), output):
        _print(result, wide=is_wide(output))
    if not result.complete:
        raise typer.Exit(1)


@upgrade_app.command("apply")
@target_options(token_file=False, token=True)
@configure_options
def apply_cmd(
    path: RepoPath,
    identity: Identities = None,
    target: Target = GROUPED,
    configure: ConfigureOptions = GROUPED,
    output: ListOutput = ListFormat.text,
) -> None:
    """Run the needed upgrade steps in order, each recorded in the ledger, resumable after a crash; print what ran
    and what is left (waiting for a Git re-render, or custody for the custodians). Exit 0 when complete, 3 when
    steps wait on Git or custodians.

    Example: chamberlain upgrade apply examples/acme --cluster dev1
    """
    from chamberlain.service.upgrade import apply_upgrade

    with LiveServers(target.conn, clock()) as servers:
        result = apply_upgrade(_request(path, target, configure, identity), servers,
                               Caller("chamberlain upgrade apply", servers.clock))
    if not emit_data(result.as_dict(), output):
        _print(result, wide=is_wide(output))
    if not result.complete:
        raise typer.Exit(3)
