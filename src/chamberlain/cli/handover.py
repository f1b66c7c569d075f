"""``chamberlain handover PATH`` and ``chamberlain provision PATH``: thin commands over
:mod:`chamberlain.service.handover`.

Connecting: Vault at ``--vault-addr`` (default: the Platform's ``authority.address``) with the CA in
``--vault-cacert``. By default chamberlain logs in through Vault's Kubernetes auth as the orchestrator of the
selected cluster (``chamberlain.<cluster>.orchestrator``, a fresh short-lived ServiceAccount token from
``--kubeconfig``'s cluster); ``--vault-token-file`` uses a token from a file instead (lab, break-glass) — a file,
never a command-line value, so the token stays out of shell history and ``ps``.

Output: one line per secret (``-o wide`` adds columns, ``-o json|yaml`` for machines); exit 0 when everything
converged, 1 on a conflict, a blocked secret or an interrupted run (the message says who is the authority now), 2
on usage errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from chamberlain.cli.options import GROUPED, DryRun, Reason, Target, actor, clock, settings, target_options
from chamberlain.cli.output import ListFormat, ListOutput, RepoPath, emit_data, is_wide, line
from chamberlain.service.context import Caller, LiveServers


def _steps(row: dict[str, Any], head: str, dry_run: bool, *, wide: bool = False) -> str:
    """``head`` (a format over the row) and the steps taken, or those a dry run would take (``wide``: with the
    ledger entry, and for a handover what happens to the bootstrap Secret and who applies it)."""
    text = head.format_map(row) + f"  {'would' if dry_run else 'steps'}: {','.join(row['steps']) or '-'}"
    if wide:
        seq = row.get("ledgerSeq")
        text += f"  ledger #{'-' if seq is None else seq}"
        if "afterHandover" in row:
            text += f"  after-handover {row['afterHandover'] or '-'}  gitops {row.get('gitops') or '-'}"
    return text


@target_options()
def handover_cmd(
    path: RepoPath,
    target: Target = GROUPED,
    dry_run: DryRun = False,
    reason: Reason = "explicit handover",
    commit: Annotated[bool, typer.Option(
        "--commit", help="When GitOps still applies a bootstrap Secret: git-commit the retirement written into "
                         "the intent file (that file only).")] = False,
    output: ListOutput = ListFormat.text,
) -> None:
    """Hand the bootstrap Secrets of one cluster over to Vault: copy (check-and-set), verify, record, retire.

    Safe to re-run: finished handovers are no-ops and an interrupted one resumes. A different value already in
    Vault is a conflict that touches nothing. A bootstrap Secret that Flux or Argo CD still applies is not retired
    (it would come back): handover records the transfer, writes the retirement (retiredIn, retiredFingerprint) into
    the intent file, and the Secret is retired by the next run once that change is pushed and reconciled. No value
    is ever printed.

    Example: chamberlain handover examples/acme --cluster dev1 --vault-token-file ~/.vault-token
    """
    from chamberlain.handover.declare import git_env
    from chamberlain.service.handover import GitOptions, handover

    caller = Caller(actor(), clock())
    git = GitOptions(commit=commit, env=git_env(settings().child_env))
    with LiveServers(target.conn, caller.clock) as servers:
        result = handover(Path(path), servers, caller, environment=target.environment, cluster=target.cluster,
                          dry_run=dry_run, reason=reason, git=git)
    data = result.as_dict()
    if not emit_data(data, output):
        for row in data["handovers"]:
            line(_steps(row, "{result:<20} {intent} ({environment}/{cluster}) {source} -> {path}", dry_run,
                        wide=is_wide(output)))
            if row["result"] in ("conflict", "blocked"):
                line(f"  {row['message']}", err=True)
            elif row["result"] == "awaiting-retirement":
                _print_awaiting(row)
        if not data["handovers"]:
            line("no bootstrap secrets in the selected cluster", err=True)
    raise typer.Exit(0 if result.ok else 1)


def _print_awaiting(row: dict[str, Any]) -> None:
    git = row.get("git") or {}
    line(f"  {row['message']}", err=True)
    if git.get("commit"):
        line(f"  committed {git['file']} ({str(git['commit'])[:12]}): push it, let GitOps reconcile, then re-run "
             "handover", err=True)
    elif git.get("changed"):
        line(f"  wrote the retirement into {git['file']}: commit and push it, let GitOps reconcile, then re-run "
             "handover", err=True)
    else:
        line(f"  {git.get('file', 'the intent file')} already declares it: push it and let GitOps reconcile, then "
             "re-run handover", err=True)


@target_options()
def provision_cmd(path: RepoPath, target: Target = GROUPED, dry_run: DryRun = False,
                  output: ListOutput = ListFormat.text) -> None:
    """Create the initial values of generated secrets (source.generate) in Vault; existing values stay untouched.

    Each value is created once (check-and-set 0), tagged with the rotation policy in force and recorded in the
    ledger. Safe to re-run. No value is ever printed.

    Example: chamberlain provision examples/acme --environment dev --vault-token-file ~/.vault-token
    """
    from chamberlain.service.handover import provision

    caller = Caller(actor(), clock())
    with LiveServers(target.conn, caller.clock) as servers:
        result = provision(Path(path), servers, caller, environment=target.environment, cluster=target.cluster,
                           dry_run=dry_run)
    data = result.as_dict()
    if not emit_data(data, output):
        for row in data["values"]:
            line(_steps(row, "{result:<8} {intent} ({environment}) {path}", dry_run, wide=is_wide(output)))
