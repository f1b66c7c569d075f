"""A handover GitOps cannot undo, end to end against the lab's real Flux (source- and kustomize-controller), the
real kube-apiserver and the lab authority.

A copy of examples/acme gets a root of trust and dev1's own GitOps key; its rendered tree is committed to the lab's
Git server and Flux applies it, decrypting the bootstrap Secrets in-cluster. Then: the check against what Flux
really reports (a Secret its inventory lists is applied, one it does not is not, Argo CD absent applies nothing);
handover while Flux applies the Secrets ends ``awaiting-retirement`` with the authority recorded, the Secrets
untouched and ``retiredIn`` written into the copy; the re-rendered tree is committed and Flux reconciles it; the
next handover retires each Secret per ``afterHandover`` and ledgers it; then rounds of forced reconciles of every
Kustomization leave the cluster as each mode says (``delete``: gone, ``inert``: emptied and annotated).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from chamberlain import wellknown as wk
from chamberlain.gitops import flux
from chamberlain.handover import retirement_undone
from chamberlain.handover.gitops import applied_by
from chamberlain.render.flux import CLUSTER, CRDS, bootstrap_name
from tests.conftest import REPO_ROOT, host_tools, run_cli
from tests.lab.gitops_world import through_flux
from tests.lab.test_handover import fresh_repo

pytestmark = pytest.mark.lab

hvac = pytest.importorskip("hvac")
kubernetes = pytest.importorskip("kubernetes")

BOOT_NS = "chamberlain-bootstrap"
PREVIOUS_ROOT = REPO_ROOT / "tests" / "fixtures" / "age" / "test-identity.txt"
SECRETS = {"smtp-relay": ("bootstrap-smtp-relay", "delete"), "registry-pull": ("bootstrap-registry-pull", "inert")}
ROUNDS = 3


def _prepare(repo: Path, tmp_path: Path) -> Path:
    """A new root, dev1's GitOps key, the bootstrap files re-encrypted to both; the GitOps key file."""
    from chamberlain.service import root

    recipient = run_cli("root", "init", "--repo", str(repo), "--identity-file", str(tmp_path / "root.agekey"))
    assert recipient.code == 0, recipient.err
    key = tmp_path / "gitops" / "dev1.agekey"
    for cluster in ("dev1", "staging1", "prod-eu1", "prod-us1"):
        made = run_cli("root", "gitops-key", cluster, "--identity-file", str(tmp_path / "gitops" / f"{cluster}.agekey"),
                       "--repo", str(repo))
        assert made.code == 0 or "no environment lists" in made.err, made.err
    root.reencrypt(repo, recipient.out.strip(), previous_identity=PREVIOUS_ROOT, tools=host_tools())
    checked = run_cli("validate", str(repo), "-o", "json")
    assert json.loads(checked.out)["errors"] == 0, checked.out
    return key


def test_handover_retires_through_git_and_no_flux_reconcile_undoes_it(
        lab: Any, k8s: Any, vault: Any, vault_info: Any, tmp_path: Path) -> None:
    repo, mount, token = fresh_repo(tmp_path, vault, vault_info)
    key = _prepare(repo, tmp_path)
    core = kubernetes.client.CoreV1Api(k8s)
    boot = bootstrap_name("dev")
    args = ["handover", str(repo), "--cluster", "dev1", "-e", "dev", "--vault-addr", vault_info.address,
            "--vault-cacert", str(vault_info.ca_file), "--vault-token-file", str(token),
            "--kubeconfig", str(lab.kubeconfig), "-o", "json"]
    with through_flux(lab, k8s, repo, "dev1", key, tmp_path / "flux") as run:
        run.wait_ready(flux.ROOT, CRDS, CLUSTER, boot)
        # What Flux reports, read the way handover reads it.
        for _intent, (name, _mode) in SECRETS.items():
            secret = run.kube.get_secret(BOOT_NS, name)
            assert secret is not None and secret.labels[wk.FLUX_NAME_LABEL] == boot
            assert applied_by(run.kube, BOOT_NS, name, secret.labels, secret.annotations).applies
        labels = {wk.FLUX_NAME_LABEL: boot, wk.FLUX_NAMESPACE_LABEL: flux.NAMESPACE}
        assert not applied_by(run.kube, BOOT_NS, "bootstrap-other", labels, {}).applies
        argo = applied_by(run.kube, BOOT_NS, "bootstrap-smtp-relay", {wk.ARGOCD_INSTANCE_LABEL: "acme-dev"}, {})
        assert argo.controller == "argocd" and not argo.applies  # no Application CRD: Argo CD applies nothing

        first = run_cli(*args)
        assert first.code == 0, first.out + first.err
        rows = {r["intent"]: r for r in json.loads(first.out)["handovers"]}
        for intent, (name, _mode) in SECRETS.items():
            row = rows[intent]
            assert row["result"] == "awaiting-retirement" and row["steps"] == ["write", "record", "ledger"], row
            assert row["gitops"] == f"flux Kustomization {flux.NAMESPACE}/{boot}" and row["git"]["changed"] is True
            secret = core.read_namespaced_secret(name, BOOT_NS)  # untouched, still usable
            assert secret.data and wk.ANNOTATION_CONSUMED not in (secret.metadata.annotations or {})
            meta = vault.secrets.kv.v2.read_secret_metadata(path=f"dev/team-platform/{intent}", mount_point=mount)
            custom = meta["data"]["custom_metadata"]
            assert "handover-seq.dev1" in custom and "retired.dev1" not in custom
        still = run_cli(*args)  # the retirement is written but not committed: Flux still applies them
        assert {r["result"] for r in json.loads(still.out)["handovers"]} == {"awaiting-retirement"}

        commit = run.publish("Retire the dev bootstrap files after handover")
        kustomization = yaml.safe_load((run.rendered / "envs/dev/dev1/bootstrap/kustomization.yaml").read_text())
        assert kustomization["resources"] == []
        run.reconcile(flux.ROOT, boot)
        run.wait_ready(boot, commit=commit)

        done = run_cli(*args)
        assert done.code == 0, done.out + done.err
        rows = {r["intent"]: r for r in json.loads(done.out)["handovers"]}
        assert all(r["result"] == "handed-over" and r["steps"] == ["consume", "retire"] for r in rows.values()), rows

        # Rounds of forced reconciles of the source and every Kustomization (the environment's waits for stores
        # that only the authority of a real platform makes Ready; it carries no bootstrap Secret).
        for _ in range(ROUNDS):
            for _attempt in range(3):  # a loaded lab: a dependency handled its request before it was Ready, and
                handled = run.reconcile(flux.ROOT, CRDS, CLUSTER, boot)  # the next one reported DependencyNotReady
                if all(r.ready for r in handled):
                    break
            assert all(r.ready for r in handled), [r.describe() for r in handled]
            for _intent, (name, mode) in SECRETS.items():
                secret = run.kube.get_secret(BOOT_NS, name)
                applied = secret is not None and applied_by(run.kube, BOOT_NS, name, secret.labels,
                                                             secret.annotations).applies
                assert not retirement_undone(mode, secret, applied), (name, mode)
        with pytest.raises(kubernetes.client.ApiException):
            core.read_namespaced_secret("bootstrap-smtp-relay", BOOT_NS)  # afterHandover: delete
        inert = core.read_namespaced_secret("bootstrap-registry-pull", BOOT_NS)  # afterHandover: inert
        assert inert.metadata.annotations[wk.FLUX_RECONCILE] == "disabled"
        assert inert.metadata.annotations[wk.FLUX_PRUNE] == "disabled"

    show = run_cli("audit", "show", "smtp-relay", str(repo), "--cluster", "dev1", "--vault-addr",
                   vault_info.address, "--vault-cacert", str(vault_info.ca_file), "--vault-token-file", str(token),
                   "-o", "json")
    assert show.code == 0, show.err
    ledger = json.loads(show.out)["ledger"]
    assert [e["event"] for e in ledger] == ["handover", "retire"]
    assert ledger[0]["details"]["retirement"] == "awaiting-gitops" and ledger[1]["details"]["gitops"] == "flux"
    assert ledger[1]["details"]["after-handover"] == "delete"
    pinned = run_cli("audit", "pin", str(repo), "--vault-addr", vault_info.address, "--vault-cacert",
                     str(vault_info.ca_file), "--vault-token-file", str(token), "-o", "json")
    assert pinned.code == 0, pinned.err  # the ledger's public keys, pinned in the repository before verify
    audit = run_cli("audit", "verify", str(repo), "--vault-addr", vault_info.address, "--vault-cacert",
                    str(vault_info.ca_file), "--vault-token-file", str(token), "-o", "json")
    assert audit.code == 0, audit.out + audit.err
