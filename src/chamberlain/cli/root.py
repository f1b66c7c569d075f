"""``chamberlain root init``: Phase 0, the offline root of trust (thin: options in, :mod:`chamberlain.root` out)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from chamberlain.cli.options import repo_dir, settings
from chamberlain.cli.output import DataFormat, emit_data, stderr, stdout

root_app = typer.Typer(no_args_is_help=True, add_completion=False)  # help: cli.main


@root_app.command("init")
def init_cmd(
    identity_file: Annotated[
        Path | None,
        typer.Option("--identity-file", help="Where the identity goes; must be outside the repository. "
                     "Default: ~/.config/chamberlain/root-of-trust/<platform>.agekey", show_default=False),
    ] = None,
    repo: Annotated[
        Path | None,
        typer.Option("--repo", help="Intent repository: add the recipient to its Platform and write .sops.yaml "
                     "creation rules for bootstrap files.", show_default=False),
    ] = None,
    print_identity: Annotated[
        bool, typer.Option("--print-identity", help="Also print the SECRET identity (for moving it offline).")
    ] = False,
    output: Annotated[DataFormat, typer.Option("-o", "--output", help="Output format.")] = DataFormat.text,
) -> None:
    """Create the offline age identity once (0600, never in Git, never regenerated) and print its recipient.

    An existing identity file is kept and reused, never overwritten. With --repo, the recipient is added to
    Platform.spec.rootOfTrust.ageRecipients and .sops.yaml gets creation rules for bootstrap files; both edits keep
    comments and layout and are idempotent.

    Example: chamberlain root init --repo examples/acme
    """
    from chamberlain.bootstrap.tools import Tools
    from chamberlain.service import root

    s = settings()
    result = root.init(repo=repo_dir(repo) if repo is not None else None,
                       identity_file=identity_file.expanduser() if identity_file is not None else None,
                       config_dir=s.config_dir, tools=Tools.from_settings(s))
    ident, update = result.identity, result.update
    if not emit_data(result.as_dict(), output):
        stdout.print(ident.recipient, markup=False, highlight=False)
        state = "created" if ident.created else "exists, kept (never regenerated)"
        stderr.print(f"identity {ident.path}: {state}; keep it offline, it is the root of trust", markup=False)
        if update is not None:
            stderr.print(f"{update.platform_file}: recipient {'added' if update.recipient_added else 'present'}; "
                         f".sops.yaml {'written' if update.sops_config_written else 'up to date'}", markup=False)
            for rel in update.stale_files:
                stderr.print(f"{rel}: not encrypted to every recipient; re-encrypt with `sops updatekeys {rel}` "
                             "using an identity that can decrypt it", markup=False)
    if print_identity:
        # Only on explicit request, and read straight from the file: chamberlain itself never keeps it.
        sys.stdout.write(ident.path.read_text(encoding="utf-8"))


@root_app.command("gitops-key")
def gitops_key_cmd(
    cluster: Annotated[str, typer.Argument(help="The cluster whose GitOps controller gets the key.")],
    identity_file: Annotated[
        Path, typer.Option("--identity-file", help="Where the cluster's identity goes (created once, 0600); must "
                           "be outside the repository.", show_default=False),
    ],
    repo: Annotated[Path, typer.Option("--repo", help="Intent repository whose Platform declares the recipient.")]
    = Path("."),
    output: Annotated[DataFormat, typer.Option("-o", "--output", help="Output format.")] = DataFormat.text,
) -> None:
    """Create the age identity a cluster's GitOps controller decrypts bootstrap files with, and declare its
    recipient in Platform.spec.gitops.decryptionRecipients and .sops.yaml.

    A key of its own, never a root recipient: bootstrap files are encrypted to the root recipients plus it, unseal
    shares to the root recipients only. Re-encrypt the files it lists with `sops updatekeys`, then put the identity
    into the cluster as Flux expects it:
    kubectl -n flux-system create secret generic sops-age --from-file=identity.agekey=FILE

    Example: chamberlain root gitops-key dev1 --identity-file ~/.config/chamberlain/gitops/dev1.agekey --repo .
    """
    from chamberlain.bootstrap.tools import Tools
    from chamberlain.root import default_identity_path
    from chamberlain.service import root

    s = settings()
    result = root.gitops_key(repo=repo_dir(repo), cluster=cluster, identity_file=identity_file.expanduser(),
                             tools=Tools.from_settings(s), root_dir=default_identity_path("x", s.config_dir).parent)
    ident, update = result.identity, result.update
    if emit_data(result.as_dict(), output):
        return
    stdout.print(ident.recipient, markup=False, highlight=False)
    state = "created" if ident.created else "exists, kept (never regenerated)"
    stderr.print(f"identity {ident.path}: {state}; it belongs in the cluster's flux-system/sops-age only",
                 markup=False)
    if update is not None:
        stderr.print(f"{update.platform_file}: decryption recipient of {cluster} "
                     f"{'added' if update.recipient_added else 'present'}; .sops.yaml "
                     f"{'written' if update.sops_config_written else 'up to date'}", markup=False)
        for rel in update.stale_files:
            stderr.print(f"{rel}: not encrypted to every recipient; re-encrypt with `sops updatekeys {rel}` using "
                         "the root identity", markup=False)
