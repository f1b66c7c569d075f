"""Installing the controller in a cluster: the chart's objects and values (re-exported from
:mod:`chamberlain.render.install`, their one source) and the proof that its RBAC holds on a real API server.

Belongs here: :func:`rbac_matrix`, the negative permission matrix — real requests made with the chart
ServiceAccount's token that the API server must refuse (403) — and :func:`token_kubeconfig`, the kubeconfig of
such a token. The demo reports the matrix (``{"controller": {"rbac": "chart", ...}}``). Not here: building
objects (:mod:`chamberlain.render.install`), writing the chart (:mod:`chamberlain.render.chart`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from chamberlain.intent.model import GROUP, VERSION
from chamberlain.kube.api import KubeProbe
from chamberlain.render.install import (
    WHY,
    ChartValues,
    cluster_values,
    controller_args,
    install_objects,
    lease_name,
)

PROBE_NAME = "chamberlain-rbac-probe"  # a name no rule grants: a refused request, whether or not it exists
_MERGE = "application/merge-patch+json"


@dataclass(frozen=True)
class Check:
    """One request the controller's identity must not be allowed to make."""

    what: str
    method: str
    path: str
    status: int = 0  # what the API server answered (403: refused)

    @property
    def denied(self) -> bool:
        return self.status == 403


@dataclass(frozen=True)
class RbacMatrix:
    service_account: str
    checks: list[Check] = field(default_factory=list)

    @property
    def denied_ok(self) -> int:
        return sum(c.denied for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.denied]

    def as_dict(self) -> dict[str, Any]:
        """What ``demo -o json`` reports under ``controller``."""
        return {"rbac": "chart", "serviceAccount": self.service_account, "deniedChecks": len(self.checks),
                "deniedOk": self.denied_ok}


def _core(ns: str, resource: str, name: str = "") -> str:
    base = f"/api/v1/namespaces/{quote(ns, safe='')}/{resource}"
    return f"{base}/{quote(name, safe='')}" if name else base


def _group(group: str, version: str, ns: str, resource: str, name: str = "") -> str:
    base = f"/apis/{group}/{version}/namespaces/{quote(ns, safe='')}/{resource}"
    return f"{base}/{quote(name, safe='')}" if name else base


def _named(access: Mapping[str, Any], resource: str) -> set[str]:
    return {n for r in access["rules"] if resource in r["resources"] for n in r["resourceNames"]}


def planned_checks(values: Mapping[str, Any], unserved_namespace: str = "kube-system",
                   intent: str | None = None) -> list[Check]:
    """The refused requests for an installation with ``values``: Secrets listed, watched, read outside the named
    set or written; other CRDs and CRD definitions patched; namespaces it does not serve; chamberlain's intents
    written (RBAC: no create, update or delete; with ``intent``, an existing SecretIntent, also a spec change
    through the ``patch`` RBAC grants, refused by the admission policy); and escalation (RoleBindings, pods,
    tokens)."""
    v = ChartValues.model_validate(values).model_dump(by_alias=True, mode="json")
    home, sa = v["controllerNamespace"], v["serviceAccount"]
    served = v["rbac"]["namespaces"]
    consumer = served[0] if served else {"name": home, "rules": []}
    ns = consumer["name"]
    secret = next(n for n in (PROBE_NAME, f"{PROBE_NAME}-2") if n not in _named(consumer, "secrets"))
    intents = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(home, safe='')}/secretintents"
    checks = [
        Check("list Secrets in the controller namespace", "GET", _core(home, "secrets")),
        Check("list Secrets in every namespace", "GET", "/api/v1/secrets"),
        Check(f"list Secrets in consumer namespace {ns}", "GET", _core(ns, "secrets")),
        Check(f"watch Secrets in consumer namespace {ns}", "GET",
              _core(ns, "secrets") + "?watch=true&timeoutSeconds=1"),
        Check(f"get a Secret outside its named set in {ns}", "GET", _core(ns, "secrets", secret)),
        Check("get the webhook key Secret (the kubelet mounts it; the API never serves it)", "GET",
              _core(home, "secrets", v["webhook"]["secretName"])),
        Check(f"create a Secret in {ns}", "POST", _core(ns, "secrets")),
        Check(f"get a Secret in {unserved_namespace}, a namespace it does not serve", "GET",
              _core(unserved_namespace, "secrets", PROBE_NAME)),
        Check(f"patch an ExternalSecret outside its named set in {ns}", "PATCH",
              _group("external-secrets.io", "v1", ns, "externalsecrets", PROBE_NAME)),
        Check(f"patch an ExternalSecret in {unserved_namespace}", "PATCH",
              _group("external-secrets.io", "v1", unserved_namespace, "externalsecrets", PROBE_NAME)),
        Check(f"patch a SecretStore (another CRD) in {ns}", "PATCH",
              _group("external-secrets.io", "v1", ns, "secretstores", PROBE_NAME)),
        Check("patch the SecretIntent CRD definition", "PATCH",
              f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/secretintents.{GROUP}"),
        Check(f"patch a Deployment outside its restart set in {ns}", "PATCH",
              _group("apps", "v1", ns, "deployments", PROBE_NAME)),
        Check(f"patch a Deployment in {unserved_namespace}", "PATCH",
              _group("apps", "v1", unserved_namespace, "deployments", PROBE_NAME)),
        Check(f"create an Event in {unserved_namespace}", "POST", _core(unserved_namespace, "events")),
        Check(f"list Events in consumer namespace {ns}", "GET", _core(ns, "events")),
        Check("list namespaces", "GET", "/api/v1/namespaces"),
        Check("create a SecretIntent", "POST", intents),
        Check("replace a SecretIntent", "PUT", f"{intents}/{PROBE_NAME}"),
        Check("delete a SecretIntent", "DELETE", f"{intents}/{PROBE_NAME}"),
        Check("create a Platform", "POST", _group(GROUP, VERSION, home, "platforms")),
        Check("patch a RotationPolicy (spec)", "PATCH", _group(GROUP, VERSION, home, "rotationpolicies", PROBE_NAME)),
        Check("get another Lease", "GET", _group("coordination.k8s.io", "v1", home, "leases", PROBE_NAME)),
        Check("create a RoleBinding (escalation)", "POST",
              _group("rbac.authorization.k8s.io", "v1", home, "rolebindings")),
        Check("create a Pod in the controller namespace", "POST", _core(home, "pods")),
        Check("mint a token of its own ServiceAccount (the pod's projected token is the login)", "POST",
              _core(home, "serviceaccounts", sa) + "/token"),
        Check("mint a token of another ServiceAccount", "POST",
              _core(home, "serviceaccounts", "default" if sa != "default" else PROBE_NAME) + "/token"),
    ]
    if intent is not None:
        checks.append(Check(f"change SecretIntent {intent}'s spec (RBAC allows patch, admission refuses)",
                            "PATCH", f"{intents}/{quote(intent, safe='')}"))
    return checks


def _body(check: Check, intent: str | None) -> tuple[dict[str, Any] | None, str]:
    if check.method == "PATCH":
        if intent is not None and check.path.endswith(f"/secretintents/{quote(intent, safe='')}"):
            return {"spec": {"purpose": "changed by hand"}}, _MERGE
        return {"metadata": {"annotations": {"chamberlain.dev/rbac-probe": "1"}}}, _MERGE
    if check.method in ("POST", "PUT"):
        return {"metadata": {"name": PROBE_NAME}}, "application/json"
    return None, "application/json"


def rbac_matrix(kube_as_controller: KubeProbe, values: Mapping[str, Any], *, unserved_namespace: str = "kube-system",
                intent: str | None = None) -> RbacMatrix:
    """Make every request of :func:`planned_checks` as the controller and record what the API server answered.
    ``kube_as_controller`` holds a token of the chart's ServiceAccount (a TokenRequest token, as the pod gets)."""
    done = []
    for check in planned_checks(values, unserved_namespace, intent):
        body, content_type = _body(check, intent)
        status = kube_as_controller.request_status(check.method, check.path, body, content_type)
        done.append(Check(check.what, check.method, check.path, status))
    return RbacMatrix(str(values["serviceAccount"]), done)


def token_kubeconfig(server: str, ca_file: Path, token: str, user: str = "chamberlain-controller") -> dict[str, Any]:
    """A kubeconfig that authenticates with a ServiceAccount token (write it 0600: it is a credential)."""
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "chamberlain",
        "clusters": [{"name": "cluster", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "chamberlain", "context": {"cluster": "cluster", "user": user}}],
    }


__all__ = [
    "WHY",
    "ChartValues",
    "Check",
    "RbacMatrix",
    "cluster_values",
    "controller_args",
    "install_objects",
    "lease_name",
    "planned_checks",
    "rbac_matrix",
    "token_kubeconfig",
]
