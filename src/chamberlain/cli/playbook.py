"""``chamberlain playbook compromise | custodians``: thin commands over :mod:`chamberlain.service.playbooks`.

``compromise`` rotates every secret a compromise of a namespace, an owner or everything exposes (``--dry-run``
lists them and contacts no server); ``custodians`` rekeys the unseal shares to the custodians the Platform declares
now, after a lost custodian key (``--lost NAME``) or a replaced custodian. Both ask before acting (``--yes`` to
skip; without a terminal, ``--yes`` is required) and record ``--reason``. ``root rotate`` and ``root gitops-key
--rotate`` live with the other root commands (:mod:`chamberlain.cli.root`). Never prints a value.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from chamberlain.cli.options import GROUPED, DryRun, MaxWait, SyncTimeout, Target, actor, clock, target_options
from chamberlain.cli.output import DataFormat, ListFormat, ListOutput, RepoPath, emit_data, line, stderr
from chamberlain.errors import UsageError

playbook_app = typer.Typer(no_args_is_help=True, add_completion=False)  # help: cli.main

Reason = Annotated[str, typer.Option("--reason", metavar="TEXT", help="Why: recorded on every run and in the ledger.",
                                     show_default=False)]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Act without asking.")]


def confirm(question: str, yes: bool) -> None:
    """Ask on a terminal; without one, ``--yes`` is the only way on (a script must say so)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{question} — pass --yes to act without a terminal (or --dry-run to look first)")
    if not typer.confirm(question, default=False, err=True):
        raise typer.Exit(1)


@playbook_app.command("compromise")
@target_options()
def compromise_cmd(
    path: RepoPath,
    reason: Reason = "",
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", metavar="NAMESPACE", show_default=False,
                                                  help="A compromised namespace.")] = None,
    owner: Annotated[str | None, typer.Option("--owner", metavar="OWNER", show_default=False,
                                              help="A compromised owner (team): its intents and namespaces.")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Everything is compromised.")] = False,
    dry_run: DryRun = False,
    yes: Yes = False,
    max_wait: MaxWait = 120.0,
    timeout: SyncTimeout = 120.0,
    target: Target = GROUPED,
    output: ListOutput = ListFormat.text,
) -> None:
    """Rotate every secret a compromise exposes: what consumers in the namespace read, what is published or
    bootstrapped there, an owner's intents, the secrets an exposed admin credential administers (--all:
    everything). Lists what cannot rotate automatically and what to do instead.

    Example: chamberlain playbook compromise examples/acme --namespace payments --reason "INC-1234" -e dev -c dev1
    """
    from chamberlain.cli.progress import ReportingClock, WaitProgress
    from chamberlain.playbook.compromise import Scope
    from chamberlain.service import playbooks
    from chamberlain.service.context import Caller, LiveServers

    scope = Scope.of(namespace=namespace, owner=owner, everything=everything)
    if not dry_run:
        playbooks.compromise_reason(scope, reason)  # a missing reason is refused before anything else
    plan = playbooks.compromise_plan(Path(path), scope, environment=target.environment, cluster=target.cluster)
    data: dict[str, Any] = {"dryRun": dry_run, **plan.as_dict()}
    if dry_run:
        if not emit_data(data, output):
            _print_plan(plan)
        return
    plan.check_actionable()
    _print_plan(plan, err=True)
    confirm(f"rotate {len(plan.to_rotate)} secret(s) of {plan.environment}/{plan.cluster} now?", yes)
    wall = clock()
    with WaitProgress(stderr, wall, verb="rotate") as progress:
        caller = Caller(actor(), ReportingClock(wall, progress))
        with LiveServers(target.conn, caller.clock) as servers:
            result = playbooks.compromise(Path(path), plan, reason, servers, caller, max_wait=max_wait,
                                          timeout=timeout, on_stage=progress.stage)
    data.update({"ok": result.ok, "runs": result.rows})
    if not emit_data(data, output):
        for row in result.rows:
            line(f"{row['stage']:<12} {row['secret']} {row['path']}  run {row['run']}  "
                 f"v{row['previousVersion']} -> v{row['version'] if row['version'] is not None else '?'}"
                 + (f"  {row['error']}" if row.get("error") else ""))
    raise typer.Exit(0 if result.ok else 1)


def _print_plan(plan: Any, *, err: bool = False) -> None:
    line(f"compromise of {plan.scope.describe()} ({plan.environment}/{plan.cluster}): "
         f"{len(plan.secrets)} secret(s) exposed, {len(plan.to_rotate)} to rotate", err=err)
    for a in plan.secrets:
        action = ("not placed here" if a.secret in plan.not_placed else "rotate" if a.automatic
                  else "MANUAL")
        line(f"  {action:<15} {a.secret:<28} {'; '.join(a.because)}", err=err)
        if a.manual:
            line(f"  {'':<15} -> {a.manual}", err=err)


@playbook_app.command("custodians")
@target_options(environment=False, token_file=False, token=True)
def custodians_cmd(
    path: RepoPath,
    identity: Annotated[list[Path], typer.Option(
        "--identity", help="age identity of a custodian of the shares in force (k of them, one --identity each; "
                           "the root's without custody).", metavar="FILE")] = [],  # noqa: B006 - typer reads the default
    lost: Annotated[list[str], typer.Option("--lost", metavar="NAME",
                                            help="A custodian whose key is lost or exposed (repeat).")
                    ] = [],  # noqa: B006
    reason: Reason = "",
    dry_run: DryRun = False,
    yes: Yes = False,
    target: Target = GROUPED,
    output: Annotated[DataFormat, typer.Option("-o", "--output", help="Output format.")] = DataFormat.text,
) -> None:
    """A lost custodian key or a replaced custodian: change rootOfTrust.custody in Git first (a new ageRecipient,
    another custodian), then k custodians of the shares in force rekey to the declared set; the old shares, the
    lost one among them, stop working.

    Example: chamberlain playbook custodians examples/acme --lost bob --identity alice.agekey
    --identity carol.agekey --reason "bob's laptop was stolen"
    """
    from chamberlain.service import playbooks
    from chamberlain.service.context import Caller, LiveServers

    if not dry_run and not reason.strip():
        raise UsageError("--reason is required (it is recorded in the ledger)")
    with LiveServers(target.conn, clock()) as servers:
        plan = playbooks.custody_plan(Path(path), servers, lost=lost)
        data: dict[str, Any] = {"dryRun": dry_run, **plan.as_dict()}
        if not (dry_run and emit_data(data, output)):
            _print_custody(plan, err=not dry_run)
        if dry_run:
            return
        confirm(f"rekey: new shares for {', '.join(plan.declared) or 'the root recipients'}; the shares in force "
                "stop working?", yes)
        _, result = playbooks.custody_rekey(Path(path), identity, reason, servers,
                                            Caller(actor(), servers.clock), lost=lost, cluster=target.cluster)
    r = result.report
    data.update({"shares": r.shares, "threshold": r.threshold, "generation": r.generation, "keyTerm": r.key_term})
    if not emit_data(data, output):
        line(f"rekeyed: {r.shares} new shares (threshold {r.threshold}, generation {r.generation}); the old shares, "
             f"{'the lost ones among them, ' if lost else ''}open nothing the authority accepts.")


def _print_custody(plan: Any, *, err: bool) -> None:
    line(f"shares in force: {', '.join(plan.stored)} (threshold {plan.threshold_in_force}); declared: "
         f"{', '.join(plan.declared) or 'no custody (root recipients)'} (threshold {plan.threshold})", err=err)
    for label, names in (("new share for", plan.added), ("loses their share", plan.removed),
                         ("new share, same custodian", plan.kept), ("lost key", list(plan.lost))):
        if names:
            line(f"  {label}: {', '.join(names)}", err=err)
    line(f"  rekey needs {plan.threshold_in_force} of: {', '.join(plan.can_open)}", err=err)
    for w in plan.warnings:
        line(f"  warning: {w}", err=True)
