"""``chamberlain demo``: the life cycle from Phase 0 through handover to rotation on the lab (thin: options in,
report out).

Registered by the main CLI with ``app.command("demo")(demo_cmd)``. Progress lines go to stderr as each phase runs;
the report (one entry per phase: ok, seconds, non-secret facts; one row per rotation) goes to stdout at the end.
Exit 0 only when every phase succeeded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from chamberlain.cli.lab import AuthorityChoice
from chamberlain.cli.output import DataFormat, emit_data, stderr, stdout
from chamberlain.demo import DemoOptions, Phase, default_previous_identity, default_source_repo
from chamberlain.terminal import Console


def _progress(message: str) -> None:
    stderr.print(message, markup=False, highlight=False)


def _fact_text(facts: dict[str, Any]) -> str:
    parts = []
    for key, value in facts.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value) if len(value) <= 3 else f"{len(value)} items"
        parts.append(f"{key}: {value}")
    return "\n".join(parts)


def _yes(value: object) -> str:
    return "yes" if value is True else "no"


def _rotation_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="rotations (through the controller and ESO)")
    for column in ("secret", "trigger", "run"):
        table.add_column(column, overflow="fold")
    table.add_column("version", justify="right", no_wrap=True)
    table.add_column("propagated", justify="right", no_wrap=True)
    table.add_column("workloads restarted", overflow="fold")
    for row in rows:
        seconds = row.get("propagationSeconds")
        table.add_row(str(row["secret"]), str(row["trigger"]), str(row["run"]),
                      f"{row['previousVersion']} -> {row['version']}",
                      "-" if seconds is None else f"{seconds:.2f} s",
                      "\n".join(row.get("workloadsRestarted") or []) or "-")
    return table


def demo_cmd(
    through: Annotated[Phase, typer.Option(
        "--through", metavar="PHASE", help="Stop after this phase (then the ledger is verified, once Vault is the "
        f"authority): {', '.join(p.value for p in Phase)}.")]
    = Phase.rotation_postgres,
    output: Annotated[DataFormat, typer.Option("-o", "--output", help="Output format.")] = DataFormat.text,
    lab_dir: Annotated[Path | None, typer.Option(
        "--lab-dir", metavar="DIR", show_default=False,
        help="Lab directory whose Vault is still uninitialized (default: a fresh temporary lab, removed "
             "afterwards unless --keep).")] = None,
    port_offset: Annotated[int, typer.Option("--port-offset", help="Shift every lab port by N.")] = 0,
    authority: Annotated[AuthorityChoice, typer.Option(
        "--authority", help="The lab's runtime authority: OpenBao (default) or HashiCorp Vault.")]
    = AuthorityChoice.openbao,
    keep: Annotated[bool, typer.Option(
        "--keep", help="Leave the lab running and keep the working directory (repository copy, identity).")]
    = False,
    repo: Annotated[Path | None, typer.Option(
        "--repo", metavar="PATH", show_default=False,
        help="The intent repository to copy (default: examples/acme of this checkout); never modified.")] = None,
    previous_identity: Annotated[Path | None, typer.Option(
        "--previous-identity", metavar="FILE", show_default=False,
        help="An identity the repository's bootstrap files are encrypted to (default: the test identity).")]
    = None,
) -> None:
    """Run the life cycle on the lab: root init (and a GitOps key per cluster), bootstrap re-encryption and
    validate, render (the tree committed to the lab's Git server and applied by Flux, which decrypts the bootstrap
    files in-cluster), authority init (unseal and configure included), provision, handover (the retirement it writes is
    committed and reconciled by Flux, then the bootstrap Secrets are retired), the declared workloads and ESO
    materialization, then three rotations through the real controller and ESO
    (time trigger, signed webhook, and the alternating PostgreSQL rotation of payments-db), audit verify.

    Works on a copy of the repository, for environment dev on cluster dev1. Needs a Vault that was never
    initialized, so by default it starts a fresh lab in a temporary directory. Prints each phase's result,
    duration and non-secret facts, and a table of the rotations; never a value.

    Example: chamberlain demo -o json --port-offset 300
    """
    from chamberlain.bootstrap import Tools
    from chamberlain.cli.options import login_name, settings
    from chamberlain.clock import SystemClock
    from chamberlain.demo import run_demo
    from chamberlain.lab.servers import LabHost

    s = settings()
    options = DemoOptions(
        through=through, lab_dir=lab_dir, port_offset=port_offset, authority=authority.value, keep=keep,
        source_repo=repo or default_source_repo(),
        previous_identity=previous_identity or default_previous_identity(),
        user=login_name(), debug=s.debug,
    )
    tools = Tools.from_settings(s)
    for tool in ("sops", "age-keygen"):  # a missing one is a usage error (exit 2) before a lab starts, not a phase
        tools.find(tool)
    report = run_demo(options, LabHost.from_settings(s, SystemClock()), tools, progress=_progress)
    data = report.as_dict()
    if not emit_data(data, output):
        table = Table(title=f"chamberlain demo (through {report.through}; {data['scope']['environment']}/"
                            f"{data['scope']['cluster']})")
        table.add_column("phase")
        table.add_column("ok")
        table.add_column("seconds", justify="right")
        table.add_column("facts")
        for phase in report.phases:
            table.add_row(phase.name, "[green]ok[/green]" if phase.ok else "[red]FAILED[/red]",
                          f"{phase.seconds:.1f}", phase.error or _fact_text(phase.facts))
        for name in report.skipped:
            table.add_row(name, "skipped", "", "")
        stdout.print(table)
        if report.rotations:
            # Piped output defaults to 80 columns, too narrow for workload names: there the table gets 120.
            (stdout if stdout.is_terminal else Console(width=120, soft_wrap=True)).print(
                _rotation_table(report.rotations))
            postgres = next((p.facts for p in report.phases if p.name == "rotation-postgres" and p.ok), None)
            if postgres is not None:
                stdout.print(f"PostgreSQL ({postgres['strategy']}): {postgres['users']}; new credential logs in: "
                             f"{_yes(postgres['new_credential_logs_in'])}; old one rejected after revoke: "
                             f"{_yes(postgres['old_credential_rejected_after_revoke'])}; a client logged in "
                             f"{postgres['client_logins']} times during the rotation, "
                             f"{postgres['client_failed_logins']} failed", markup=False, highlight=False)
        if report.authoritative_after_seconds is not None:
            stdout.print(f"empty Vault -> authoritative: {report.authoritative_after_seconds:.1f}s; "
                         f"total {report.total_seconds:.1f}s", markup=False, highlight=False)
        else:
            stdout.print(f"total {report.total_seconds:.1f}s", markup=False, highlight=False)
        if report.kept:
            stdout.print(f"lab kept running in {report.lab_dir}; working directory {report.work_dir}",
                         markup=False, highlight=False)
    raise typer.Exit(0 if report.ok else 1)
