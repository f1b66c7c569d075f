"""Proof: the output of `chamberlain render` server-side-applies cleanly to a real kube-apiserver that has ESO's
CRDs installed, so the real CRD schemas (ours and ESO's) accept every manifest we render."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from chamberlain.lab import builds
from tests.conftest import EXAMPLES, host_settings, run_cli
from tests.lab.conftest import RunningLab

pytestmark = pytest.mark.lab


def _kubectl(lab: RunningLab, *args: str) -> str:
    proc = lab.lab.apiserver.kubectl(*args)
    return proc.stdout


def test_rendered_acme_applies_server_side(lab: RunningLab, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("render", str(EXAMPLES / "acme"), "-o", str(out))
    assert result.code == 0, result.out + result.err
    apps = sorted(p.parent for p in (out / "envs").glob("*/*/kustomization.yaml"))
    assert len(apps) >= 3, apps  # one Argo CD application per environment and cluster
    # Argo CD applies sync wave 0 (CRDs) and waits for it before later waves; kubectl needs the same two steps.
    _kubectl(
        lab, "apply", "--server-side", "--force-conflicts", "--field-manager=chamberlain-test", "-k", str(out / "crds")
    )
    _kubectl(
        lab,
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd",
        "-l",
        "app.kubernetes.io/managed-by=chamberlain",
    )
    for app in apps:
        # kubectl has no KSOPS plugin: build without the bootstrap generator (test_bootstrap_phases.py applies
        # bootstrap Secrets through `chamberlain apply`, which decrypts as KSOPS would).
        kfile = app / "kustomization.yaml"
        kdoc = yaml.safe_load(kfile.read_text())
        if kdoc.pop("generators", None) is not None:
            kdoc.pop("patches", None)
            kfile.write_text(yaml.safe_dump(kdoc))
        _kubectl(lab, "apply", "--server-side", "--force-conflicts", "--field-manager=chamberlain-test", "-k", str(app))
        # Applying the same output again changes nothing. Checked per application right away: the lab has one
        # API server standing in for every cluster, so the next cluster's application overwrites shared names.
        # kubectl diff reads the live object, then dry-runs the apply: ESO writing a fresh SecretStore's status
        # between the two shows up as a diff (status, resourceVersion) once. A diff our manifests cause stays.
        for _ in range(5):
            diff = lab.lab.apiserver.kubectl(
                "diff",
                "--server-side",
                "--force-conflicts",
                "--field-manager=chamberlain-test",
                "-k",
                str(app),
                check=False,
            )
            if diff.returncode == 0:
                break
            time.sleep(1)
        assert diff.returncode == 0, diff.stdout[-2000:]
    crds = json.loads(_kubectl(lab, "get", "crd", "-o", "json"))["items"]
    ours = {c["metadata"]["name"]: c for c in crds if c["spec"]["group"] == "chamberlain.dev"}
    assert set(ours) == {
        "platforms.chamberlain.dev",
        "rotationpolicies.chamberlain.dev",
        "rotationruns.chamberlain.dev",
        "secretintents.chamberlain.dev",
    }
    for crd in ours.values():
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True"
        assert conditions.get("NonStructuralSchema", "False") == "False"
    intents = json.loads(_kubectl(lab, "get", "secretintents.chamberlain.dev", "-A", "-o", "json"))["items"]
    assert len(intents) >= 12
    externals = json.loads(_kubectl(lab, "get", "externalsecrets.external-secrets.io", "-A", "-o", "json"))["items"]
    assert externals and all(e["apiVersion"] == "external-secrets.io/v1" for e in externals)
    pushes = json.loads(_kubectl(lab, "get", "pushsecrets.external-secrets.io", "-A", "-o", "json"))["items"]
    assert pushes
    stores = json.loads(_kubectl(lab, "get", "secretstores.external-secrets.io", "-A", "-o", "json"))["items"]
    assert stores


def test_kubectl_is_built() -> None:
    assert builds.binary(host_settings().lab_cache, "kubectl").exists()
