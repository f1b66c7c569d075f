"""Phases 0-2 against the real kube-apiserver, sops and age: root init -> bootstrap encrypt -> validate ->
apply (the lab's GitOps stand-in) -> the bootstrap Secret exists, labelled, with the right data; re-apply is a
no-op; a canary value never appears in any CLI output or in the rendered output."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import host_tools, run_cli
from tests.lab.conftest import RunningLab
from tests.unit.test_bootstrap_helpers import make_repo, register_cli

kubernetes = pytest.importorskip("kubernetes")

pytestmark = pytest.mark.lab


def _digest(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


def test_root_init_encrypt_validate_apply_and_reapply(lab: RunningLab, k8s: Any, tmp_path: Path) -> None:
    register_cli()
    suffix = uuid.uuid4().hex[:8]
    canary = f"canary-{uuid.uuid4().hex}"
    namespace, consumer = f"cb-{suffix}", f"notif-{suffix}"
    repo = make_repo(tmp_path / "repo", canary, namespace=namespace, consumer=consumer)
    identity = tmp_path / "offline" / "root.agekey"
    outputs: list[str] = []

    def cli(*args: str) -> str:
        result = run_cli(*args)
        outputs.append(result.out + result.err)
        assert result.code == 0, result.err
        return result.out

    # Phase 0: the offline identity; its recipient goes into the Platform and .sops.yaml
    recipient = cli("root", "init", "--repo", str(repo), "--identity-file", str(identity)).strip()
    assert recipient.startswith("age1") and identity.stat().st_mode & 0o777 == 0o600
    # Phase 1: the bootstrap Secret is encrypted in place, and the repository validates clean
    cli("bootstrap", "encrypt", str(repo / "bootstrap" / "smtp-relay.sops.yaml"), "--repo", str(repo))
    cli("validate", str(repo))
    encrypted = repo / "bootstrap" / "smtp-relay.sops.yaml"
    assert canary.encode() not in encrypted.read_bytes()

    # the real sops decrypts what chamberlain encrypted, with the identity
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")} | {"SOPS_AGE_KEY_FILE": str(identity)}
    sops = host_tools().find("sops")
    plain = yaml.safe_load(subprocess.run([str(sops), "decrypt", str(encrypted)], capture_output=True,
                                          env=env, check=True).stdout)
    assert _digest(plain["stringData"]["password"].encode()) == _digest(canary.encode())

    # Phase 2: the stand-in applies CRDs, then the application in wave order, decrypting in memory
    apply_args = ("apply", str(repo), "--identity", str(identity), "--kubeconfig", str(lab.kubeconfig), "-o", "json")
    import json

    first = json.loads(cli(*apply_args))
    assert first["cluster"] == "lab1" and first["changed"]
    (app,) = first["apps"]
    assert app["bootstrapSecrets"] == 1 and app["created"] >= 5

    core = kubernetes.client.CoreV1Api(k8s)
    secret = core.read_namespaced_secret("bootstrap-smtp-relay", namespace)
    assert secret.metadata.labels["chamberlain.dev/class"] == "bootstrap"
    assert secret.metadata.labels["chamberlain.dev/intent"] == "smtp-relay"
    assert secret.metadata.annotations["argocd.argoproj.io/sync-wave"] == "1"
    assert _digest(base64.b64decode(secret.data["password"])) == _digest(canary.encode())
    assert base64.b64decode(secret.data["username"]) == b"relay"
    managers = {f.manager for f in secret.metadata.managed_fields}
    assert managers == {"chamberlain-gitops-standin"}
    ns = core.read_namespace(namespace)
    assert ns.metadata.labels["chamberlain.dev/class"] == "bootstrap"
    rv = secret.metadata.resource_version

    # idempotent: a second apply changes nothing
    second = json.loads(cli(*apply_args))
    assert not second["changed"]
    assert second["apps"][0]["created"] == second["apps"][0]["configured"] == 0
    assert core.read_namespaced_secret("bootstrap-smtp-relay", namespace).metadata.resource_version == rv
    text_run = cli(*apply_args[:-2])
    assert "0 created, 0 configured" in text_run

    # the rendered output holds ciphertext only
    out = tmp_path / "out"
    cli("render", str(repo), "-o", str(out))
    rendered = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert b"ENC[AES256_GCM" in rendered and canary.encode() not in rendered
    assert all(canary not in text for text in outputs)


def test_apply_with_a_wrong_identity_applies_nothing(lab: RunningLab, k8s: Any, tmp_path: Path) -> None:
    register_cli()
    suffix = uuid.uuid4().hex[:8]
    canary = f"canary-{uuid.uuid4().hex}"
    namespace = f"cb-{suffix}"
    repo = make_repo(tmp_path / "repo", canary, namespace=namespace, consumer=f"notif-{suffix}")
    assert run_cli("root", "init", "--repo", str(repo), "--identity-file", str(tmp_path / "k1")).code == 0
    assert run_cli("bootstrap", "encrypt", str(repo / "bootstrap" / "smtp-relay.sops.yaml"), "--repo",
                   str(repo)).code == 0
    other = tmp_path / "k2"
    subprocess.run([str(host_tools().find("age-keygen")), "-o", str(other)], capture_output=True, check=True)
    result = run_cli("apply", str(repo), "--identity", str(other), "--kubeconfig", str(lab.kubeconfig))
    assert result.code == 1 and "identity" in result.err and canary not in result.out + result.err
    core = kubernetes.client.CoreV1Api(k8s)
    names = {n.metadata.name for n in core.list_namespace().items}
    assert namespace not in names  # built and decrypted before anything was applied
