"""The auditor's questions: one secret's provenance (every ledger entry, and its custom_metadata where it is
placed) and the integrity of the whole hash-chained ledger.

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

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "problems": self.problems, "warnings": self.warnings}


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
    """Recompute the ledger's hash chain: any edit, deletion or reordering is a problem."""
    from chamberlain.audit.ledger import LedgerReader

    _, platform = load_unvalidated(root)
    kv = servers.orchestrator(platform, cluster).kv
    result = LedgerReader(kv, platform.spec.authority.mounts.runtime).verify()
    return LedgerCheck(result.ok, result.entries, list(result.problems), list(result.warnings))


__all__ = ["LedgerCheck", "Provenance", "show", "verify"]
