"""``chamberlain drill cluster-loss`` on the session's ``demo_world`` (the demo through handover; no lab of its own),
run as a user runs it: the kube-apiserver's etcd data is deleted, the cluster and the authority restart empty and
sealed, Flux is re-bootstrapped from the cluster's GitOps key, the authority is unsealed from the share export in
the repository by two custodians and re-configured for the new cluster, and Flux + the real ESO rebuild every
consumer Secret with the version marker it had. Marker ``drill``: it runs after every other test of the session
(tests/lab/conftest.py), and leaves the world working (rebuilt by Flux) for whatever comes after."""

from __future__ import annotations

import base64
import json

import pytest

from chamberlain import wellknown as wk
from tests.conftest import run_cli
from tests.lab.demo_lab import World

pytestmark = [pytest.mark.lab, pytest.mark.drill]

kubernetes = pytest.importorskip("kubernetes")

from chamberlain.authority.export import default_path, read_export, same_shares  # noqa: E402
from chamberlain.authority.material import SealedStore  # noqa: E402
from chamberlain.drill.report import consumer_secrets  # noqa: E402


def _consumer_values(w: World) -> set[str]:
    """Every value the rebuilt consumer Secrets hold (read back from the cluster, for the no-leak check)."""
    core = kubernetes.client.CoreV1Api(w.api)
    values = set()
    for ns, name in consumer_secrets(w.kube):
        try:
            secret = core.read_namespaced_secret(name, ns)
        except kubernetes.client.ApiException:
            continue
        values |= {base64.b64decode(v).decode(errors="replace") for v in (secret.data or {}).values()}
    return {v for v in values if len(v) >= 8}


def test_the_cluster_is_lost_and_rebuilt_from_git_with_every_version_marker(demo_world: World) -> None:
    w = demo_world
    work = w.repo.parent
    result = run_cli("drill", "cluster-loss", "--work-dir", str(work), "-o", "json")
    assert result.code == 0, result.out + result.err
    data = json.loads(result.out)
    timings = ", ".join(f"{s['step']} {s['seconds']}s" for s in data["steps"])
    print(f"\n[drill] cluster-loss: {data['matched']}/{data['secrets']} consumer Secrets matched, RTO "
          f"{data['rtoSeconds']}s; steps: {timings}")

    assert data["ok"] is True and data["drill"] == "cluster-loss"
    assert data["secrets"] > 0 and data["matched"] == data["secrets"]
    assert data["rtoSeconds"] > 0 and data["ledgerVerified"] is True
    assert not data.get("missing") and not data.get("changed")
    steps = {s["step"]: s for s in data["steps"]}
    assert steps["destroy"]["etcdDataDeleted"].endswith("/etcd/data")
    assert {"kube-apiserver", "etcd", w.lab.authority.name} <= set(steps["destroy"]["stopped"])
    # The cluster really was empty, and the authority sealed, before the rebuild.
    assert steps["cluster-up"]["consumerSecretsLeft"] == 0 and steps["cluster-up"]["authoritySealed"] is True

    # Unsealed from the export in the repository: the Secret the new cluster holds is re-created from that file.
    authority = data["authority"]
    assert authority["unsealedFrom"] == "authority/unseal-shares.yaml" and authority["unsealSecretRecreated"] is True
    assert authority["unsealedNow"] is True and len(authority["custodians"]) == 2
    assert authority["rootTokenRevoked"] is True and authority["configureChanges"] >= 1  # the new reviewer JWT
    stored = SealedStore(w.kube, "chamberlain-system").load()
    assert stored is not None and same_shares(read_export(default_path(w.repo)), stored)

    # The world works afterwards: the consumer Secrets are back with their markers, the orchestrator reads.
    for ns, name in consumer_secrets(w.kube):
        annotations = w.kube.get_secret_annotations(ns, name)
        if annotations is not None:
            assert annotations.get(wk.ANNOTATION_VERSION_MARKER)

    # No value, no identity in anything the command printed.
    shown = result.out + result.err
    assert "AGE-SECRET-KEY" not in shown
    leaked = [v for v in _consumer_values(w) if v in shown]
    assert not leaked, f"{len(leaked)} consumer values in the drill's output"
