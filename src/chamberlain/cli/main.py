"""Entry point of the ``chamberlain`` command: the typer app and the error boundary.

The error boundary turns every :class:`~chamberlain.errors.ChamberlainError` into a one-line message and its exit
code, and any other exception into a short internal-error line without a traceback (set CHAMBERLAIN_DEBUG=1 to see
it). Exception text is not printed for unexpected errors because it could carry data we never vetted.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from chamberlain import __version__
from chamberlain.cli.options import repo_dir, settings
from chamberlain.cli.output import (
    DataFormat,
    FindingsFormat,
    InventoryFormat,
    RepoPath,
    emit_data,
    emit_json,
    stderr,
    stdout,
)
from chamberlain.errors import ChamberlainError

app = typer.Typer(
    name="chamberlain",
    help="GitOps-native, Vault-first secret life cycle for Kubernetes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        stdout.print(f"chamberlain {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """GitOps-native, Vault-first secret life cycle for Kubernetes."""
    from chamberlain import faults

    faults.arm(settings().crash_at)  # resumability tests kill the process at a named checkpoint


@app.command()
def validate(
    path: RepoPath,
    output: Annotated[FindingsFormat, typer.Option("-o", "--output", help="Output format.")] = FindingsFormat.text,
) -> None:
    """Check an intent repository against the schema and every invariant. Exit 1 when anything is found.

    Example: chamberlain validate examples/acme -o sarif > chamberlain.sarif
    """
    from chamberlain.reporting import findings_to_dicts, summary, to_sarif, to_text_lines
    from chamberlain.service import validate_repository

    result = validate_repository(repo_dir(path))
    if output is FindingsFormat.json:
        emit_json({**summary(result.findings), "results": findings_to_dicts(result.findings)})
    elif output is FindingsFormat.sarif:
        emit_json(to_sarif(result.findings))
    else:
        for line in to_text_lines(result.findings):
            stdout.print(line, markup=False, highlight=False)
        n = len(result.findings)
        if n:
            stderr.print(f"[red]{n} finding{'s' if n != 1 else ''}[/red] in {path}")
        else:
            stderr.print(
                f"[green]ok[/green]: {path}: {len(result.repo.intents)} intents, "
                f"{len(result.repo.policies)} policies, {len(result.repo.files)} files checked"
            )
    raise typer.Exit(1 if result.findings else 0)


@app.command()
def render(
    path: RepoPath,
    out: Annotated[
        Path, typer.Option("-o", "--output", help="Directory to write the GitOps output to.", show_default=False)
    ],
) -> None:
    """Render the GitOps output (CRDs, intents, ESO objects, Vault bundle) after a clean validation.

    Byte-identical across runs. Nothing is written when validation finds anything.

    Example: chamberlain render examples/acme -o out/
    """
    from chamberlain.reporting import to_text_lines
    from chamberlain.service import render_to

    outcome = render_to(repo_dir(path), out)
    if outcome.findings:
        for line in to_text_lines(outcome.findings):
            stdout.print(line, markup=False, highlight=False)
        stderr.print(f"[red]{len(outcome.findings)} findings[/red]; nothing rendered")
        raise typer.Exit(1)
    stderr.print(f"[green]rendered[/green] {outcome.files} files to {out}")


@app.command()
def inventory(
    path: RepoPath,
    output: Annotated[InventoryFormat, typer.Option("-o", "--output", help="Output format.")] = InventoryFormat.text,
) -> None:
    """List every secret: owner, purpose, class, environments, Vault paths, consumers, workloads, rotation.

    Example: chamberlain inventory examples/acme -o html > inventory.html
    """
    from chamberlain.inventory import build_inventory, text_renderable, to_dict, to_html, to_markdown, to_text
    from chamberlain.service import load_valid

    repo = load_valid(repo_dir(path))
    inv = build_inventory(repo)
    if output is InventoryFormat.json:
        emit_json(to_dict(inv))
    elif output is InventoryFormat.markdown:
        sys.stdout.write(to_markdown(inv))
    elif output is InventoryFormat.html:
        sys.stdout.write(to_html(inv))
    else:
        # A terminal gets a table that fits its width; a pipe gets the fixed wide layout, which wraps less.
        if stdout.is_terminal:
            stdout.print(text_renderable(inv))
        else:
            sys.stdout.write(to_text(inv))


@app.command()
def schema(
    output: Annotated[DataFormat, typer.Option("-o", "--output", help="json or yaml.")] = DataFormat.json,
) -> None:
    """Print the JSON Schema of the intent kinds, for editors (yaml-language-server).

    Example: chamberlain schema > .chamberlain.schema.json
    """
    from chamberlain.schema import intent_json_schema

    data = intent_json_schema()
    if not emit_data(data, output):
        emit_json(data)


def _register_subapps() -> None:
    # Imported here, after the core commands, so `chamberlain validate` never pays for server clients.
    from chamberlain.cli.audit import audit_app
    from chamberlain.cli.authority import authority_app
    from chamberlain.cli.authority import plan as plan_cmd
    from chamberlain.cli.bootstrap import bootstrap_app
    from chamberlain.cli.controller import controller_app
    from chamberlain.cli.demo import demo_cmd
    from chamberlain.cli.gitops import apply_cmd
    from chamberlain.cli.handover import handover_cmd, provision_cmd
    from chamberlain.cli.lab import lab_app
    from chamberlain.cli.policy import policy_app
    from chamberlain.cli.root import root_app
    from chamberlain.cli.rotate import rotate_cmd, status_cmd

    app.add_typer(root_app, name="root", help="Phase 0: the offline root of trust (age identity).")
    app.add_typer(bootstrap_app, name="bootstrap", help="Bootstrap Secrets, SOPS-encrypted to the Platform recipients.")
    app.command("plan")(plan_cmd)
    app.command("apply")(apply_cmd)
    app.add_typer(authority_app, name="authority", help="Phase 3: initialize, unseal, configure and re-key Vault.")
    app.command("handover")(handover_cmd)
    app.command("provision")(provision_cmd)
    app.add_typer(audit_app, name="audit", help="Provenance of a secret and integrity of the ledger.")
    app.add_typer(lab_app, name="lab", help="The local lab of real servers: build, up, down, status.")
    app.command("demo")(demo_cmd)
    app.command("rotate")(rotate_cmd)
    app.add_typer(policy_app, name="policy", help="The rotation policy in force against Git's: plan, apply.")
    app.command("status")(status_cmd)
    app.add_typer(controller_app, name="controller", help="The in-cluster controller: triggers in, rotations out.")


_register_subapps()


def main() -> None:
    """Console entry point with the error boundary. Usage errors are click's (exit 2)."""
    try:
        app()
    except ChamberlainError as exc:
        stderr.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        sys.exit(exc.exit_code)
    except Exception as exc:
        if settings().debug:
            raise
        stderr.print(f"[red]internal error[/red] ({type(exc).__name__}); rerun with CHAMBERLAIN_DEBUG=1 to see it")
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
