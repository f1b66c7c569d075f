"""Phases 0-2 against the real kube-apiserver, sops, age and Flux: root init -> the cluster's own GitOps key ->
bootstrap encrypt -> validate -> render, commit -> Flux decrypts in-cluster and applies -> the bootstrap Secret
exists, labelled, with the right data; another reconcile changes nothing; a canary value never appears in any CLI
output, in the rendered output or in what Flux reports. A wrong in-cluster key applies nothing."""

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

from chamberlain.gitops import flux
from chamberlain.render.flux import CLUSTER, CRDS, bootstrap_name
from tests.conftest import host_tools, run_cli
from tests.lab.conftest import RunningLab
from tests.lab.gitops_world import through_flux
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
    # The cluster's GitOps controller gets a key of its own; bootstrap files are encrypted to it and the root
    cluster_key = tmp_path / "gitops" / "lab1.agekey"
    cli("root", "gitops-key", "lab1", "--identity-file", str(cluster_key), "--repo", str(repo))
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

    # Phase 2: Git -> cluster through the real Flux, decrypting with the cluster's key (not the root's)
    with through_flux(lab, k8s, repo, "lab1", cluster_key, tmp_path / "flux") as run:
        names = [flux.ROOT, CRDS, CLUSTER, bootstrap_name("dev")]
        run.wait_ready(*names)
        core = kubernetes.client.CoreV1Api(k8s)
        secret = core.read_namespaced_secret("bootstrap-smtp-relay", namespace)
        assert secret.metadata.labels["chamberlain.dev/class"] == "bootstrap"
        assert secret.metadata.labels["chamberlain.dev/intent"] == "smtp-relay"
        assert secret.metadata.labels["kustomize.toolkit.fluxcd.io/name"] == bootstrap_name("dev")
        assert secret.metadata.labels["kustomize.toolkit.fluxcd.io/namespace"] == flux.NAMESPACE
        assert _digest(base64.b64decode(secret.data["password"])) == _digest(canary.encode())
        assert base64.b64decode(secret.data["username"]) == b"relay"
        assert {f.manager for f in secret.metadata.managed_fields} == {"kustomize-controller"}
        ns = core.read_namespace(namespace)
        assert ns.metadata.labels["chamberlain.dev/class"] == "bootstrap"
        rv = secret.metadata.resource_version

        # idempotent: reconciling again changes nothing
        again = run.reconcile(*names)
        assert all(r.ready for r in again), [r.describe() for r in again]
        assert core.read_namespaced_secret("bootstrap-smtp-relay", namespace).metadata.resource_version == rv
        outputs += [r.describe() for r in again]

    # the rendered output holds ciphertext only
    out = tmp_path / "out"
    cli("render", str(repo), "-o", str(out))
    rendered = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert b"ENC[AES256_GCM" in rendered and canary.encode() not in rendered
    assert all(canary not in text for text in outputs)


def test_flux_with_a_wrong_key_applies_no_bootstrap_secret(lab: RunningLab, k8s: Any, tmp_path: Path) -> None:
    register_cli()
    suffix = uuid.uuid4().hex[:8]
    canary = f"canary-{uuid.uuid4().hex}"
    namespace = f"cb-{suffix}"
    repo = make_repo(tmp_path / "repo", canary, namespace=namespace, consumer=f"notif-{suffix}")
    assert run_cli("root", "init", "--repo", str(repo), "--identity-file", str(tmp_path / "k1")).code == 0
    assert run_cli("root", "gitops-key", "lab1", "--identity-file", str(tmp_path / "lab1.agekey"), "--repo",
                   str(repo)).code == 0
    assert run_cli("bootstrap", "encrypt", str(repo / "bootstrap" / "smtp-relay.sops.yaml"), "--repo",
                   str(repo)).code == 0
    other = tmp_path / "k2"
    subprocess.run([str(host_tools().find("age-keygen")), "-o", str(other)], capture_output=True, check=True)
    with through_flux(lab, k8s, repo, "lab1", other, tmp_path / "flux") as run:
        run.wait_ready(flux.ROOT, CRDS, CLUSTER)

        def failed(obj: dict[str, Any] | None) -> bool:
            said = flux.readiness(obj)
            return said.ready is False and "decrypt" in said.message.lower()

        try:
            obj = run.kube.wait_custom_object(flux.KUSTOMIZATIONS, flux.NAMESPACE, bootstrap_name("dev"), failed, 120)
        except Exception:
            seen = run.kube.get_custom_object(flux.KUSTOMIZATIONS, flux.NAMESPACE, bootstrap_name("dev"))
            raise AssertionError(f"Flux did not report the failure: {(seen or {}).get('status')}") from None
        said = flux.readiness(obj)
        assert "decrypt" in said.message.lower() and canary not in said.message, said.describe()
        core = kubernetes.client.CoreV1Api(k8s)
        secrets = {s.metadata.name for s in core.list_namespaced_secret(namespace).items}
        assert "bootstrap-smtp-relay" not in secrets  # nothing of the file was applied


def test_the_offline_fallback_apply_still_applies_without_a_gitops_controller(lab: RunningLab, k8s: Any,
                                                                              tmp_path: Path) -> None:
    """`chamberlain apply`, labelled the offline fallback, keeps working against the real API server: the cluster's
    key decrypts in memory, the Secret lands with the stand-in's field manager, and a second run changes nothing."""
    import json

    register_cli()
    suffix = uuid.uuid4().hex[:8]
    canary = f"canary-{uuid.uuid4().hex}"
    namespace = f"cb-{suffix}"
    repo = make_repo(tmp_path / "repo", canary, namespace=namespace, consumer=f"notif-{suffix}")
    key = tmp_path / "gitops" / "lab1.agekey"
    for args in (("root", "init", "--repo", str(repo), "--identity-file", str(tmp_path / "root.agekey")),
                 ("root", "gitops-key", "lab1", "--identity-file", str(key), "--repo", str(repo)),
                 ("bootstrap", "encrypt", str(repo / "bootstrap" / "smtp-relay.sops.yaml"), "--repo", str(repo))):
        assert run_cli(*args).code == 0, args
    apply_args = ("apply", str(repo), "--identity", str(key), "--kubeconfig", str(lab.kubeconfig), "-o", "json")
    first = run_cli(*apply_args)
    assert first.code == 0, first.err
    assert json.loads(first.out)["apps"][0]["bootstrapSecrets"] == 1 and canary not in first.out + first.err
    secret = kubernetes.client.CoreV1Api(k8s).read_namespaced_secret("bootstrap-smtp-relay", namespace)
    assert {f.manager for f in secret.metadata.managed_fields} == {"chamberlain-gitops-standin"}
    assert _digest(base64.b64decode(secret.data["password"])) == _digest(canary.encode())
    again = run_cli(*apply_args)
    assert again.code == 0 and not json.loads(again.out)["changed"]
