"""A handover GitOps cannot undo, against the real kube-apiserver 1.34 and Vault 1.21.

Flux's controllers are not in the lab yet, so this test installs a minimal ``Kustomization`` CRD itself
(``kustomize.toolkit.fluxcd.io/v1``, status subresource, fields preserved) and plays kustomize-controller's part
by writing the inventory into the object's status — exactly what :func:`chamberlain.handover.gitops.applied_by`
reads. The end-to-end test with the real Flux controllers comes with them. Here: the check against a real API
server (a listed Secret is applied, an unlisted one is not, a CRD that does not exist means nobody applies it), then
the real CLI: handover while Flux applies the Secrets ends ``awaiting-retirement`` with Vault recorded and the
Secrets untouched and the retirement written into the repository copy (which validates and renders without the
files); once the inventory no longer lists them, handover consumes them and ledgers the retirement."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from chamberlain import wellknown as wk
from chamberlain.clock import SystemClock
from tests.conftest import run_cli
from tests.lab.test_handover import fresh_repo

pytestmark = pytest.mark.lab

hvac = pytest.importorskip("hvac")
kubernetes = pytest.importorskip("kubernetes")

from chamberlain.handover.gitops import FLUX_KUSTOMIZATIONS, applied_by  # noqa: E402
from chamberlain.kube.client import KubeClient  # noqa: E402

CRD_NAME = "kustomizations.kustomize.toolkit.fluxcd.io"
FLUX_NS, KS = "flux-system", "chamberlain-bootstrap-dev-dev1"
BOOT_NS = "chamberlain-bootstrap"
CANARY = "canary-Retire-Kq3Wz8Lm5Tx2"
SECRETS = {"smtp-relay": "bootstrap-smtp-relay", "registry-pull": "bootstrap-registry-pull"}


def _crd() -> dict[str, Any]:
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {"group": "kustomize.toolkit.fluxcd.io", "scope": "Namespaced",
                 "names": {"plural": "kustomizations", "singular": "kustomization", "kind": "Kustomization"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": schema}}]},
    }


@pytest.fixture(scope="module")
def flux_crd(k8s: Any, make_namespace: Any) -> Iterator[KubeClient]:
    ext = kubernetes.client.ApiextensionsV1Api(k8s)
    ext.create_custom_resource_definition(_crd())
    kube = KubeClient(k8s, clock=SystemClock())
    kube.wait_crd_established(CRD_NAME)
    make_namespace(FLUX_NS)
    make_namespace(BOOT_NS)
    time.sleep(1)  # discovery of the new group
    yield kube
    ext.delete_custom_resource_definition(CRD_NAME)


def _inventory(k8s: Any, names: list[str]) -> None:
    """Create or update the Kustomization and set its status inventory, as kustomize-controller would."""
    api = kubernetes.client.CustomObjectsApi(k8s)
    g, v, p = FLUX_KUSTOMIZATIONS.group, FLUX_KUSTOMIZATIONS.version, FLUX_KUSTOMIZATIONS.plural
    try:
        api.create_namespaced_custom_object(g, v, FLUX_NS, p, {
            "apiVersion": f"{g}/{v}", "kind": "Kustomization", "metadata": {"name": KS},
            "spec": {"path": "./envs/dev/dev1/bootstrap", "prune": False}})
    except kubernetes.client.ApiException as exc:
        if exc.status != 409:
            raise
    entries = [{"id": f"{BOOT_NS}_{n}__Secret", "v": "v1"} for n in names]
    api.patch_namespaced_custom_object_status(g, v, FLUX_NS, p, KS, {"status": {"inventory": {"entries": entries}}})


def _secret(core: Any, name: str, intent: str) -> None:
    try:
        core.delete_namespaced_secret(name, BOOT_NS)
    except kubernetes.client.ApiException as exc:
        if exc.status != 404:
            raise
    core.create_namespaced_secret(BOOT_NS, {"metadata": {"name": name, "labels": {
        wk.LABEL_CLASS: "bootstrap", wk.LABEL_INTENT: intent, wk.FLUX_NAME_LABEL: KS,
        wk.FLUX_NAMESPACE_LABEL: FLUX_NS}}, "stringData": {"username": "relay", "password": CANARY}})


def test_the_check_against_a_real_api_server(flux_crd: KubeClient, k8s: Any) -> None:
    labels = {wk.FLUX_NAME_LABEL: KS, wk.FLUX_NAMESPACE_LABEL: FLUX_NS}
    _inventory(k8s, ["bootstrap-smtp-relay"])
    assert applied_by(flux_crd, BOOT_NS, "bootstrap-smtp-relay", labels, {}).applies
    assert not applied_by(flux_crd, BOOT_NS, "bootstrap-other", labels, {}).applies
    _inventory(k8s, [])
    assert not applied_by(flux_crd, BOOT_NS, "bootstrap-smtp-relay", labels, {}).applies
    # Argo CD is not installed: its Application CRD does not exist, so it applies nothing
    owner = applied_by(flux_crd, BOOT_NS, "bootstrap-smtp-relay", {wk.ARGOCD_INSTANCE_LABEL: "acme-dev"}, {})
    assert owner.controller == "argocd" and not owner.applies


def test_handover_waits_for_git_then_retires(flux_crd: KubeClient, k8s: Any, vault: Any, vault_info: Any,
                                             lab: Any, tmp_path: Path) -> None:
    repo, mount, token = fresh_repo(tmp_path, vault, vault_info)
    core = kubernetes.client.CoreV1Api(k8s)
    for intent, name in SECRETS.items():
        _secret(core, name, intent)
    _inventory(k8s, list(SECRETS.values()))
    args = ["handover", str(repo), "--cluster", "dev1", "-e", "dev", "--vault-addr", vault_info.address,
            "--vault-cacert", str(vault_info.ca_file), "--vault-token-file", str(token),
            "--kubeconfig", str(lab.kubeconfig), "-o", "json"]

    first = run_cli(*args)
    assert first.code == 0, first.out + first.err
    assert CANARY not in first.out + first.err
    rows = {r["intent"]: r for r in json.loads(first.out)["handovers"]}
    for intent, name in SECRETS.items():
        row = rows[intent]
        assert row["result"] == "awaiting-retirement" and row["steps"] == ["write", "record", "ledger"]
        assert row["gitops"] == f"flux Kustomization {FLUX_NS}/{KS}" and row["git"]["changed"] is True
        secret = core.read_namespaced_secret(name, BOOT_NS)  # untouched, still usable
        assert secret.data and wk.ANNOTATION_CONSUMED not in (secret.metadata.annotations or {})
        meta = vault.secrets.kv.v2.read_secret_metadata(path=f"dev/team-platform/{intent}", mount_point=mount)
        custom = meta["data"]["custom_metadata"]
        assert custom["authority"] == "vault" and "handover-seq.dev1" in custom and "retired.dev1" not in custom
    assert run_cli("validate", str(repo)).code == 0, "the written retirement validates"
    out = tmp_path / "out"
    assert run_cli("render", str(repo), "-o", str(out)).code == 0
    assert yaml.safe_load((out / "envs/dev/dev1/bootstrap/kustomization.yaml").read_text())["resources"] == []
    assert not (out / "envs/dev/dev1/ksops-bootstrap.yaml").exists()

    still = run_cli(*args)  # not pushed yet: Flux still applies them
    assert {r["result"] for r in json.loads(still.out)["handovers"]} == {"awaiting-retirement"}

    _inventory(k8s, [])  # pushed, and Flux reconciled the emptied kustomization (prune: false keeps the Secrets)
    done = run_cli(*args)
    assert done.code == 0, done.out + done.err
    rows = {r["intent"]: r for r in json.loads(done.out)["handovers"]}
    assert all(r["result"] == "handed-over" and r["steps"] == ["consume", "retire"] for r in rows.values())
    with pytest.raises(kubernetes.client.ApiException):
        core.read_namespaced_secret(SECRETS["smtp-relay"], BOOT_NS)  # afterHandover: delete
    inert = core.read_namespaced_secret(SECRETS["registry-pull"], BOOT_NS)  # afterHandover: inert
    assert not inert.data and inert.metadata.annotations[wk.FLUX_RECONCILE] == "disabled"
    assert inert.metadata.annotations[wk.FLUX_PRUNE] == "disabled"
    assert inert.metadata.annotations[wk.ARGOCD_COMPARE_OPTIONS] == "IgnoreExtraneous"
    audit = run_cli("audit", "verify", str(repo), "--vault-addr", vault_info.address, "--vault-cacert",
                    str(vault_info.ca_file), "--vault-token-file", str(token), "-o", "json")
    assert audit.code == 0, audit.out + audit.err
    show = run_cli("audit", "show", "smtp-relay", str(repo), "--cluster", "dev1", "--vault-addr",
                   vault_info.address, "--vault-cacert", str(vault_info.ca_file), "--vault-token-file", str(token),
                   "-o", "json")
    assert show.code == 0 and CANARY not in show.out
    ledger = json.loads(show.out)["ledger"]
    assert [e["event"] for e in ledger] == ["handover", "retire"]
    assert ledger[0]["details"]["retirement"] == "awaiting-gitops" and ledger[1]["details"]["gitops"] == "flux"
    assert ledger[1]["details"]["after-handover"] == "delete"
