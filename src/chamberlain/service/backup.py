"""Disaster recovery of the runtime authority: ``chamberlain backup`` and ``chamberlain restore``.

Backup: as the backup identity (role ``chamberlain.authority.backup``: read the raft snapshot and the ledger, nothing
else; or a break-glass token), read the ledger head of every partition, take the raft snapshot, and write it,
age-encrypted to the custodians (or the root recipients), with the sealed unseal shares in force and a manifest
(:mod:`chamberlain.authority.backup`) to a directory outside the cluster. Object storage targets are not offered:
the lab cannot test them (copy the directory with the tool of your store).

Restore: every integrity check first (manifest, sizes and hashes, the age layer with the identities given, the
snapshot's own checksums, the shares), then whether the snapshot may go onto the authority that answers now
(:func:`~chamberlain.authority.backup.refusal`), then whether the identities open the threshold of the backup's
shares (else the restored authority could not be unsealed). Only then does anything change:

1. an empty authority is initialized with throw-away shares (memory only; the backup's share count and threshold,
   which the server keeps until it restarts), so it accepts a snapshot; an
   initialized one is entered with a root token generated from the unseal shares (or a break-glass token);
2. the snapshot is installed (``snapshot-force`` onto another storage, ``snapshot`` onto the same one);
3. the authority, now holding the backup's keys, is unsealed with the backup's shares;
4. verified: the cluster id is the backup's, the configurator logs in, every ledger partition holds the entry
   the backup recorded as its head; the Secret of sealed shares is re-created from the backup when it is missing
   or differs; one ``authority-restore`` ledger entry records it all.

Results carry names, counts, ids and hashes of ciphertext; never a share, a token or a value.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chamberlain.errors import ChamberlainError, UsageError
from chamberlain.service.repository import load_platform

if TYPE_CHECKING:
    from chamberlain.audit.ledger import Partition
    from chamberlain.authority.backup import LedgerHead, Manifest, OpenedBundle
    from chamberlain.authority.kv import KV
    from chamberlain.authority.material import SealedMaterial, SealedStore
    from chamberlain.authority.vault import VaultClient
    from chamberlain.intent.model import Platform
    from chamberlain.service.context import Caller, Servers

LOGIN_SECONDS = 600


@dataclass(frozen=True)
class BackupRequest:
    root: Path  # the intent repository
    out: Path  # a new (or empty) directory outside the cluster
    cluster: str | None = None  # whose auth mount the backup identity logs in at (default: the Platform's only one)


@dataclass
class BackupResult:
    directory: str
    manifest: Manifest
    identity: str  # who took the snapshot

    def as_dict(self) -> dict[str, Any]:
        m = self.manifest.as_dict()
        return {"directory": self.directory, "takenAs": self.identity, "createdAt": m["createdAt"],
                "authority": m["authority"], "encryptedTo": len(self.manifest.encrypted_to),
                "unsealShares": m["unsealShares"], "ledger": m["ledger"], "files": m["files"]}


@dataclass(frozen=True)
class RestoreRequest:
    root: Path
    source: Path  # a backup directory
    identities: tuple[Path, ...]
    force: bool = False
    cluster: str | None = None
    dry_run: bool = False  # every check, nothing changed


@dataclass
class RestoreResult:
    address: str
    backup_created_at: str
    cluster_id: str
    mode: str  # "new-authority" | "rollback" | "replace" | "checked" (dry run)
    snapshot_index: int
    seconds: float = 0.0
    unsealed_with: list[str] = field(default_factory=list)  # holders of the shares submitted
    secret_recreated: bool = False
    ledger_partitions: list[str] = field(default_factory=list)
    ledger_seq: int | None = None  # the authority-restore entry
    steps: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"address": self.address, "backupCreatedAt": self.backup_created_at, "clusterId": self.cluster_id,
                "mode": self.mode, "snapshotIndex": self.snapshot_index, "seconds": round(self.seconds, 2),
                "unsealedWith": self.unsealed_with, "secretRecreated": self.secret_recreated,
                "ledgerPartitionsContinued": self.ledger_partitions, "ledgerSeq": self.ledger_seq,
                "steps": self.steps}


# ------------------------------------------------------------------------------------------------ helpers


def _store(platform: Platform, servers: Servers) -> SealedStore:
    from chamberlain.authority.material import SealedStore

    return SealedStore(servers.kube(), platform.spec.controller.namespace)


def _backup_client(platform: Platform, servers: Servers, cluster: str | None) -> tuple[VaultClient, str]:
    """The backup identity (its own ServiceAccount, its token minted by the caller's Kubernetes credentials), or
    the break-glass token when one was given."""
    from chamberlain.authority.configure import BACKUP, VAULT_AUDIENCE
    from chamberlain.authority.vault import client_with_token, login_kubernetes
    from chamberlain.render import naming

    conn = servers.connection(platform)
    if conn.token:
        return client_with_token(conn.address, conn.ca_file, conn.token, clock=conn.clock), "break-glass token"
    kube = servers.kube()
    ns = naming.configurator_namespace(platform)
    account = "chamberlain-backup"
    kube.ensure_namespace(ns)
    kube.ensure_service_account(ns, account)
    mount = naming.kubernetes_auth_mount(platform, naming.login_cluster(platform, cluster))
    client = login_kubernetes(conn.address, conn.ca_file, mount, BACKUP,
                              lambda: kube.service_account_token(ns, account, [VAULT_AUDIENCE], LOGIN_SECONDS),
                              clock=conn.clock)
    return client, f"{BACKUP} ({ns}/{account})"


def _partition(name: str) -> Partition | None:
    from chamberlain.audit.ledger import Partition

    env, _, cluster = name.partition("/")
    return Partition(env, cluster) if env and cluster else None


def ledger_heads(kv: KV, mount: str) -> dict[str, LedgerHead]:
    """The head (seq, hash) of every ledger partition (the old single-chain layout is left out: no longer
    written)."""
    from chamberlain.audit.ledger import LedgerReader
    from chamberlain.authority.backup import LedgerHead

    heads: dict[str, LedgerHead] = {}
    for part in LedgerReader(kv, mount).partitions():
        if part is None:
            continue
        mark = LedgerReader(kv, mount, part).mark()
        if mark.seq:
            heads[part.name] = LedgerHead(mark.seq, mark.hash)
    return heads


def ledger_continues(kv: KV, mount: str, expected: Mapping[str, LedgerHead]) -> list[str]:
    """Partitions whose entry at the backup's head is missing or another one (empty: the ledger continues)."""
    from chamberlain.audit.ledger import LedgerReader
    from chamberlain.authority.backup import LedgerHead, ledger_problems

    found: dict[str, LedgerHead | None] = {}
    for name, head in expected.items():
        part = _partition(name)
        entry = LedgerReader(kv, mount, part).entry(head.seq) if part is not None else None
        found[name] = None if entry is None else LedgerHead(entry.seq, entry.hash)
    return ledger_problems(expected, found)


# ------------------------------------------------------------------------------------------------ backup


def backup(request: BackupRequest, servers: Servers, caller: Caller) -> BackupResult:
    """Snapshot the authority into ``request.out`` (see the module docstring)."""
    from chamberlain import __version__
    from chamberlain.authority.backup import AuthorityIdentity, encryption_recipients, write_bundle
    from chamberlain.authority.export import default_path, read_export
    from chamberlain.clock import rfc3339
    from chamberlain.service.authority import share_custody

    if (request.out / "manifest.json").exists():
        raise UsageError(f"{request.out}: already holds a backup; choose a new directory")
    _, platform = load_platform(request.root)
    vault = servers.anonymous(platform)
    health = vault.seal.health()
    if not health.initialized or health.sealed:
        state = "sealed" if health.initialized else "not initialized"
        raise ChamberlainError(f"the authority at {vault.address} is {state}: a backup needs it unsealed")
    material = _store(platform, servers).load()
    if material is None or not material.shares:
        export = default_path(request.root)
        if not export.exists():
            raise ChamberlainError(f"no sealed unseal shares in the cluster and no export at {export}: a backup "
                                   "without them could never be unsealed")
        material = read_export(export)
    client, identity = _backup_client(platform, servers, request.cluster)
    heads = ledger_heads(client.kv, platform.spec.authority.mounts.runtime)
    snapshot = client.raft.snapshot()
    custody = share_custody(platform)
    recipients = encryption_recipients([r for _, r in custody.custodians], custody.recipients)
    who = AuthorityIdentity(vault.address, health.cluster_id, health.cluster_name, health.version,
                            str(health.flavor))
    manifest = write_bundle(request.out, snapshot.data, material, recipients, who, heads,
                            created_at=rfc3339(caller.clock.now()), chamberlain_version=__version__)
    return BackupResult(str(request.out), manifest, identity)


# ------------------------------------------------------------------------------------------------ restore


def _check_shares(bundle: OpenedBundle, identities: list[Any]) -> list[tuple[int, str]]:
    """The backup's shares the identities open; refused (before anything changes) below the threshold."""
    from chamberlain.authority.backup import BackupIntegrityError

    m = bundle.material
    opened = m.open_held(identities)
    if len(opened) < max(m.threshold, 1):
        held = f" (held by {', '.join(m.holders)})" if m.holders else ""
        raise BackupIntegrityError(f"the identities given open {len(opened)} of the {m.threshold} unseal shares the "
                                   f"restored authority needs{held}: pass --identity once per custodian, "
                                   f"{m.threshold} of them. Nothing was changed")
    return opened


def _shares_conflict(bundle: OpenedBundle, current: SealedMaterial | None, export: SealedMaterial | None) -> str:
    """Why the backup's shares are not the ones in force (empty: they are, or nothing says otherwise)."""
    from chamberlain.authority.export import same_shares

    known = [c for c in (current, export) if c is not None and c.shares]
    if not known or any(same_shares(bundle.material, c) for c in known):
        return ""
    newest = max(c.generation for c in known)
    return (f"the backup's unseal shares are generation {bundle.material.generation}, but the Secret or the "
            f"repository's export holds generation {newest}: the authority was rekeyed after this backup (after "
            "the restore the backup's shares are the ones in force again); pass --force to restore it anyway")


def restore(request: RestoreRequest, servers: Servers, caller: Caller) -> RestoreResult:
    """Restore ``request.source`` onto the authority (see the module docstring)."""
    from chamberlain.authority import lifecycle
    from chamberlain.authority.backup import RestoreRefused, Target, open_bundle, refusal
    from chamberlain.authority.export import ExportError, default_path, read_export

    if not request.identities:
        raise UsageError("pass --identity FILE (a custodian's or the root's age identity; repeat for k custodians)")
    started = caller.clock.monotonic()
    _, platform = load_platform(request.root)
    identities = [i for p in request.identities for i in lifecycle.load_identities(p)]
    bundle = open_bundle(request.source, identities)
    opened = _check_shares(bundle, identities)
    vault = servers.anonymous(platform)
    health = vault.seal.health()
    target = Target(vault.address, health.initialized, health.sealed, health.cluster_id)
    why = refusal(bundle.manifest, target, force=request.force)
    if why is not None:
        raise RestoreRefused(f"{request.source}: {why}. Nothing was changed")
    store = _store(platform, servers)
    current = store.load()
    export_path = default_path(request.root)
    try:
        export = read_export(export_path) if export_path.exists() else None
    except ExportError:
        export = None  # validate reports it; the backup's own shares decide here
    conflict = _shares_conflict(bundle, current, export)
    if conflict and not request.force:
        raise RestoreRefused(f"{request.source}: {conflict}. Nothing was changed")
    same = target.initialized and target.cluster_id == bundle.manifest.authority.cluster_id
    mode = "rollback" if same else "new-authority" if not target.initialized else "replace"
    result = RestoreResult(vault.address, bundle.manifest.created_at, bundle.manifest.authority.cluster_id, mode,
                           bundle.info.index)
    if request.dry_run:
        result.mode = f"checked ({mode}, nothing changed)"
        result.seconds = caller.clock.monotonic() - started
        return result
    _install(vault, bundle, current, identities, servers, platform, force=not same, steps=result.steps)
    status = vault.seal.status()
    if status.sealed:
        report = lifecycle.unseal_with(vault, [k for _, k in opened][: max(bundle.material.threshold, 1)])
        result.unsealed_with = [bundle.material.holder(i) for i, _ in opened][: report.submitted]
        result.steps.append(f"unsealed with {report.submitted} of the backup's shares")
    vault.seal.wait_active()
    _verify(vault, bundle, result, store, current, servers, platform, request, caller)
    result.seconds = caller.clock.monotonic() - started
    return result


def _install(vault: VaultClient, bundle: OpenedBundle, current: SealedMaterial | None, identities: list[Any],
             servers: Servers, platform: Platform, *, force: bool, steps: list[str]) -> None:
    """Get a token allowed to install a snapshot, install it, and drop the token (the snapshot's token store
    replaces it anyway)."""
    from chamberlain.authority.vault.raft import Snapshot

    seal = vault.seal.status()
    if not seal.initialized:
        # Throw-away shares and root token, memory only: the snapshot replaces both. The same share count and
        # threshold as the backup's, because the server keeps the seal layout it was initialized with until it
        # restarts: a 1-of-1 layout would take the backup's first share for a whole key.
        layout = bundle.material
        init = vault.seal.initialize(len(layout.shares), max(layout.threshold, 1))
        for key in init.keys[: max(layout.threshold, 1)]:
            vault.seal.submit_unseal_key(key)
        vault.seal.wait_active()
        vault.use_token(init.root_token)
        steps.append("initialized the empty authority with a throw-away key (replaced by the snapshot)")
    else:
        conn = servers.connection(platform)
        if conn.token:
            vault.use_token(conn.token)
            steps.append("entered with the break-glass token given")
        else:
            material = current if current is not None and current.shares else bundle.material
            keys = [k for _, k in material.open_held(identities)][: max(material.threshold, 1)]
            vault.use_token(vault.seal.generate_root(keys).token)
            steps.append("entered with a root token generated from the unseal shares (revoked by the restore)")
    try:
        vault.raft.restore(Snapshot(bundle.snapshot), force=force)
    except ChamberlainError:
        with contextlib.suppress(ChamberlainError):
            vault.auth.revoke_self()
        raise
    vault.forget_token()
    steps.append(f"installed the snapshot (raft index {bundle.info.index}{', forced' if force else ''})")
    _wait_restored(vault, forced=force)


def _wait_restored(vault: VaultClient, *, forced: bool, timeout: float = 60.0) -> None:
    """The server reloads after a restore. A forced one brings another storage's keys: the server answers unsealed
    for a moment, then seals itself, so wait for sealed (else the unseal would be skipped); the same storage's
    snapshot keeps it unsealed: wait for active."""
    from chamberlain.authority.errors import AuthorityError

    clock = vault.clock
    deadline = clock.monotonic() + timeout
    while clock.monotonic() < deadline:
        with contextlib.suppress(AuthorityError):
            h = vault.seal.health()
            if (h.sealed if forced else h.active):
                return
        clock.sleep(0.5)
    state = "seal itself (it does after a forced restore)" if forced else "come back active"
    raise ChamberlainError(f"{vault.address}: did not {state} within {timeout:.0f}s after the snapshot was "
                           "installed")


def _verify(vault: VaultClient, bundle: OpenedBundle, result: RestoreResult, store: SealedStore,
            current: SealedMaterial | None, servers: Servers, platform: Platform, request: RestoreRequest,
            caller: Caller) -> None:
    from chamberlain.audit.ledger import AUTHORITY, LedgerReader
    from chamberlain.authority.export import same_shares
    from chamberlain.service.authority import recorder_for

    health = vault.seal.health()
    if health.cluster_id != bundle.manifest.authority.cluster_id:
        raise ChamberlainError(f"after the restore {vault.address} is cluster {health.cluster_id}, not the "
                               f"backup's {bundle.manifest.authority.cluster_id}")
    if current is None or not same_shares(current, bundle.material):
        store.load()  # the resourceVersion to write against
        store.save(bundle.material)
        result.secret_recreated = True
        result.steps.append(f"wrote the backup's sealed shares to Secret {store.ref}")
    client = servers.configurator(platform, request.cluster)
    mount = platform.spec.authority.mounts.runtime
    problems = ledger_continues(client.kv, mount, bundle.manifest.ledger)
    if problems:
        raise ChamberlainError("the restored ledger does not continue from the backup: " + "; ".join(problems))
    result.ledger_partitions = sorted(bundle.manifest.ledger)
    recorder_for(platform, caller)(client)("authority-restore", {
        "backup_created_at": bundle.manifest.created_at, "cluster_id": bundle.manifest.authority.cluster_id,
        "mode": result.mode, "snapshot_index": str(bundle.info.index),
        "snapshot_sha256": bundle.manifest.snapshot_sha256[:16], "secret_recreated": str(result.secret_recreated),
        "ledger_partitions": ",".join(result.ledger_partitions)})

    result.ledger_seq = LedgerReader(client.kv, mount, AUTHORITY).mark().seq
    result.steps.append("verified: cluster id, configurator login, ledger continuity; recorded authority-restore")


__all__ = ["BackupRequest", "BackupResult", "RestoreRequest", "RestoreResult", "backup", "ledger_continues",
           "ledger_heads", "restore"]
