"""``chamberlain demo``: the life cycle from Phase 0 to handover on the lab (thin: options in, report out).

Registered by the main CLI with ``app.command("demo")(demo_cmd)``. Progress lines go to stderr as each phase runs;
the report (one entry per phase: ok, seconds, non-secret facts) goes to stdout at the end. Exit 0 only when every
phase succeeded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from chamberlain.cli.output import DataFormat, emit_data, stderr, stdout
from chamberlain.demo import DemoOptions, Phase, default_previous_identity, default_source_repo


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


def demo_cmd(
    through: Annotated[Phase, typer.Option("--through", help="Stop after this phase.")] = Phase.handover,
    output: Annotated[DataFormat, typer.Option("-o", "--output", help="Output format.")] = DataFormat.text,
    lab_dir: Annotated[Path | None, typer.Option(
        "--lab-dir", show_default=False,
        help="Lab directory whose Vault is still uninitialized (default: a fresh temporary lab, removed "
             "afterwards unless --keep).")] = None,
    port_offset: Annotated[int, typer.Option("--port-offset", help="Shift every lab port by N.")] = 0,
    keep: Annotated[bool, typer.Option(
        "--keep", help="Leave the lab running and keep the working directory (repository copy, identity).")]
    = False,
    repo: Annotated[Path | None, typer.Option(
        "--repo", show_default=False,
        help="The intent repository to copy (default: examples/acme of this checkout); never modified.")] = None,
    previous_identity: Annotated[Path | None, typer.Option(
        "--previous-identity", show_default=False,
        help="An identity the repository's bootstrap files are encrypted to (default: the test identity).")]
    = None,
) -> None:
    """Run the life cycle on the lab: root init, bootstrap re-encryption and validate, render + apply (the lab's
    GitOps stand-in), authority init (unseal and configure included), provision, handover, audit verify.

    Works on a copy of the repository, for environment dev on cluster dev1. Needs a Vault that was never
    initialized, so by default it starts a fresh lab in a temporary directory. Prints each phase's result,
    duration and non-secret facts; never a value.

    Example: chamberlain demo -o json --port-offset 300
    """
    from chamberlain.demo import run_demo

    options = DemoOptions(
        through=through, lab_dir=lab_dir, port_offset=port_offset, keep=keep,
        source_repo=repo or default_source_repo(),
        previous_identity=previous_identity or default_previous_identity(),
    )
    report = run_demo(options, progress=_progress)
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
        if report.authoritative_after_seconds is not None:
            stdout.print(f"empty Vault -> authoritative: {report.authoritative_after_seconds:.1f}s; "
                         f"total {report.total_seconds:.1f}s", markup=False, highlight=False)
        else:
            stdout.print(f"total {report.total_seconds:.1f}s", markup=False, highlight=False)
        if report.kept:
            stdout.print(f"lab kept running in {report.lab_dir}; working directory {report.work_dir}",
                         markup=False, highlight=False)
    raise typer.Exit(0 if report.ok else 1)
