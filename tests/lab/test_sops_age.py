"""Proof 5: sops encrypts a Kubernetes Secret manifest to a lab age recipient and
decrypts it with that identity only."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from chamberlain.lab import builds
from tests.conftest import host_settings

pytestmark = pytest.mark.lab

MANIFEST = """\
apiVersion: v1
kind: Secret
metadata:
  name: bootstrap-db
  namespace: vault
  labels:
    chamberlain.dev/class: bootstrap
type: Opaque
stringData:
  password: correct-horse-battery
"""


def _sops(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    sops = builds.binary(host_settings().lab_cache, "sops")
    return subprocess.run([str(sops), *args], capture_output=True, text=True, env=env, check=False, timeout=60)


def test_sops_age_round_trip(tmp_path: Path, age_identity: tuple[Path, str]) -> None:
    key, recipient = age_identity
    assert recipient.startswith("age1")
    plain = tmp_path / "secret.yaml"
    plain.write_text(MANIFEST, encoding="utf-8")
    # No identity in the environment while encrypting: only the public recipient is needed.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")}
    enc = _sops(["--encrypt", "--age", recipient, "--encrypted-regex", "^(data|stringData)$", str(plain)], env)
    assert enc.returncode == 0, enc.stderr
    encrypted = enc.stdout
    assert "correct-horse-battery" not in encrypted
    doc = yaml.safe_load(encrypted)
    assert doc["metadata"]["name"] == "bootstrap-db"  # metadata stays readable for GitOps
    assert doc["stringData"]["password"].startswith("ENC[")
    assert [r["recipient"] for r in doc["sops"]["age"]] == [recipient]

    enc_file = tmp_path / "secret.enc.yaml"
    enc_file.write_text(encrypted, encoding="utf-8")
    no_key = _sops(["--decrypt", str(enc_file)], {**env, "SOPS_AGE_KEY_FILE": str(tmp_path / "missing")})
    assert no_key.returncode != 0

    dec = _sops(["--decrypt", str(enc_file)], {**env, "SOPS_AGE_KEY_FILE": str(key)})
    assert dec.returncode == 0, dec.stderr
    assert yaml.safe_load(dec.stdout)["stringData"] == {"password": "correct-horse-battery"}
