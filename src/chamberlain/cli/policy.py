"""``chamberlain policy plan|apply``: the rotation policy in force (Vault metadata) against Git's, thin commands
over :mod:`chamberlain.service.policy`.

``plan`` lists the drift per secret (exit 1 when there is any); ``apply`` writes Git's policy onto each drifted
secret, one ``policy-change`` ledger entry each. Connection options are those of ``rotate``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from chamberlain.cli.options import GROUPED, Reason, Target, actor, clock, target_options
from chamberlain.cli.output import DataFormat, Output, RepoPath, emit_data, line
from chamberlain.service.context import Caller, LiveServers

if TYPE_CHECKING:
    from chamberlain.rotation.policy_sync import PolicyDrift
    from chamberlain.service.policy import PolicyResult

policy_app = typer.Typer(no_args_is_help=True, add_completion=False)


def show_drift(drifts: list[PolicyDrift], *, applied: bool = False) -> None:
    """The drift as text: per secret, each field in force and in Git (``applied``: as it was before apply)."""
    if not drifts:
        line("policy in force matches Git for every secret")
    for d in drifts:
        line(f"{'applied' if applied else 'drift':<8} {d.secret} {d.vault.full} (policy {d.git_name or '-'})")
        for f in d.fields:
            line(f"    {f.field}: in force {f.in_force or '-'} -> git {f.in_git or '-'}")


def _print(result: PolicyResult, output: DataFormat) -> None:
    if not emit_data(result.as_dict(), output):
        show_drift(result.drifts, applied=result.applied is not None)


@policy_app.command("plan")
@target_options()
def plan_cmd(path: RepoPath, target: Target = GROUPED, output: Output = DataFormat.text) -> None:
    """Show where the rotation policy in force differs from Git's. Exit 1 when it does.

    Example: chamberlain policy plan examples/acme -e dev --cluster dev1
    """
    from chamberlain.service import policy

    with LiveServers(target.conn, clock()) as servers:
        result = policy.plan(Path(path), servers, environment=target.environment, cluster=target.cluster)
    _print(result, output)
    raise typer.Exit(1 if result.drifts else 0)


@policy_app.command("apply")
@target_options()
def apply_cmd(path: RepoPath, target: Target = GROUPED, reason: Reason = "policy changed in Git",
              output: Output = DataFormat.text) -> None:
    """Make Git's rotation policy the one in force, one audited policy-change per secret. Safe to re-run.

    Example: chamberlain policy apply examples/acme -e dev --cluster dev1 --reason "ttl 90d -> 30d (PR #42)"
    """
    from chamberlain.service import policy

    caller = Caller(actor(), clock())
    with LiveServers(target.conn, caller.clock) as servers:
        result = policy.apply(Path(path), servers, caller, environment=target.environment, cluster=target.cluster,
                              reason=reason)
    _print(result, output)
