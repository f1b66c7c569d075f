"""``chamberlain backup`` and ``chamberlain restore``: thin commands over :mod:`chamberlain.service.backup`.

Registered by the main CLI with ``app.command("backup")`` / ``app.command("restore")``. Nothing printed is a
share, a token, a value or the snapshot: reports carry ids, counts, sizes and hashes of ciphertext.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chamberlain.cli.options import GROUPED, Target, clock, target_options
from chamberlain.cli.output import DataFormat, Output, RepoPath, emit_data, line
from chamberlain.service.context import Caller, LiveServers


@target_options(environment=False, token_file=False, token=True)
def backup_cmd(
    path: RepoPath,
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="A new directory outside the cluster for the backup "
                                      "(manifest.json, snapshot.age, unseal-shares.yaml).")],
    target: Target = GROUPED,
    output: Output = DataFormat.text,
) -> None:
    """Back up the authority: a raft snapshot, age-encrypted to the custodians (or the root recipients), the
    sealed unseal shares in force and a manifest (authority cluster id, raft index, ledger heads, sha256 of
    each file), written to --out. Taken as the backup identity (role chamberlain.authority.backup: read the
    snapshot and the ledger only), or with --vault-token-file (break-glass). Object storage: copy the directory
    (not built in: the lab cannot test it).

    Example: chamberlain backup examples/acme --out /backups/vault-2026-01-01
    """
    from chamberlain.service import backup

    with LiveServers(target.conn, clock()) as servers:
        result = backup.backup(backup.BackupRequest(Path(path), out, target.cluster), servers,
                               Caller("chamberlain backup", servers.clock))
    if not emit_data(result.as_dict(), output):
        m = result.manifest
        size = sum(f.bytes for f in m.files.values())
        line(f"backup of authority cluster {m.authority.cluster_id} (raft index {m.authority.raft_index}) written "
             f"to {result.directory}: {size} bytes, snapshot encrypted to {len(m.encrypted_to)} recipient(s), "
             f"{m.shares.get('count')} sealed shares (threshold {m.shares.get('threshold')}), ledger heads of "
             f"{len(m.ledger)} partition(s); taken as {result.identity}.")


@target_options(environment=False, token_file=False, token=True)
def restore_cmd(
    path: RepoPath,
    source: Annotated[Path, typer.Option(
        "--from", metavar="DIR", help="The backup directory (written by chamberlain backup).")],
    identity: Annotated[list[Path], typer.Option(
        "--identity", help="age identity that decrypts the backup and opens unseal shares: the root's, or a "
        "custodian's (repeat: the threshold of custodians).", metavar="FILE")],
    force: Annotated[bool, typer.Option(
        "--force", help="Restore onto a new, empty authority (the disaster case) or over another storage, or "
        "a backup older than the last rekey.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Run every check; change nothing.")] = False,
    target: Target = GROUPED,
    output: Output = DataFormat.text,
) -> None:
    """Restore the authority from a backup. Every check comes first (manifest, sizes and sha256 of each file, the
    age layer with the identities, the snapshot's own checksums, the authority's identity, enough shares to
    unseal); a failed check changes nothing and names the file. Then: install the snapshot, unseal with the
    backup's shares, verify (cluster id, configurator login, ledger continuity), re-create the Secret of sealed
    shares if needed, and record authority-restore in the ledger.

    Example: chamberlain restore examples/acme --from /backups/b1 --identity alice.agekey --identity bob.agekey
    """
    from chamberlain.service import backup

    request = backup.RestoreRequest(Path(path), source, tuple(identity), force=force, cluster=target.cluster,
                                    dry_run=dry_run)
    with LiveServers(target.conn, clock()) as servers:
        result = backup.restore(request, servers, Caller("chamberlain restore", servers.clock))
    if not emit_data(result.as_dict(), output):
        for step in result.steps:
            line(f"- {step}")
        line(f"restored backup of {result.backup_created_at} onto {result.address} ({result.mode}): cluster "
             f"{result.cluster_id}, raft index {result.snapshot_index}, ledger continues in "
             f"{len(result.ledger_partitions)} partition(s), in {result.seconds:.1f}s."
             if not dry_run else f"backup checked: {result.mode}.")
