"""``chamberlain audit show NAME PATH`` and ``chamberlain audit verify PATH``: provenance and ledger integrity.

Design: two subcommands rather than ``audit NAME`` plus a reserved word ``verify``, because a positional NAME next
to subcommands makes every secret called ``verify`` (a valid DNS label) ambiguous, and click resolves subcommands
before arguments. ``show`` answers the auditor's questions for one secret (SPEC §5: when was it handed over,
created, rotated, why, by which run, did it succeed) from the ledger and the custom_metadata on the secret;
``verify`` recomputes the hash chain of the whole ledger.

Reads only; needs a Vault token that can read the runtime mount. Nothing printed here can be a value: ledger
entries and custom_metadata never hold one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from chamberlain.cli.handover import AuthorityOptions, open_kube, open_kv
from chamberlain.cli.options import Kubeconfig, VaultAddr, VaultCACert, VaultTokenFile, repo_dir
from chamberlain.cli.output import DataFormat, RepoPath, emit_data, stderr, stdout
from chamberlain.errors import UsageError
from chamberlain.intent.model import Platform

audit_app = typer.Typer(
    help="Provenance of a secret and integrity of the ledger.",
    no_args_is_help=True,
)

Output = Annotated[DataFormat, typer.Option("-o", "--output", help="Output format.")]
Cluster = Annotated[
    str | None,
    typer.Option("--cluster", "-c", show_default=False,
                 help="Log in as this cluster's orchestrator (without --vault-token-file)."),
]


def _kv(platform: Platform, addr: str | None, cacert: Path | None, token_file: Path | None, cluster: str | None,
        kubeconfig: Path | None) -> Any:
    kube = open_kube(kubeconfig) if token_file is None and cluster is not None else None
    return open_kv(platform, AuthorityOptions(addr, cacert, token_file), kube, cluster)


def _platform_and_repo(path: str) -> tuple[Platform, Any]:
    from chamberlain.intent.loader import load_repository

    root = repo_dir(path)
    # Auditing must work while the repository has unrelated findings, so it loads without validating.
    repo = load_repository(root)
    if repo.platform is None:
        raise UsageError(f"{path}: the repository needs exactly one Platform")
    return repo.platform, repo


@audit_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="The SecretIntent name.", show_default=False)],
    path: RepoPath,
    output: Output = DataFormat.text,
    vault_addr: VaultAddr = None,
    vault_cacert: VaultCACert = None,
    vault_token_file: VaultTokenFile = None,
    cluster: Cluster = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Every ledger entry of a secret and its current custom_metadata in every environment.

    Example: chamberlain audit show smtp-relay examples/acme -o json
    """
    from chamberlain.audit.ledger import LedgerReader
    from chamberlain.intent.paths import placements

    platform, repo = _platform_and_repo(path)
    loaded = repo.intent_index().get(name)
    if loaded is None:
        raise UsageError(f"no SecretIntent named {name!r} in {path}")
    kv = _kv(platform, vault_addr, vault_cacert, vault_token_file, cluster, kubeconfig)
    entries = LedgerReader(kv, platform.spec.authority.mounts.runtime).for_secret(name)
    metadata: dict[str, Any] = {}
    # Logged in as one cluster's orchestrator, only the environments that cluster serves are readable (the
    # others are another orchestrator's, and Vault answers 403).
    for vault in sorted({p.vault for p in placements(platform, loaded.obj) if cluster is None or p.cluster == cluster}):
        meta = kv.read_metadata(vault.mount, vault.path)
        metadata[vault.full] = None if meta is None else {
            "currentVersion": meta.current_version,
            "custom": dict(sorted(meta.custom.items())),
        }
    rows = [e.model_dump(exclude={"prev", "hash"}) for e in entries]
    if emit_data({"secret": name, "ledger": rows, "metadata": metadata}, output):
        return
    stdout.print(f"secret {name}", markup=False, highlight=False)
    if not rows:
        stdout.print("  ledger: no entries", markup=False)
    for row in rows:
        details = " ".join(f"{k}={v}" for k, v in row["details"].items())
        stdout.print(
            f"  #{row['seq']} {row['time']} {row['event']} {row['result']} run={row['run'] or '-'} "
            f"actor={row['actor']} path={row['path'] or '-'} reason={row['reason'] or '-'} {details}".rstrip(),
            markup=False, highlight=False,
        )
    for full, meta in metadata.items():
        if meta is None:
            stdout.print(f"  {full}: not in Vault", markup=False, highlight=False)
            continue
        stdout.print(f"  {full}: version {meta['currentVersion']}", markup=False, highlight=False)
        for key, value in meta["custom"].items():
            stdout.print(f"    {key}: {value}", markup=False, highlight=False)


@audit_app.command("verify")
def verify(
    path: RepoPath,
    output: Output = DataFormat.text,
    vault_addr: VaultAddr = None,
    vault_cacert: VaultCACert = None,
    vault_token_file: VaultTokenFile = None,
    cluster: Cluster = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Recompute the ledger's hash chain: exit 0 when intact, 1 with the problems found.

    Example: chamberlain audit verify examples/acme
    """
    from chamberlain.audit.ledger import LedgerReader

    platform, _ = _platform_and_repo(path)
    kv = _kv(platform, vault_addr, vault_cacert, vault_token_file, cluster, kubeconfig)
    result = LedgerReader(kv, platform.spec.authority.mounts.runtime).verify()
    data = {"ok": result.ok, "entries": result.entries, "problems": result.problems, "warnings": result.warnings}
    if not emit_data(data, output):
        for problem in result.problems:
            stdout.print(f"problem: {problem}", markup=False, highlight=False)
        for warning in result.warnings:
            stdout.print(f"warning: {warning}", markup=False, highlight=False)
        if result.ok:
            stderr.print(f"[green]ok[/green]: the ledger verifies ({result.entries} entries)")
        else:
            stderr.print(f"[red]{len(result.problems)} problems[/red] in the ledger ({result.entries} entries)")
    raise typer.Exit(0 if result.ok else 1)
