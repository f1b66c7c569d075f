"""Connection and selection options shared by the commands that talk to Vault and Kubernetes.

Defined once so every command spells them the same way and reads the same environment variables.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from chamberlain.settings import Settings

if TYPE_CHECKING:
    from chamberlain.intent.loader import Repository
    from chamberlain.intent.model import Platform

VaultAddr = Annotated[
    str | None,
    typer.Option("--vault-addr", envvar="VAULT_ADDR", show_default=False,
                 help="Vault address (default: the Platform's spec.authority.address)."),
]
VaultCACert = Annotated[
    Path | None,
    typer.Option("--vault-cacert", envvar="VAULT_CACERT", show_default=False,
                 help="PEM bundle of the CA that signed Vault's TLS certificate."),
]
VaultTokenFile = Annotated[
    Path | None,
    typer.Option("--vault-token-file", envvar="CHAMBERLAIN_VAULT_TOKEN_FILE", show_default=False,
                 help="File holding a Vault token, for the lab and break-glass (never pass a token on the command "
                      "line)."),
]
Kubeconfig = Annotated[
    Path | None,
    typer.Option("--kubeconfig", envvar="KUBECONFIG", show_default=False,
                 help="kubeconfig of the cluster (in-cluster config when unset)."),
]
Environment = Annotated[
    str | None, typer.Option("--environment", "-e", show_default=False, help="Only this environment.")
]
Cluster = Annotated[
    str | None,
    typer.Option("--cluster", "-c", show_default=False,
                 help="The cluster the kubeconfig reaches (optional when the Platform has one cluster)."),
]


def settings() -> Settings:
    """The process environment as chamberlain uses it. The CLI is an entry point, the only kind of module that
    may look at ``os.environ``; everything below receives these values as arguments."""
    return Settings.from_environ(os.environ, Path.home())


def repo_dir(path: str | Path) -> Path:
    """The intent repository's root, or a usage error (exit 2) that says what is wrong with ``path``."""
    from chamberlain.errors import UsageError

    root = Path(path)
    if not root.exists():
        raise UsageError(f"{path}: no such directory")
    if not root.is_dir():
        raise UsageError(f"{path}: not a directory; pass the root of the intent repository")
    return root


def valid_repository(path: str | Path) -> tuple[Repository, Platform]:
    """Load a repository that must validate clean (anything else applies nothing), and its one Platform."""
    from chamberlain.service import load_valid

    repo = load_valid(repo_dir(path))
    platform = repo.platform
    assert platform is not None  # load_valid rejects a repository without exactly one Platform
    return repo, platform
