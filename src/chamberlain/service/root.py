"""Phase 0, the root of trust: ``chamberlain root init`` and moving a repository's bootstrap files to it.

Belongs here: the use cases over :mod:`chamberlain.root` and :mod:`chamberlain.bootstrap` the command line and the
demo share. Never prints; the identity itself is never returned, only its path and public recipient.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chamberlain.bootstrap.sops import Sops
from chamberlain.bootstrap.tools import Tools
from chamberlain.errors import UsageError
from chamberlain.intent.loader import load_repository
from chamberlain.root import (
    RepoUpdate,
    RootIdentity,
    default_identity_path,
    ensure_identity,
    recipient_of,
    update_repository,
)


@dataclass(frozen=True)
class RootInit:
    identity: RootIdentity
    update: RepoUpdate | None  # None without a repository

    def as_dict(self) -> dict[str, Any]:
        ident, update = self.identity, self.update
        return {
            "identityFile": str(ident.path),
            "created": ident.created,
            "recipient": ident.recipient,  # public by definition
            **({"platformFile": update.platform_file, "recipientAdded": update.recipient_added,
                "sopsConfigWritten": update.sops_config_written, "recipients": update.recipients,
                "staleBootstrapFiles": update.stale_files} if update else {}),
        }


def init(*, repo: Path | None, identity_file: Path | None, config_dir: Path, tools: Tools) -> RootInit:
    """The offline identity, created once and never overwritten (default: ``<config_dir>/root-of-trust/
    <platform>.agekey``); with ``repo``, its recipient added to the Platform and ``.sops.yaml``."""
    if identity_file is None:
        name = "chamberlain"
        if repo is not None:
            platforms = load_repository(repo).platforms
            name = platforms[0].obj.metadata.name if len(platforms) == 1 else name
        identity_file = default_identity_path(name, config_dir)
    ident = ensure_identity(identity_file, repo, tools=tools)
    return RootInit(ident, update_repository(repo, ident.recipient) if repo is not None else None)


def gitops_key(*, repo: Path, cluster: str, identity_file: Path, tools: Tools,
               root_dir: Path | None = None) -> RootInit:
    """The in-cluster age identity a cluster's GitOps controller decrypts bootstrap files with: created once at
    ``identity_file`` (outside the repository, never overwritten), its recipient declared in
    ``Platform.spec.gitops.decryptionRecipients[cluster]`` and ``.sops.yaml``. Not a root recipient: it opens
    bootstrap files, never an unseal share. ``root_dir``: where root identities live by default (refused here)."""
    from chamberlain.root.identity import check_location
    from chamberlain.root.repo import check_decryption_target, check_one_key, declare_decryption_recipient

    # Every refusal comes before a key file exists: it leaves nothing behind.
    _, rel, doc, _ = check_decryption_target(repo, cluster)
    if root_dir is not None and identity_file.resolve().is_relative_to(root_dir.resolve()):
        raise UsageError(f"{identity_file}: is in the root of trust's directory ({root_dir}); a cluster's key must be "
                         "a different file from the root identity")
    # This key has no default path: the example is the one the README and --help give.
    where = {"what": "a cluster's GitOps decryption key", "example": f"~/.config/chamberlain/gitops/{cluster}.agekey"}
    path = check_location(identity_file, repo, **where)
    existing = recipient_of(path, tools) if path.is_file() and not path.is_symlink() else None
    check_one_key(rel, doc, cluster, existing)
    ident = ensure_identity(identity_file, repo, tools=tools, **where)
    return RootInit(ident, declare_decryption_recipient(repo, cluster, ident.recipient))


def reencrypt(repo: Path, recipient: str, *, previous_identity: Path, tools: Tools) -> list[str]:
    """Bring every bootstrap file of ``repo`` to the recipients its Platform names now (after ``init`` added
    ``recipient``), opening each with ``previous_identity``; returns the files re-encrypted."""
    stale = update_repository(repo, recipient).stale_files
    sops = Sops.locate(tools) if stale else None
    for rel in stale:
        if sops is not None:
            sops.updatekeys(repo, rel, identity_file=previous_identity)
    return stale


__all__ = ["RootInit", "gitops_key", "init", "reencrypt"]
