"""``chamberlain adopt verify REPO`` (the values already in cluster Secrets, ``source.existingSecret``, come under the
authority, once) and ``chamberlain adopt takeover REPO`` (chamberlain's ExternalSecrets take their consumer Secrets
over with no window). Thin commands over :mod:`chamberlain.service.adoption`.

:mod:`chamberlain.cli.main` adds them to the ``adopt`` group beside the reading of an estate
(:mod:`chamberlain.cli.adopt`).

Exit 0 when every selected value is adopted (now or before), 1 when one is refused by the state of things (no
adopt marker, Secret or key missing, the path holding another value), 2 on usage errors. Never prints a value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chamberlain.cli.options import GROUPED, DryRun, Reason, Target, actor, clock, target_options
from chamberlain.cli.output import ListFormat, ListOutput, RepoPath, emit_data, is_wide, line
from chamberlain.service.context import Caller, LiveServers

# Both commands act on the same selection: every source.existingSecret intent, or the ones named.
OnlyIntents = Annotated[list[str] | None, typer.Option(
    "--intent", "-i", help="Only this intent (repeatable); default: every source.existingSecret intent.",
    show_default=False, metavar="NAME")]


@target_options()
def adopt_verify_cmd(
    path: RepoPath,
    target: Target = GROUPED,
    only: OnlyIntents = None,
    wait: Annotated[float, typer.Option(
        "--wait", help="Seconds to keep polling the values not ready yet (marker, Secret or key missing).")] = 0.0,
    dry_run: DryRun = False,
    reason: Reason = "existing Secret adopted (source.existingSecret)",
    output: ListOutput = ListFormat.text,
) -> None:
    """Import each existing Secret's declared keys into its runtime path, once, and record it.

    Checked first, nothing written otherwise: the Secret carries the adopt marker chamberlain.dev/adopt=<intent>
    and every declared key. Then: check-and-set create, read back, the keyed version marker and the policy
    recorded on the secret, one `adopt` ledger entry. Already adopted values are not read again. No value is ever
    printed.

    Example: chamberlain adopt verify ./repo -e dev --cluster dev1
    """
    from chamberlain.service.adoption import verify

    caller = Caller(actor(), clock())
    with LiveServers(target.conn, caller.clock) as servers:
        result = verify(Path(path), servers, caller, environment=target.environment, cluster=target.cluster,
                        only=set(only) if only else None, dry_run=dry_run, wait=wait, reason=reason)
    data = result.as_dict()
    if not emit_data(data, output):
        for row in data["imports"]:
            text = f"{row['result']:<16} {row['intent']} ({row['environment']}/{row['cluster']}) {row['source']} " \
                   f"-> {row['path']}"
            if is_wide(output):
                text += f"  v{row['version'] or '-'}  marker {row['marker'] or '-'}  ledger #{row['ledgerSeq'] or '-'}"
            line(text)
            if row["result"] in ("not-marked", "missing", "held", "conflict"):
                line(f"  {row['message']}", err=True)
        if not data["imports"]:
            line("no source.existingSecret intents in the selected environment and cluster", err=True)
    raise typer.Exit(0 if result.ok else 1)


@target_options()
def adopt_takeover_cmd(
    path: RepoPath,
    target: Target = GROUPED,
    only: OnlyIntents = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for ESO per Secret.")] = 60.0,
    dry_run: DryRun = False,
    output: ListOutput = ListFormat.text,
) -> None:
    """chamberlain's ExternalSecrets take over the consumer Secrets of adopted values, with no window.

    Per consumer Secret, once `adopt verify` imported its value and GitOps applied chamberlain's ExternalSecret:
    checks (in memory) that the Secret holds exactly what that ExternalSecret will write, then replaces the
    Secret's controller reference in one guarded update (a plain Secret gets one; an old ExternalSecret is deleted
    after it lost the Secret), forces ESO to sync and waits for the authority's version marker. A Secret
    controlled by anything else is left alone. The data never changes; no value is printed.

    Example: chamberlain adopt takeover ./repo -e dev --cluster dev1
    """
    from chamberlain.service.adoption import takeover

    with LiveServers(target.conn, clock()) as servers:
        result = takeover(Path(path), servers, environment=target.environment, cluster=target.cluster,
                          only=set(only) if only else None, dry_run=dry_run, timeout=timeout)
    data = result.as_dict()
    if not emit_data(data, output):
        for row in data["takeovers"]:
            text = f"{row['result']:<14} {row['secret']} <- {row['path']} ({row['intent']})"
            if is_wide(output):
                text += f"  was {row['previousOwner'] or 'unowned'}  data unchanged {row['dataUnchanged']}"
            line(text)
            if not result.ok and row["result"] in ("not-imported", "awaiting-apply", "would-change", "blocked",
                                                   "timeout"):
                line(f"  {row['message']}", err=True)
        if not data["takeovers"]:
            line("no consumer Secrets of source.existingSecret intents in the selected environment and cluster",
                 err=True)
    raise typer.Exit(0 if result.ok else 1)
