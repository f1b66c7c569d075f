"""The Helm chart on the lab's real kube-apiserver: ``helm install``, then the API server enforces its RBAC and
its ValidatingAdmissionPolicy.

Identities are real ServiceAccount tokens from the TokenRequest API, as a pod gets them: the chart's
ServiceAccount (the controller), the GitOps identity the values name, and an ``intruder`` that RBAC allows to
write SecretIntents but that is not the GitOps identity (the policy must refuse it). The install uses a
controller namespace of its own, and the policy's binding selects only that namespace, so the other lab tests
(which write intents as the lab admin elsewhere) are untouched; the release is uninstalled at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chamberlain import install
from chamberlain.clock import SystemClock
from chamberlain.controller.leader import LeaderElector
from chamberlain.intent.model import GROUP, VERSION
from chamberlain.kube.api import CustomResource
from chamberlain.kube.client import KubeClient
from chamberlain.lab import builds
from chamberlain.render.chart import DEFAULT_DIR
from chamberlain.render.install import consumer_rules
from tests.conftest import REPO_ROOT, host_settings
from tests.lab.conftest import RunningLab

pytestmark = pytest.mark.lab

CHART = REPO_ROOT / DEFAULT_DIR
HOME_NS = "chart-lab-system"  # the controller namespace of this release
CONSUMER_NS = "chart-lab-payments"
GITOPS = ("chart-lab-gitops", "gitops")
INTRUDER = ("chart-lab-system", "intruder")  # may write intents by RBAC; not the GitOps identity
RELEASE = "chamberlain-lab"
INTENT = "lab-payments-db"
INTENTS = f"/apis/{GROUP}/{VERSION}/namespaces/{HOME_NS}/secretintents"
MERGE = "application/merge-patch+json"


def values() -> dict[str, Any]:
    return {
        "cluster": "lab",
        "controllerNamespace": HOME_NS,
        "serviceAccount": "chamberlain",
        "environments": [{"name": "dev"}, {"name": "preview"}],
        "gitops": {"identities": [f"system:serviceaccount:{GITOPS[0]}:{GITOPS[1]}"]},
        "monitoring": {"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}},  # no CRDs here
        "rbac": {"namespaces": [{"name": CONSUMER_NS, "rules": consumer_rules(
            ["payments-db"], ["payments-db"], [("Deployment", "payments-api")])}]},
    }


def intent(purpose: str = "chart lab test") -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SecretIntent",
            "metadata": {"name": INTENT, "namespace": HOME_NS},
            "spec": {"owner": "team-payments", "purpose": purpose, "classification": "runtime",
                     "source": {"generate": {"password": {"type": "password"}}}}}


def helm(lab: RunningLab, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = builds.binary(host_settings().lab_cache, "helm")
    env = {**os.environ, "HELM_CACHE_HOME": str(tmp / "cache"), "HELM_CONFIG_HOME": str(tmp / "config"),
           "HELM_DATA_HOME": str(tmp / "data"), "KUBECONFIG": str(lab.kubeconfig)}
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=180, check=False, env=env)


def kube_as(lab: RunningLab, tmp: Path, token: str, name: str) -> KubeClient:
    path = tmp / f"{name}.kubeconfig"
    path.write_text(json.dumps(install.token_kubeconfig(lab.lab.apiserver.address, lab.ca_file, token)))
    path.chmod(0o600)
    return KubeClient.from_kubeconfig(path, clock=SystemClock())


@pytest.fixture(scope="module")
def installed(lab: RunningLab, k8s: Any, make_namespace: Callable[[str], str],
              make_service_account: Callable[[str, str], str],
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if not builds.binary(host_settings().lab_cache, "helm").is_file():
        pytest.skip("helm is not built: python -m chamberlain.lab build helm")
    tmp = tmp_path_factory.mktemp("chart")
    for ns in (CONSUMER_NS, GITOPS[0]):
        make_namespace(ns)
    (tmp / "values.json").write_text(json.dumps(values()))
    started = time.monotonic()
    proc = helm(lab, tmp, "install", RELEASE, str(CHART), "--namespace", HOME_NS, "--create-namespace",
                "-f", str(tmp / "values.json"))
    assert proc.returncode == 0, proc.stderr
    print(f"\n[chart] helm install in {time.monotonic() - started:.1f}s")
    make_service_account(*GITOPS)
    make_service_account(*INTRUDER)
    # Both writers get RBAC to write intents: RBAC alone would let the intruder in; the policy must not.
    rbac = lab.lab.apiserver
    rbac.kubectl("-n", HOME_NS, "create", "role", "intent-writer", "--verb=create,update,patch,delete,get",
                 "--resource=secretintents.chamberlain.dev")
    rbac.kubectl("-n", HOME_NS, "create", "rolebinding", "intent-writer", "--role=intent-writer",
                 f"--serviceaccount={GITOPS[0]}:{GITOPS[1]}", f"--serviceaccount={INTRUDER[0]}:{INTRUDER[1]}")
    try:
        yield tmp
    finally:
        # The last test deletes the controller namespace, and Helm's release record with it: remove the
        # cluster-scoped policy by name as well.
        helm(lab, tmp, "uninstall", RELEASE, "--namespace", HOME_NS)
        for kind in ("validatingadmissionpolicybinding", "validatingadmissionpolicy"):
            rbac.kubectl("delete", kind, f"chamberlain-gitops-only-{HOME_NS}", "--ignore-not-found")


@pytest.fixture(scope="module")
def clients(lab: RunningLab, installed: Path, sa_token: Callable[..., str]) -> Iterator[dict[str, KubeClient]]:
    made = {
        "controller": kube_as(lab, installed, sa_token(HOME_NS, "chamberlain"), "controller"),
        "gitops": kube_as(lab, installed, sa_token(*GITOPS), "gitops"),
        "intruder": kube_as(lab, installed, sa_token(*INTRUDER), "intruder"),
    }
    yield made
    for client in made.values():
        client.close()


def wait_policy_enforced(intruder: KubeClient, gitops: KubeClient) -> int:
    """The API server compiles a new policy within a second or two: until then the intruder's create passes (and
    is deleted again). Returns the status of the first refused create.

    The undo is GitOps's: the policy may start to apply between the intruder's create and its delete, which it
    then refuses, and the intent would outlive the wait."""
    deadline = time.monotonic() + 30
    while True:
        status = intruder.request_status("POST", INTENTS, intent())
        if status == 403 or time.monotonic() > deadline:
            return status
        assert gitops.request_status("DELETE", f"{INTENTS}/{INTENT}") in (200, 202, 404)
        time.sleep(0.5)


def test_helm_installed_every_object(lab: RunningLab, installed: Path) -> None:
    kubectl = lab.lab.apiserver.kubectl
    deployments = json.loads(kubectl("-n", HOME_NS, "get", "deployments", "-o", "json").stdout)["items"]
    assert sorted(d["metadata"]["name"] for d in deployments) == ["chamberlain-dev", "chamberlain-preview"]
    roles = json.loads(kubectl("-n", CONSUMER_NS, "get", "roles", "-o", "json").stdout)["items"]
    assert sorted(r["metadata"]["name"] for r in roles) == ["chamberlain-controller-consumer-events",
                                                         "chamberlain-controller-consumers"]
    assert kubectl("get", "validatingadmissionpolicy", f"chamberlain-gitops-only-{HOME_NS}").returncode == 0


def test_admission_policy_lets_only_gitops_write_intents(clients: dict[str, KubeClient]) -> None:
    intruder, gitops, controller = clients["intruder"], clients["gitops"], clients["controller"]
    assert wait_policy_enforced(intruder, gitops) == 403, "a non-GitOps identity created a SecretIntent"
    assert gitops.request_status("POST", INTENTS, intent()) == 201
    item = f"{INTENTS}/{INTENT}"
    # Changing the spec: only GitOps. The intruder and the controller (RBAC grants it patch) are refused.
    changed = {"spec": {"purpose": "changed by hand"}}
    assert intruder.request_status("PATCH", item, changed, MERGE) == 403
    assert controller.request_status("PATCH", item, changed, MERGE) == 403
    assert gitops.request_status("PATCH", item, {"spec": {"purpose": "changed in Git"}}, MERGE) == 200
    # The rotate annotation stays open: a person asks, the controller clears it and records what it did.
    ask = {"metadata": {"annotations": {"chamberlain.dev/" + "rotate": "INC-42"}}}
    assert intruder.request_status("PATCH", item, ask, MERGE) == 200
    done = {"metadata": {"annotations": {"chamberlain.dev/" + "rotate": None,
                                         "chamberlain.dev/rotate-handled": "sha256:0"}}}
    assert controller.request_status("PATCH", item, done, MERGE) == 200
    # ...but an unrelated annotation or label is a change of the object: GitOps only.
    assert intruder.request_status("PATCH", item, {"metadata": {"labels": {"x": "y"}}}, MERGE) == 403
    assert controller.request_status("PATCH", item, {"metadata": {"annotations": {"x": "y"}}}, MERGE) == 403
    # ...and so are an ownerReference (the garbage collector would delete the intent once its made-up owner is
    # found missing) and a finalizer (GitOps could no longer delete it), even next to the rotate annotation.
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "gone", "uid": "00000000-0000-0000-0000-000000000001"}
    assert intruder.request_status("PATCH", item, {"metadata": {"ownerReferences": [owner]}}, MERGE) == 403
    assert intruder.request_status("PATCH", item, {"metadata": {"finalizers": ["example.com/hold"],
                                                                "annotations": ask["metadata"]["annotations"]}},
                                   MERGE) == 403
    # Status is a subresource the policy does not match: the controller writes it.
    assert controller.request_status("PATCH", f"{item}/status", {"status": {"phase": "Ready"}}, MERGE) == 200
    assert intruder.request_status("DELETE", item) == 403


def test_controller_can_do_its_job_by_name(lab: RunningLab, clients: dict[str, KubeClient]) -> None:
    """The calls the controller makes today, each through the real client under the chart's RBAC."""
    controller, kubectl = clients["controller"], lab.lab.apiserver.kubectl
    kubectl("-n", CONSUMER_NS, "create", "secret", "generic", "payments-db",
            "--from-literal=password=not-read-by-the-controller", check=False)
    kubectl("-n", CONSUMER_NS, "annotate", "--overwrite", "secret", "payments-db", "chamberlain.dev/version-marker=v1")
    kubectl("-n", CONSUMER_NS, "create", "deployment", "payments-api", "--image=registry.invalid/app:1", check=False)
    external = {"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                "metadata": {"name": "payments-db", "namespace": CONSUMER_NS},
                "spec": {"secretStoreRef": {"name": "none", "kind": "SecretStore"},
                         "target": {"name": "payments-db"}, "dataFrom": [{"extract": {"key": "x"}}]}}
    admin = KubeClient.from_kubeconfig(lab.kubeconfig, clock=SystemClock())
    try:
        admin.apply_manifest(external, "chamberlain-test")
    finally:
        admin.close()
    # Propagation: the consumer Secret's annotations (metadata only), the ExternalSecret, the restart target.
    assert controller.get_secret_annotations(CONSUMER_NS, "payments-db") == {"chamberlain.dev/version-marker": "v1"}
    controller.annotate_external_secret(CONSUMER_NS, "payments-db", {"force-sync": "lab"})
    controller.get_pod_template("Deployment", CONSUMER_NS, "payments-api")
    after = controller.patch_pod_template_annotations("Deployment", CONSUMER_NS, "payments-api",
                                                      {"chamberlain.dev/restart-batch": "lab"})
    assert after.annotations["chamberlain.dev/restart-batch"] == "lab"
    # Leader election on its own Lease: create, then renew (get + patch by name).
    elector = LeaderElector(controller, HOME_NS, install.lease_name("dev", "lab"), "replica-a", SystemClock())
    assert elector.step() and elector.step()
    elector.release()
    # RotationRuns and their status, Events, the intents it lists.
    runs = CustomResource(GROUP, VERSION, "rotationruns")
    controller.create_custom_object(runs, HOME_NS, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "RotationRun", "metadata": {"name": "run-chartlab1"},
        "spec": {"secret": INTENT, "path": "secret/data/lab/x", "trigger": "manual", "reason": "lab", "mode": "auto"}})
    controller.patch_custom_object_status(runs, HOME_NS, "run-chartlab1", {"phase": "Succeeded"})
    assert controller.list_custom_objects(runs, HOME_NS)
    assert controller.get_custom_object(runs, HOME_NS, "run-chartlab1")
    event = {"apiVersion": "v1", "kind": "Event", "metadata": {"generateName": "lab.", "namespace": HOME_NS},
             "involvedObject": {"kind": "RotationRun", "name": "run-chartlab1", "namespace": HOME_NS},
             "reason": "Lab", "message": "chart lab", "type": "Normal"}
    assert controller.request_status("POST", f"/api/v1/namespaces/{HOME_NS}/events", event) == 201
    # A retirement's warning on the consumer's ExternalSecret (the consumer-events Role).
    warning = {**event, "metadata": {"generateName": "lab.", "namespace": CONSUMER_NS},
               "involvedObject": {"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                                  "name": "payments-db", "namespace": CONSUMER_NS}}
    assert controller.request_status("POST", f"/api/v1/namespaces/{CONSUMER_NS}/events", warning) == 201
    assert isinstance(controller.list_custom_objects(CustomResource(GROUP, VERSION, "secretintents"), HOME_NS), list)


def test_negative_rbac_matrix(clients: dict[str, KubeClient]) -> None:
    matrix = install.rbac_matrix(clients["controller"], values(), intent=INTENT)
    report = matrix.as_dict()
    print(f"\n[chart] RBAC matrix: {report}")
    assert not matrix.failures, [(c.what, c.status) for c in matrix.failures]
    assert report == {"rbac": "chart", "serviceAccount": "chamberlain", "deniedChecks": len(matrix.checks),
                      "deniedOk": len(matrix.checks)}
    assert len(matrix.checks) >= 20


def test_deleting_the_namespace_is_not_blocked_by_the_policy(lab: RunningLab, clients: dict[str, KubeClient]) -> None:
    """Kubernetes' namespace controller deletes the intents through the API, so through admission: the policy lets
    it, or the controller namespace would stay Terminating forever. Runs last (it removes the namespace)."""
    kubectl = lab.lab.apiserver.kubectl
    assert clients["gitops"].request_status("GET", f"{INTENTS}/{INTENT}") == 200
    kubectl("delete", "namespace", HOME_NS, "--wait=false")
    deadline = time.monotonic() + 90
    while kubectl("get", "namespace", HOME_NS, check=False).returncode == 0:
        assert time.monotonic() < deadline, kubectl("get", "namespace", HOME_NS, "-o", "yaml").stdout[-1500:]
        time.sleep(1)
