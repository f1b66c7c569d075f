"""``chamberlain root init``: Phase 0, the offline root of trust (thin: options in, :mod:`chamberlain.root` out)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from chamberlain.cli.options import GROUPED, Target, actor, clock, repo_dir, settings, target_options
from chamberlain.cli.output import DataFormat, emit_data, line, stderr, stdout
from chamberlain.errors import UsageError

root_app = typer.Typer(no_args_is_help=True, add_completion=False)  # help: cli.main


@root_app.command("init")
def init_cmd(
    identity_file: Annotated[
        Path | None,
        typer.Option("--identity-file", metavar="FILE", help="Where the identity goes; must be outside the repository. "
                     "Default: ~/.config/chamberlain/root-of-trust/<platform>.agekey", show_default=False),
    ] = None,
    repo: Annotated[
        Path | None,
        typer.Option("--repo", help="Intent repository: add the recipient to its Platform and write .sops.yaml "
                     "creation rules for bootstrap files.", show_default=False, metavar="PATH"),
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
@target_options(environment=False, cluster=False, token_file=False, token=True)
def gitops_key_cmd(
    cluster: Annotated[str, typer.Argument(metavar="CLUSTER",
                                           help="The cluster whose GitOps controller gets the key.")],
    identity_file: Annotated[
        Path, typer.Option("--identity-file", help="Where the cluster's identity goes (created once, 0600); must "
                           "be outside the repository.", show_default=False, metavar="FILE"),
    ],
    repo: Annotated[Path, typer.Option("--repo", metavar="PATH",
                                       help="Intent repository whose Platform declares the recipient.")]
    = Path("."),
    output: Annotated[DataFormat, typer.Option("-o", "--output", help="Output format.")] = DataFormat.text,
    rotate: Annotated[bool, typer.Option("--rotate", help="Replace the cluster's declared key with a new one at "
                                         "--identity-file (playbook; needs --root-identity and --reason).")] = False,
    root_identity: Annotated[Path | None, typer.Option("--root-identity", help="--rotate: the root identity, to "
                                                       "re-encrypt the cluster's bootstrap files.",
                                                       show_default=False, metavar="FILE")] = None,
    old_recipient: Annotated[str | None, typer.Option("--old-recipient", metavar="RECIPIENT",
                                                      help="--rotate: the recipient to retire when the cluster "
                                                      "declares several.", show_default=False)
                             ] = None,
    retire_old: Annotated[bool, typer.Option("--retire-old", help="--rotate, after Flux applied the commit: drop the "
                                             "old key from flux-system/sops-age.")] = False,
    reason: Annotated[str, typer.Option("--reason", metavar="TEXT", help="--rotate: why, for the ledger.")] = "",
    offline: Annotated[bool, typer.Option("--offline", help="--rotate: Git only; no cluster, no ledger entry.")
                       ] = False,
    target: Target = GROUPED,
) -> None:
    """Create the age identity a cluster's GitOps controller decrypts bootstrap files with, and declare its
    recipient in Platform.spec.gitops.decryptionRecipients and .sops.yaml.

    --rotate (playbook): a new key replaces the declared one in the Platform and .sops.yaml, the cluster's
    bootstrap files are re-encrypted with the root identity, flux-system/sops-age gets the new key (the old one
    kept as previous.agekey until --retire-old), and the values the old key opened are listed.

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
    if rotate:
        _gitops_rotate(repo, cluster, identity_file, root_identity, old_recipient, retire_old, reason, offline,
                       target, output)
        return
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


def _servers(offline: bool, target: Target) -> Any:
    from chamberlain.service.context import LiveServers

    return contextlib.nullcontext(None) if offline else LiveServers(target.conn, clock())


def _print_rotation(result: Any) -> None:
    """The new recipient on stdout; what changed, what the old key opened and what is left, on stderr."""
    stdout.print(result.new_recipient, markup=False, highlight=False)
    line(f"identity {result.identity_file}: {'created' if result.created else 'exists, kept'}; "
         f"{result.platform_file}: {result.old_recipient} -> {result.new_recipient}", err=True)
    for rel in result.reencrypted:
        line(f"re-encrypted (sops updatekeys): {rel}", err=True)
    if result.unseal_shares:
        line(f"unseal shares: {result.unseal_shares}", err=True)
    if result.in_cluster_key:
        line(f"flux-system/sops-age: {result.in_cluster_key}", err=True)
    if result.exposed:
        line("the old key opens these through Git history (names only); each needs a new value:", err=True)
        for a in result.exposed:
            line(f"  {'rotate' if a.automatic else 'MANUAL':<7} {a.secret}: {'; '.join(a.because)}", err=True)
    for row in result.rotations:
        line(f"rotated {row['secret']}: {row['stage']}" + (f" ({row['error']})" if row.get("error") else ""),
             err=True)
    if result.ledger_seq is not None:
        line(f"ledger: playbook entry #{result.ledger_seq}", err=True)
    for todo in result.todo:
        line(f"to do: {todo}", err=True)


def _gitops_rotate(repo: Path, cluster: str, identity_file: Path, root_identity: Path | None,
                   old_recipient: str | None, retire_old: bool, reason: str, offline: bool, target: Target,
                   output: DataFormat) -> None:
    from chamberlain.bootstrap.tools import Tools
    from chamberlain.root import default_identity_path
    from chamberlain.service import playbooks
    from chamberlain.service.context import Caller

    if root_identity is None:
        raise UsageError("--rotate needs --root-identity FILE (it re-encrypts the cluster's bootstrap files)")
    s = settings()
    with _servers(offline, target) as servers:
        caller = Caller(actor(), servers.clock) if servers is not None else None
        result = playbooks.gitops_key_rotate(
            repo_dir(repo), cluster, identity_file.expanduser(), root_identity.expanduser(), reason,
            Tools.from_settings(s), servers=servers, caller=caller, old_recipient=old_recipient,
            retire_old=retire_old, root_dir=default_identity_path("x", s.config_dir).parent)
    if not emit_data(result.as_dict(), output):
        _print_rotation(result)
    raise typer.Exit(0 if result.ok else 1)


@root_app.command("rotate")
@target_options(token_file=False, token=True)
def rotate_cmd(
    identity: Annotated[Path, typer.Option("--identity", metavar="FILE", help="The root identity in force (it opens "
                                           "the bootstrap files and, without custody, the unseal shares).",
                                           show_default=False)],
    new_identity_file: Annotated[Path, typer.Option("--new-identity-file", help="Where the new root identity goes "
                                                    "(created once, 0600, outside the repository; kept if there).",
                                                    show_default=False, metavar="FILE")],
    reason: Annotated[str, typer.Option("--reason", metavar="TEXT", help="Why: recorded in the ledger.",
                                        show_default=False)],
    repo: Annotated[Path, typer.Option("--repo", metavar="PATH", help="The intent repository.")] = Path("."),
    rotate: Annotated[bool, typer.Option("--rotate", help="Also rotate the exposed secrets a rotator can rotate "
                                         "(-e/--cluster select where).")] = False,
    offline: Annotated[bool, typer.Option("--offline", help="Git only: no rekey, no ledger entry (listed as to-dos)."
                                          )] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Act without asking.")] = False,
    target: Target = GROUPED,
    output: Annotated[DataFormat, typer.Option("-o", "--output", help="Output format.")] = DataFormat.text,
) -> None:
    """Rotate the root of trust (playbook): a new identity replaces the old in the Platform and .sops.yaml, every
    bootstrap file is re-encrypted (sops updatekeys), the unseal shares are rekeyed to the new root when no custody
    is declared, and the values the old root opens through Git history are listed (names only) and, with
    --rotate, rotated where a rotator exists. Resumable: run it again with the same two files.

    Example: chamberlain root rotate --repo . --identity ~/.config/chamberlain/root-of-trust/acme.agekey
    --new-identity-file ~/.config/chamberlain/root-of-trust/acme-2026.agekey --reason "yearly rotation"
    """
    from chamberlain.bootstrap.tools import Tools
    from chamberlain.cli.playbook import confirm
    from chamberlain.service import playbooks
    from chamberlain.service.context import Caller

    if not reason.strip():
        raise UsageError("--reason is required (it is recorded in the ledger)")
    confirm(f"replace the root of trust {identity} with {new_identity_file} in {repo} and re-encrypt every "
            "bootstrap file?", yes)
    with _servers(offline, target) as servers:
        caller = Caller(actor(), servers.clock) if servers is not None else None
        result = playbooks.root_rotate(repo_dir(repo), identity.expanduser(), new_identity_file.expanduser(), reason,
                                       Tools.from_settings(settings()), servers=servers, caller=caller,
                                       environment=target.environment, cluster=target.cluster, rotate=rotate)
    if not emit_data(result.as_dict(), output):
        _print_rotation(result)
    raise typer.Exit(0 if result.ok else 1)
