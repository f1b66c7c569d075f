"""``chamberlain apply``: the LAB STAND-IN for Argo CD + KSOPS / Flux (:mod:`chamberlain.gitops`).

Validates, renders in memory and server-side-applies one cluster's applications in sync-wave order, decrypting
bootstrap Secrets in memory with the in-cluster identity as KSOPS would. The report holds counts, never data.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from chamberlain.service.repository import repository_root

if TYPE_CHECKING:
    from chamberlain.bootstrap.tools import Tools
    from chamberlain.gitops import ApplyReport
    from chamberlain.service.context import Servers


def apply(root: Path, servers: Servers, tools: Tools, *, identity: Path | None = None,
          environment: str | None = None, cluster: str | None = None) -> ApplyReport:
    """Apply the rendered output of the repository at ``root`` to the cluster of ``servers``; bootstrap files are
    decrypted with the ``sops`` that ``tools`` finds. Idempotent."""
    from chamberlain.gitops import apply_repository

    return apply_repository(repository_root(root), servers.kube(), identity=identity, tools=tools,
                            environment=environment, cluster=cluster)


__all__ = ["apply"]
