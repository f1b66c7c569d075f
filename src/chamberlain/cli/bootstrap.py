"""``chamberlain bootstrap encrypt``: SOPS-encrypt a bootstrap Secret manifest in place (thin)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chamberlain.cli.options import settings
from chamberlain.cli.output import DataFormat, emit_data, stderr

bootstrap_app = typer.Typer(no_args_is_help=True, add_completion=False)  # help: cli.main


@bootstrap_app.command("encrypt")
def encrypt_cmd(
    file: Annotated[Path, typer.Argument(
        metavar="FILE", help="The Secret manifest to encrypt in place.", show_default=False)],
    repo: Annotated[Path, typer.Option(
        "--repo", metavar="PATH", help="The intent repository (for the Platform's recipients).")]
    = Path("."),
    intent: Annotated[
        str | None,
        typer.Option("--intent", metavar="NAME", help="The SecretIntent this Secret bootstraps (default: the one whose "
                     "source.bootstrap.file is FILE).", show_default=False),
    ] = None,
    output: Annotated[DataFormat, typer.Option("-o", "--output", help="Output format.")] = DataFormat.text,
) -> None:
    """Encrypt FILE in place with sops to the Platform's age recipients (data/stringData only).

    FILE must be one plaintext v1 Secret with name and namespace, its data values base64 (plaintext goes under
    stringData); the labels chamberlain.dev/class: bootstrap and chamberlain.dev/intent: NAME are added if missing.
    Any other FILE is refused as a usage error (exit 2). No second plaintext copy is written: sops reads the
    manifest from memory and the ciphertext atomically replaces FILE. On failure FILE is left untouched.

    Example: chamberlain bootstrap encrypt bootstrap/smtp-relay.sops.yaml --repo .
    """
    from chamberlain.bootstrap import Tools, encrypt_file

    result = encrypt_file(file, repo, tools=Tools.from_settings(settings()), intent=intent)
    data = {"file": result.rel, "intent": result.intent, "secret": f"{result.namespace}/{result.name}",
            "recipients": list(result.recipients), "labelsAdded": list(result.labels_added)}
    if not emit_data(data, output):
        stderr.print(f"[green]encrypted[/green] {result.rel} (Secret {result.namespace}/{result.name}, intent "
                     f"{result.intent}) to {len(result.recipients)} recipient(s)", highlight=False)
