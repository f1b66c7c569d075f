"""Connection and selection options shared by the commands that talk to Vault and Kubernetes.

Defined once so every command spells them the same way and reads the same environment variables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
