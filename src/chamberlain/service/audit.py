"""The auditor's questions: one secret's provenance (every ledger entry, and its custom_metadata where it is
placed), the integrity of the whole ledger (every partition's hash chain, and every signature against the public
keys pinned in Git), and pinning those keys (``audit pin``: the only step that trusts the authority's answer).

Reads only. The repository is loaded without the checks: auditing must work while it has unrelated findings.
Nothing returned here can be a value: ledger entries and custom_metadata never hold one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chamberlain.errors import UsageError
from chamberlain.service.repository import load_unvalidated

if TYPE_CHECKING:
    from chamberlain.service.context import Servers


@dataclass
class Provenance:
    secret: str
    ledger: list[dict[str, Any]]  # entries without their chain fields (prev, hash)
    metadata: dict[str, dict[str, Any] | None]  # Vault path -> currentVersion and custom metadata; None: absent

    def as_dict(self) -> dict[str, Any]:
        return {"secret": self.secret, "ledger": self.ledger, "metadata": self.metadata}


@dataclass
class LedgerCheck:
    ok: bool
    entries: int
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    damaged: list[dict[str, Any]] = field(default_factory=list)  # {partition, seq, reason}: the evidence
    partitions: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "partitions": self.partitions, "problems": self.problems,
                "warnings": self.warnings, "damaged": self.damaged}


@dataclass
class PinResult:
    file: str
    changed: bool
    keys: dict[str, list[int]]  # transit key -> versions pinned

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "changed": self.changed, "keys": self.keys}


def show(name: str, root: Path, servers: Servers, *, cluster: str | None = None) -> Provenance:
    """Every ledger entry of secret ``name`` and its current custom_metadata wherever it is placed."""
    from chamberlain.audit.ledger import LedgerReader
    from chamberlain.intent.paths import placements

    repo, platform = load_unvalidated(root)
    loaded = repo.intent_index().get(name)
    if loaded is None:
        raise UsageError(f"no SecretIntent named {name!r} in {root}")
    kv = servers.orchestrator(platform, cluster).kv
    entries = LedgerReader(kv, platform.spec.authority.mounts.runtime).for_secret(name)
    metadata: dict[str, dict[str, Any] | None] = {}
    # Logged in as one cluster's orchestrator, only the environments that cluster serves are readable (the
    # others are another orchestrator's, and Vault answers 403).
    for vault in sorted({p.vault for p in placements(platform, loaded.obj) if cluster is None or p.cluster == cluster}):
        meta = kv.read_metadata(vault.mount, vault.path)
        metadata[vault.full] = None if meta is None else {
            "currentVersion": meta.current_version,
            "custom": dict(sorted(meta.custom.items())),
        }
    return Provenance(name, [e.model_dump(exclude={"prev", "hash"}) for e in entries], metadata)


def verify(root: Path, servers: Servers, *, cluster: str | None = None) -> LedgerCheck:
    """Recompute every partition's hash chain and check every signature with the keys pinned in ``root``: any
    edit, deletion, reordering, damaged slot or signature that does not verify is a problem."""
    from chamberlain.audit import keys as pinned
    from chamberlain.audit.ledger import LedgerReader

    repo, platform = load_unvalidated(root)
    kv = servers.orchestrator(platform, cluster).kv
    keys = pinned.load(repo.root / pinned.PINNED_FILE)  # from Git, never from the server
    result = LedgerReader(kv, platform.spec.authority.mounts.runtime).verify(keys)
    return LedgerCheck(result.ok, result.entries, list(result.problems), list(result.warnings),
                       [{"partition": p, "seq": s, "reason": r} for p, s, r in result.damaged],
                       list(result.partitions))


def pin(root: Path, servers: Servers, *, cluster: str | None = None) -> PinResult:
    """Read the public keys of every ledger signing key (each environment's and the configurator's) from the
    authority and write them to ``audit/ledger-keys.yaml`` in ``root`` (review and commit it: verification trusts
    this file, not the server)."""
    from chamberlain.audit import keys as pinned
    from chamberlain.intent.paths import AUTHORITY_PARTITION, TRANSIT_MOUNT, ledger_key

    repo, platform = load_unvalidated(root)
    client = servers.orchestrator(platform, cluster)
    raw: dict[str, dict[int, str]] = {}
    for env in [AUTHORITY_PARTITION[0], *(e.name for e in platform.spec.environments)]:
        name = ledger_key(env)
        versions = client.transit.public_keys(TRANSIT_MOUNT, name)
        if not versions:
            raise UsageError(f"the authority has no transit key {TRANSIT_MOUNT}/{name}: run `chamberlain "
                             "authority configure` first (it creates the ledger keys)")
        raw[name] = versions
    text = pinned.PinnedKeys.from_transit(raw).render()
    target = repo.root / pinned.PINNED_FILE
    try:
        changed = not target.is_file() or target.read_text(encoding="utf-8") != text
        if changed:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(target)  # atomic: a crash leaves the old file or the new one
    except OSError as exc:
        raise UsageError(f"{target}: cannot write the pinned keys ({exc.strerror})") from None
    return PinResult(pinned.PINNED_FILE, changed, {k: sorted(v) for k, v in sorted(raw.items())})


__all__ = ["LedgerCheck", "PinResult", "Provenance", "pin", "show", "verify"]
