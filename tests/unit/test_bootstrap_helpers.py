"""Helpers shared by the root/bootstrap/gitops tests: a minimal intent repository and CLI registration."""

from __future__ import annotations

from pathlib import Path

import pytest

from chamberlain.bootstrap.tools import ToolMissing
from tests.conftest import host_tools

PLATFORM = """\
# The platform of the test repository
apiVersion: chamberlain.dev/v1alpha1
kind: Platform
metadata: {name: labco}
spec:
  environments:
    - {name: dev, clusters: [lab1]}
  authority:
    address: https://vault.vault.svc:8200
  rootOfTrust:
    # public recipients only
    ageRecipients: []
---
apiVersion: chamberlain.dev/v1alpha1
kind: RotationPolicy
metadata: {name: static}
spec: {type: static}
"""

INTENT = """\
apiVersion: chamberlain.dev/v1alpha1
kind: SecretIntent
metadata: {{name: smtp-relay}}
spec:
  owner: team-platform
  purpose: SMTP relay credential issued by the mail provider
  classification: bootstrap
  source:
    bootstrap: {{file: bootstrap/smtp-relay.sops.yaml}}
  rotation: {{policy: static}}
  consumers:
    - {{namespace: {consumer}, secretName: smtp-relay}}
"""

SECRET = """\
# The SMTP relay credential, as the provider issued it
apiVersion: v1
kind: Secret
metadata:
  name: bootstrap-smtp-relay
  namespace: {namespace}
type: Opaque
stringData:
  username: relay
  password: {canary}
"""


def make_repo(
    root: Path, canary: str, namespace: str = "chamberlain-bootstrap", consumer: str = "notifications"
) -> Path:
    (root / "bootstrap").mkdir(parents=True)
    (root / "platform.yaml").write_text(PLATFORM)
    (root / "intents.yaml").write_text(INTENT.format(consumer=consumer))
    (root / "bootstrap" / "smtp-relay.sops.yaml").write_text(SECRET.format(namespace=namespace, canary=canary))
    return root


def need_tools(*names: str) -> None:
    for name in names:
        try:
            host_tools().find(name)
        except ToolMissing:
            pytest.skip(f"{name} is not installed (chamberlain lab build sops age)")


def register_cli() -> None:
    """Register this work's commands on the CLI app the way main.py will (idempotent)."""
    from chamberlain.cli.bootstrap import bootstrap_app
    from chamberlain.cli.gitops import apply_cmd
    from chamberlain.cli.main import app
    from chamberlain.cli.root import root_app

    groups = {g.name for g in app.registered_groups}
    if "root" not in groups:
        app.add_typer(root_app, name="root")
    if "bootstrap" not in groups:
        app.add_typer(bootstrap_app, name="bootstrap")
    if not any(c.name == "apply" for c in app.registered_commands):
        app.command("apply")(apply_cmd)
