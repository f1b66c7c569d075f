"""A backup of the runtime authority, as a directory outside the cluster, and every check a restore makes first.

A backup directory holds three files::

    manifest.json        what the backup is: the authority it came from (address, cluster id, raft node ids and
                         index), when, who can open it, the ledger head of every partition, and the sha256 and
                         size of each file below
    snapshot.age         the raft snapshot (``sys/storage/raft/snapshot``), age-encrypted to the custodians (or
                         the root recipients without custody)
    unseal-shares.yaml   the sealed unseal shares in force when the snapshot was taken (the export format of
                         :mod:`chamberlain.intent.unseal_shares`: each share still sealed to its custodian)

The snapshot's values are encrypted by the server's barrier already; opening the barrier takes the threshold of
unseal shares, so a custodian who decrypts the age layer alone learns nothing but sizes. The age layer keeps the
snapshot's structure (paths, metadata) away from whoever holds the backup store.

:func:`open_bundle` checks everything before anything is touched, in this order, and names the file and the
reason: the manifest parses; every file has its recorded size and sha256 (a truncated or tampered file); the
snapshot decrypts with the identities given (the wrong identity); the decrypted snapshot hashes to the recorded
digest and is a complete raft snapshot whose own ``SHA256SUMS`` match; the shares file is a valid export.
:func:`refusal` then decides, purely, whether the snapshot may go onto the authority that answers now (same
cluster id, or ``--force`` onto a new or empty one).

Pure apart from reading and writing the backup directory. Nothing here talks to a server.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyrage

from chamberlain.authority.export import ExportError, export_material, parse_export
from chamberlain.authority.material import SealedMaterial, parse_recipients
from chamberlain.errors import ChamberlainError, UsageError
from chamberlain.intent.model import API_VERSION

KIND = "AuthorityBackup"
MANIFEST = "manifest.json"
SNAPSHOT = "snapshot.age"
SHARES = "unseal-shares.yaml"
FORMAT_VERSION = 1
MAX_MANIFEST_BYTES = 1024 * 1024


class BackupIntegrityError(ChamberlainError):
    """The backup is incomplete, altered, or not openable with the identities given: nothing was touched."""


class RestoreRefused(ChamberlainError):
    """The backup is sound but must not go onto this authority (another authority's, without ``--force``)."""


# ------------------------------------------------------------------------------------------------ manifest


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    bytes: int


@dataclass(frozen=True)
class LedgerHead:
    seq: int
    hash: str


@dataclass(frozen=True)
class AuthorityIdentity:
    """Which authority a snapshot belongs to. ``cluster_id`` is the storage's identity (kept by a restore);
    ``raft_nodes`` and ``raft_index`` come from the snapshot itself."""

    address: str
    cluster_id: str
    cluster_name: str = ""
    version: str = ""
    flavor: str = ""
    raft_nodes: tuple[str, ...] = ()
    raft_index: int = 0
    raft_term: int = 0


@dataclass(frozen=True)
class Manifest:
    created_at: str
    authority: AuthorityIdentity
    encrypted_to: tuple[str, ...]  # age recipients the snapshot is encrypted to (public)
    snapshot_sha256: str  # of the decrypted snapshot: what the server streamed
    shares: Mapping[str, Any]  # threshold, generation, holders, sealedTo (no ciphertext)
    ledger: Mapping[str, LedgerHead]  # partition name -> head when the snapshot was taken
    files: Mapping[str, FileEntry]
    chamberlain_version: str = ""
    format_version: int = FORMAT_VERSION

    def as_dict(self) -> dict[str, Any]:
        a = self.authority
        return {
            "apiVersion": API_VERSION, "kind": KIND, "formatVersion": self.format_version,
            "createdAt": self.created_at, "chamberlainVersion": self.chamberlain_version,
            "authority": {"address": a.address, "clusterId": a.cluster_id, "clusterName": a.cluster_name,
                          "version": a.version, "flavor": a.flavor, "raftNodes": list(a.raft_nodes),
                          "raftIndex": a.raft_index, "raftTerm": a.raft_term},
            "encryptedTo": list(self.encrypted_to),
            "snapshotSha256": self.snapshot_sha256,
            "unsealShares": dict(self.shares),
            "ledger": {p: asdict(h) for p, h in sorted(self.ledger.items())},
            "files": {n: asdict(f) for n, f in sorted(self.files.items())},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Manifest:
        """:class:`BackupIntegrityError` on anything that is not a manifest of this format."""
        try:
            if d.get("kind") != KIND or d.get("apiVersion") != API_VERSION:
                raise ValueError("not an AuthorityBackup manifest")
            if int(d.get("formatVersion", 0)) != FORMAT_VERSION:
                raise ValueError(f"format version {d.get('formatVersion')!r} (this release reads {FORMAT_VERSION})")
            a = d["authority"]
            return cls(
                created_at=str(d["createdAt"]),
                authority=AuthorityIdentity(str(a["address"]), str(a["clusterId"]), str(a.get("clusterName", "")),
                                            str(a.get("version", "")), str(a.get("flavor", "")),
                                            tuple(str(n) for n in a.get("raftNodes", [])),
                                            int(a.get("raftIndex", 0)), int(a.get("raftTerm", 0))),
                encrypted_to=tuple(str(r) for r in d["encryptedTo"]),
                snapshot_sha256=str(d["snapshotSha256"]),
                shares=dict(d["unsealShares"]),
                ledger={str(p): LedgerHead(int(h["seq"]), str(h["hash"])) for p, h in dict(d["ledger"]).items()},
                files={str(n): FileEntry(str(f["sha256"]), int(f["bytes"])) for n, f in dict(d["files"]).items()},
                chamberlain_version=str(d.get("chamberlainVersion", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            detail = str(exc) if isinstance(exc, ValueError) else f"missing or malformed field ({exc!s:.60})"
            raise BackupIntegrityError(f"{MANIFEST}: {detail}") from None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------------ snapshot


@dataclass(frozen=True)
class SnapshotInfo:
    """What a raft snapshot says about itself (its ``meta.json``): the nodes and the log position."""

    index: int
    term: int
    nodes: tuple[str, ...]
    size: int


def inspect_snapshot(data: bytes, name: str = SNAPSHOT) -> SnapshotInfo:
    """Check that ``data`` is a complete raft snapshot (gzip'ed tar with ``meta.json``, ``state.bin`` and a
    ``SHA256SUMS`` that matches them) and read its meta; :class:`BackupIntegrityError` naming ``name`` if not."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            files: dict[str, bytes] = {}
            for wanted in ("meta.json", "state.bin", "SHA256SUMS"):
                member = members.get(wanted)
                extracted = tar.extractfile(member) if member is not None else None
                if extracted is None:
                    raise BackupIntegrityError(f"{name}: not a raft snapshot (no {wanted} inside)")
                files[wanted] = extracted.read()
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, OSError, zlib.error):
        raise BackupIntegrityError(f"{name}: the decrypted snapshot is not a complete raft snapshot (truncated "
                                   "or corrupted)") from None
    sums = {}
    for line in files["SHA256SUMS"].decode("ascii", "replace").splitlines():
        digest, _, file = line.strip().partition("  ")
        if file:
            sums[file] = digest
    for file in ("meta.json", "state.bin"):
        if sums.get(file) != sha256(files[file]):
            raise BackupIntegrityError(f"{name}: the snapshot's {file} does not match its own SHA256SUMS")
    try:
        meta = json.loads(files["meta.json"])
        servers = (meta.get("Configuration") or {}).get("Servers") or []
        return SnapshotInfo(int(meta.get("Index", 0)), int(meta.get("Term", 0)),
                            tuple(str(s.get("ID", "")) for s in servers if isinstance(s, dict)),
                            int(meta.get("Size", 0)))
    except (ValueError, AttributeError, TypeError):
        raise BackupIntegrityError(f"{name}: the snapshot's meta.json is malformed") from None


# ------------------------------------------------------------------------------------------------ writing


def encryption_recipients(custodians: Sequence[str], roots: Sequence[str]) -> list[str]:
    """Who a snapshot is encrypted to: every custodian when custody is declared (any one of them can start a
    restore; unsealing still takes k), else the root recipients."""
    return list(custodians) if custodians else list(roots)


def write_bundle(out: Path, snapshot: bytes, material: SealedMaterial, recipients: Sequence[str],
                 identity: AuthorityIdentity, ledger: Mapping[str, LedgerHead], *, created_at: str,
                 chamberlain_version: str = "") -> Manifest:
    """Write the backup into ``out`` (created; refused when it already holds a backup) and return its manifest.
    The snapshot is checked first (a partial stream is never written as a backup)."""
    info = inspect_snapshot(snapshot, "the snapshot the server streamed")
    if (out / MANIFEST).exists():
        raise UsageError(f"{out}: already holds a backup ({MANIFEST}); choose a new directory")
    encrypted = pyrage.encrypt(snapshot, parse_recipients(recipients))
    shares_text = export_material(material).encode()
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write(out / SNAPSHOT, encrypted)
    _write(out / SHARES, shares_text)
    manifest = Manifest(
        created_at=created_at,
        authority=AuthorityIdentity(identity.address, identity.cluster_id, identity.cluster_name,
                                    identity.version, identity.flavor, info.nodes, info.index, info.term),
        encrypted_to=tuple(recipients),
        snapshot_sha256=sha256(snapshot),
        shares={"threshold": material.threshold, "generation": material.generation,
                "holders": list(material.holders), "sealedTo": material.recipients, "count": len(material.shares)},
        ledger=dict(ledger),
        files={SNAPSHOT: FileEntry(sha256(encrypted), len(encrypted)),
               SHARES: FileEntry(sha256(shares_text), len(shares_text))},
        chamberlain_version=chamberlain_version,
    )
    _write(out / MANIFEST, (json.dumps(manifest.as_dict(), indent=2, sort_keys=False) + "\n").encode())
    return manifest


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------ opening


@dataclass(frozen=True)
class OpenedBundle:
    """A backup whose every check passed: the manifest, the decrypted snapshot (memory only) and the material."""

    manifest: Manifest
    snapshot: bytes = field(repr=False)
    material: SealedMaterial
    info: SnapshotInfo


def read_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST
    try:
        raw = path.read_bytes() if path.stat().st_size <= MAX_MANIFEST_BYTES else b""
    except FileNotFoundError:
        raise BackupIntegrityError(f"{path}: no backup manifest there (is --from a backup directory?)") from None
    except OSError as exc:
        raise BackupIntegrityError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = json.loads(raw)
    except ValueError:
        raise BackupIntegrityError(f"{path}: not valid JSON (truncated or altered)") from None
    if not isinstance(data, dict):
        raise BackupIntegrityError(f"{path}: not a backup manifest")
    return Manifest.from_dict(data)


def _checked_file(directory: Path, name: str, entry: FileEntry | None) -> bytes:
    path = directory / name
    if entry is None:
        raise BackupIntegrityError(f"{directory / MANIFEST}: lists no {name}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BackupIntegrityError(f"{path}: missing from the backup") from None
    except OSError as exc:
        raise BackupIntegrityError(f"{path}: cannot read ({exc.strerror})") from None
    if len(data) != entry.bytes:
        raise BackupIntegrityError(f"{path}: {len(data)} bytes, the manifest says {entry.bytes} (truncated or "
                                   "altered)")
    if sha256(data) != entry.sha256:
        raise BackupIntegrityError(f"{path}: its sha256 does not match the manifest (altered)")
    return data


def open_bundle(directory: Path, identities: Sequence[pyrage.x25519.Identity]) -> OpenedBundle:
    """Every integrity check, in order; :class:`BackupIntegrityError` naming the file at the first that fails."""
    manifest = read_manifest(directory)
    encrypted = _checked_file(directory, SNAPSHOT, manifest.files.get(SNAPSHOT))
    shares_text = _checked_file(directory, SHARES, manifest.files.get(SHARES))
    try:
        snapshot = pyrage.decrypt(encrypted, list(identities))
    except pyrage.DecryptError:
        shown = ", ".join(r[:16] + "…" for r in manifest.encrypted_to) or "nobody"
        raise BackupIntegrityError(f"{directory / SNAPSHOT}: the identities given cannot decrypt it (it is "
                                   f"encrypted to {shown})") from None
    if sha256(snapshot) != manifest.snapshot_sha256:
        raise BackupIntegrityError(f"{directory / SNAPSHOT}: the decrypted snapshot's sha256 does not match the "
                                   "manifest (replaced)")
    info = inspect_snapshot(snapshot, str(directory / SNAPSHOT))
    if (info.nodes, info.index) != (manifest.authority.raft_nodes, manifest.authority.raft_index):
        raise BackupIntegrityError(f"{directory / SNAPSHOT}: the snapshot's raft nodes/index differ from the "
                                   "manifest's (replaced)")
    try:
        material = parse_export(shares_text.decode("utf-8"), str(directory / SHARES))
    except (ExportError, UnicodeDecodeError) as exc:
        raise BackupIntegrityError(str(exc) if isinstance(exc, ExportError) else
                                   f"{directory / SHARES}: not UTF-8 text") from None
    expected = manifest.shares
    if (material.threshold, material.generation) != (expected.get("threshold"), expected.get("generation")):
        raise BackupIntegrityError(f"{directory / SHARES}: threshold/generation differ from the manifest's")
    return OpenedBundle(manifest, snapshot, material, info)


# ------------------------------------------------------------------------------------------------ deciding


@dataclass(frozen=True)
class Target:
    """The authority a restore would write to, as observed before anything changes."""

    address: str
    initialized: bool
    sealed: bool
    cluster_id: str = ""  # "" when sealed or uninitialized (the server does not say)


def refusal(manifest: Manifest, target: Target, *, force: bool) -> str | None:
    """Why the snapshot must not go onto ``target`` (None: it may). The same authority (cluster id) is a rollback
    and needs nothing more. A new, empty authority (the disaster case) or another authority's storage takes
    ``--force``, said explicitly, because its current contents are replaced."""
    want = manifest.authority.cluster_id
    if target.initialized and target.sealed:
        return (f"the authority at {target.address} is sealed: its identity cannot be compared; unseal it first "
                "(`chamberlain authority unseal`) or, when its data is lost, start it empty")
    if target.initialized and target.cluster_id == want:
        return None
    if force:
        return None
    if not target.initialized:
        return (f"the authority at {target.address} is new and empty (not initialized); restoring backup of "
                f"cluster {want} onto it replaces it: pass --force to confirm this is the disaster recovery")
    return (f"the backup is of authority cluster {want}, but {target.address} is cluster "
            f"{target.cluster_id or 'unknown'}: refusing to overwrite another authority (pass --force only if "
            "that authority is a new replacement)")


def ledger_problems(expected: Mapping[str, LedgerHead], restored: Mapping[str, LedgerHead | None]) -> list[str]:
    """Partitions whose entry at the backup's head seq is not the one the backup recorded (the ledger would not
    continue from the backup), or that are gone."""
    out = []
    for partition, head in sorted(expected.items()):
        found = restored.get(partition)
        if found is None:
            out.append(f"{partition}: no entry {head.seq} after the restore")
        elif found.hash != head.hash:
            out.append(f"{partition}: entry {head.seq} differs from the one the backup recorded")
    return out


__all__ = [
    "KIND",
    "MANIFEST",
    "SHARES",
    "SNAPSHOT",
    "AuthorityIdentity",
    "BackupIntegrityError",
    "FileEntry",
    "LedgerHead",
    "Manifest",
    "OpenedBundle",
    "RestoreRefused",
    "SnapshotInfo",
    "Target",
    "encryption_recipients",
    "inspect_snapshot",
    "ledger_problems",
    "open_bundle",
    "read_manifest",
    "refusal",
    "sha256",
    "write_bundle",
]
