"""``chamberlain audit show NAME PATH`` and ``chamberlain audit verify PATH``: provenance and ledger integrity, thin
commands over :mod:`chamberlain.service.audit`.

Design: two subcommands rather than ``audit NAME`` plus a reserved word ``verify``, because a positional NAME next
to subcommands makes every secret called ``verify`` (a valid DNS label) ambiguous, and click resolves subcommands
before arguments. ``show`` answers the auditor's questions for one secret (SPEC §5: when was it handed over,
created, rotated, why, by which run, did it succeed) from the ledger and the custom_metadata on the secret;
``verify`` recomputes the hash chain of every partition and checks each entry's signature against the public keys
pinned in Git; ``pin`` writes those keys (``audit/ledger-keys.yaml``) from the authority.

Reads only; needs a Vault token that can read the runtime mount (``--vault-token-file``, or ``--cluster`` to log
in as that cluster's orchestrator). Nothing printed here can be a value: ledger entries and custom_metadata never
hold one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chamberlain.cli.options import GROUPED, Target, clock, target_options
from chamberlain.cli.output import (
    DataFormat,
    ListFormat,
    ListOutput,
    Output,
    RepoPath,
    emit_data,
    is_wide,
    line,
    stderr,
)
from chamberlain.service.context import LiveServers

audit_app = typer.Typer(no_args_is_help=True, add_completion=False)  # help: cli.main


@audit_app.command("show")
@target_options(environment=False)
def show(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The SecretIntent name.", show_default=False)],
    path: RepoPath,
    output: ListOutput = ListFormat.text,
    target: Target = GROUPED,
) -> None:
    """Every ledger entry of a secret and its current custom_metadata in every environment (-o wide: with each
    entry's partition and whether it is signed).

    Example: chamberlain audit show smtp-relay examples/acme -o json
    """
    from chamberlain.service import audit

    with LiveServers(target.conn, clock()) as servers:
        provenance = audit.show(name, Path(path), servers, cluster=target.cluster)
    if emit_data(provenance.as_dict(), output):
        return
    line(f"secret {name}")
    if not provenance.ledger:
        line("  ledger: no entries")
    for row in provenance.ledger:
        details = " ".join(f"{k}={v}" for k, v in row["details"].items())
        wide = (f" partition={row.get('partition') or '-'} signed={'yes' if row.get('sig') else 'no'}"
                if is_wide(output) else "")
        line(f"  #{row['seq']} {row['time']} {row['event']} {row['result']} run={row['run'] or '-'} "
             f"actor={row['actor']} path={row['path'] or '-'} reason={row['reason'] or '-'}{wide} {details}".rstrip())
    for full, meta in provenance.metadata.items():
        if meta is None:
            line(f"  {full}: not in Vault")
            continue
        line(f"  {full}: version {meta['currentVersion']}")
        for key, value in meta["custom"].items():
            line(f"    {key}: {value}")


@audit_app.command("pin")
@target_options(environment=False)
def pin(path: RepoPath, output: Output = DataFormat.text, target: Target = GROUPED) -> None:
    """Pin the ledger's public signing keys in Git: write audit/ledger-keys.yaml from the authority.

    Review and commit the file; `audit verify` checks every signature against it, never against the server.
    Example: chamberlain audit pin examples/acme --cluster prod-eu-1
    """
    from chamberlain.service import audit

    with LiveServers(target.conn, clock()) as servers:
        result = audit.pin(Path(path), servers, cluster=target.cluster)
    if not emit_data(result.as_dict(), output):
        for key, versions in result.keys.items():
            line(f"{key}: versions {', '.join(map(str, versions))}")
        state = "written" if result.changed else "unchanged"
        stderr.print(f"[green]ok[/green]: {result.file} {state} (review and commit it)")


@audit_app.command("verify")
@target_options(environment=False)
def verify(path: RepoPath, output: ListOutput = ListFormat.text, target: Target = GROUPED) -> None:
    """Verify every ledger partition: hash chains, and signatures against the keys pinned in Git (audit pin).

    Exit 0 when intact, 1 with the problems found (damaged slots with their partition, seq and reason).

    Example: chamberlain audit verify examples/acme
    """
    from chamberlain.service import audit

    with LiveServers(target.conn, clock()) as servers:
        result = audit.verify(Path(path), servers, cluster=target.cluster)
    if not emit_data(result.as_dict(), output):
        for problem in result.problems:
            line(f"problem: {problem}")
        if is_wide(output):  # the evidence: each damaged slot, and every partition checked
            for slot in result.damaged:
                line(f"damaged: partition={slot['partition']} seq={slot['seq']} reason={slot['reason']}")
            for partition in result.partitions:
                line(f"partition: {partition}")
        for warning in result.warnings:
            line(f"warning: {warning}")
        if result.ok:
            stderr.print(f"[green]ok[/green]: the ledger verifies ({result.entries} entries)")
        else:
            stderr.print(f"[red]{len(result.problems)} problems[/red] in the ledger ({result.entries} entries)")
    raise typer.Exit(0 if result.ok else 1)
