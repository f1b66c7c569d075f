"""plan's conflicts against the real kube-apiserver and ESO's CRDs (issue 10, item 6).

A namespace holds the ExternalSecret chamberlain renders for a consumer, a second ExternalSecret (not rendered by
chamberlain) whose target is the same Secret, and the consumer's restart target carrying a stakater Reloader
annotation. :func:`chamberlain.propagation.conflicts.observe` reads them through the real client (ExternalSecrets
listed, the Deployment's own and pod-template annotations) and reports both conflicts; a restart through the real
client then leaves the Reloader-managed Deployment alone (its generation does not move).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kubernetes
import pytest

from chamberlain import wellknown as wk
from chamberlain.clock import SystemClock
from chamberlain.kube.client import KubeClient
from chamberlain.propagation import WorkloadRef, restart
from chamberlain.propagation.conflicts import Expected, observe
from chamberlain.render import eso

from .conftest import RunningLab

pytestmark = pytest.mark.lab

NS = "conflicts-lab"


def _external_secret(name: str, target: str) -> dict[str, Any]:
    return {"apiVersion": eso.ESO_V1, "kind": "ExternalSecret", "metadata": {"name": name, "namespace": NS},
            "spec": {"refreshInterval": "1h", "secretStoreRef": {"kind": "SecretStore", "name": "absent"},
                     "target": {"name": target, "creationPolicy": "Owner"},
                     "dataFrom": [{"extract": {"key": "conflicts-lab/app-db"}}]}}


def test_plan_conflicts_are_read_from_the_real_api_server(k8s: Any, lab: RunningLab,
                                                          make_namespace: Callable[[str], str]) -> None:
    ns = make_namespace(NS)
    custom: Any = kubernetes.client.CustomObjectsApi(k8s)
    custom.create_namespaced_custom_object("external-secrets.io", "v1", ns, "externalsecrets",
                                           _external_secret("app-db", "app-db"))  # the one chamberlain renders
    custom.create_namespaced_custom_object("external-secrets.io", "v1", ns, "externalsecrets",
                                           _external_secret("legacy-app-db", "app-db"))  # a second owner
    apps: Any = kubernetes.client.AppsV1Api(k8s)
    apps.create_namespaced_deployment(ns, {
        "metadata": {"name": "api", "annotations": {wk.RELOADER_AUTO: "true"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "api"}},
                 "template": {"metadata": {"labels": {"app": "api"}},
                              "spec": {"containers": [{"name": "api", "image": "example.invalid/api:1"}]}}},
    })
    api = WorkloadRef("Deployment", ns, "api")
    kube = KubeClient.from_kubeconfig(lab.kubeconfig, clock=SystemClock())
    try:
        found = observe(kube, [Expected(ns, "app-db", "app-db", (api,))])
        assert [(c.kind, c.object, c.intent) for c in found] == [
            ("foreign-external-secret", "ExternalSecret/legacy-app-db", "app-db"),
            ("reloader", "Deployment/api", "app-db"),
        ]
        before = kube.get_pod_template("Deployment", ns, "api").generation
        assert restart(kube, api, "batch-1", SystemClock(), ["app-db"]) == "reloader-managed"
        assert kube.get_pod_template("Deployment", ns, "api").generation == before  # rolled by Reloader only
    finally:
        kube.close()
