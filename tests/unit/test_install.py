"""The controller's installation: one source for render's per-cluster objects and the Helm chart.

Pure tests of the builders (RBAC least privilege, the admission policy, the Deployment), the committed chart
against the generator (drift), docs/rbac.md against the Roles, and — with the lab's ``helm`` binary (built from Go
modules; skipped when it is not built) — ``helm lint`` and ``helm template`` with the values render wrote for a
cluster, compared object by object with render's output for that cluster. The RBAC matrix runs here against a
fake probe (counting only); tests/lab/test_chart.py runs it against the real API server.
"""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from chamberlain import install
from chamberlain.intent.loader import load_repository
from chamberlain.lab import builds
from chamberlain.render import RenderedTree, compare_output, render_repository
from chamberlain.render import chart as chart_mod
from chamberlain.render import install as inst
from tests.conftest import EXAMPLES, REPO_ROOT, host_settings

CHART_DIR = REPO_ROOT / chart_mod.DEFAULT_DIR
REPOS = {"acme": EXAMPLES / "acme", "acme-tenancy": EXAMPLES / "acme-tenancy"}


@cache
def rendered(name: str) -> RenderedTree:
    return render_repository(load_repository(REPOS[name]))


def cluster_objects(tree: RenderedTree, cluster: str) -> list[dict[str, Any]]:
    """render's installation objects of one cluster: controller.yaml and the two opt-in parts."""
    objs: list[dict[str, Any]] = []
    for part in ("controller.yaml", "admission/admission.yaml", "monitoring/monitoring.yaml"):
        objs += [d for d in yaml.safe_load_all(tree[f"clusters/{cluster}/{part}"]) if d]
    return objs


def values_of(tree: RenderedTree, cluster: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(tree[f"clusters/{cluster}/chart-values.json"])
    return data


def by_identity(objs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    out = {}
    for obj in objs:
        key = (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        assert key not in out, f"{key} twice"
        out[key] = obj
    return out


def acme_values() -> dict[str, Any]:
    return values_of(rendered("acme"), "dev1")


# ------------------------------------------------------------------------------------------------ RBAC


def roles(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in inst.install_objects(values)["controller"] if o["kind"] in ("Role", "ClusterRole")]


def test_no_cluster_role_and_no_wildcards() -> None:
    objs = [o for part in inst.install_objects(acme_values()).values() for o in part]
    assert not [o for o in objs if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    for role in roles(acme_values()):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
            assert not {"update", "deletecollection", "escalate", "bind", "impersonate"} & set(rule["verbs"]), rule


def test_secrets_only_get_by_name_and_never_in_the_controller_namespace() -> None:
    values = acme_values()
    secret_rules = [(role["metadata"]["namespace"], rule) for role in roles(values) for rule in role["rules"]
                    if "secrets" in rule["resources"]]
    assert secret_rules, "the consumer namespaces carry Secret rules"
    for ns, rule in secret_rules:
        assert rule["verbs"] == ["get"], rule
        assert rule["resourceNames"], rule  # an empty list would grant every name
        assert ns != values["controllerNamespace"]


def test_every_rule_in_a_consumer_namespace_is_by_name() -> None:
    for role in roles(acme_values()):
        if role["metadata"]["name"] == inst.CONSUMER_ROLE:
            assert all(rule.get("resourceNames") for rule in role["rules"]), role["metadata"]


def test_consumer_names_are_the_consumers_of_rotated_and_followed_intents() -> None:
    values = acme_values()
    payments = next(ns for ns in values["rbac"]["namespaces"] if ns["name"] == "payments")
    names = {r["resources"][0]: set(r["resourceNames"]) for r in payments["rules"]}
    # payments-kafka: a derived intent whose producer's rotations the controller follows (controller.external)
    assert names["secrets"] == names["externalsecrets"] == {"payments-db", "registry-pull", "payments-kafka"}
    assert names["deployments"] == {"payments-api", "payments-worker"}


def test_intents_are_never_updated_only_status_and_annotation_patch() -> None:
    rules = inst.controller_rules("chamberlain")
    grants = {(res, verb) for r in rules for res in r["resources"] for verb in r["verbs"]}
    for kind in inst.GUARDED:
        assert (kind, "create") not in grants and (kind, "update") not in grants and (kind, "delete") not in grants
    assert ("secretintents/status", "patch") in grants
    assert ("secretintents", "patch") in grants  # the annotation trigger; the admission policy limits it
    assert ("platforms", "patch") not in grants and ("rotationpolicies", "patch") not in grants


def test_every_grant_has_a_reason_and_the_doc_is_generated() -> None:
    for role in roles(acme_values()):
        for rule in role["rules"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert (resource, verb) in inst.WHY, (resource, verb)
    assert (REPO_ROOT / "docs" / "rbac.md").read_text(encoding="utf-8") == inst.rbac_markdown(), \
        "docs/rbac.md is stale: python -m chamberlain.render.chart --docs docs/rbac.md"


def test_empty_resource_names_are_refused_by_the_values() -> None:
    values = acme_values()
    values["rbac"]["namespaces"][0]["rules"][0]["resourceNames"] = []
    with pytest.raises(ValidationError):
        inst.ChartValues.model_validate(values)


def test_no_token_minting_the_login_is_the_projected_token() -> None:
    rules = [r for role in roles(acme_values()) for r in role["rules"] if r["resources"] == ["serviceaccounts/token"]]
    assert rules == []
    for obj in inst.install_objects(acme_values())["controller"]:
        if obj["kind"] != "Deployment":
            continue
        pod = obj["spec"]["template"]["spec"]
        (projected,) = [v["projected"] for v in pod["volumes"] if "projected" in v]
        assert projected["sources"] == [{"serviceAccountToken": {
            "audience": "vault", "path": inst.LOGIN_TOKEN_FILE, "expirationSeconds": inst.LOGIN_TOKEN_SECONDS}}]
        assert f"--login-token-file={inst.LOGIN_TOKEN_DIR}/{inst.LOGIN_TOKEN_FILE}" in pod["containers"][0]["args"]


def test_leases_per_environment_and_cluster() -> None:
    objs = inst.install_objects(acme_values())["controller"]
    deployments = [o for o in objs if o["kind"] == "Deployment"]
    leases = set()
    for d in deployments:
        args = d["spec"]["template"]["spec"]["containers"][0]["args"]
        leases.add(args[args.index("--lease-name") + 1])
    assert leases == {"chamberlain-dev-dev1", "chamberlain-preview-dev1"}
    lease_rules = [r for o in objs if o["kind"] == "Role" for r in o["rules"] if r["resources"] == ["leases"]]
    assert sorted(n for r in lease_rules for n in r.get("resourceNames", [])) == sorted(leases)


# ------------------------------------------------------------------------------------------ the workload


def test_deployment_is_hardened_with_probes() -> None:
    deployment = next(o for o in inst.install_objects(acme_values())["controller"] if o["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] == "chamberlain"
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["command"] == ["chamberlain", "controller", "run"]
    assert container["args"][0] == "--from-cluster"
    assert "0.0.0.0:9102" in container["args"]


def test_admission_policy_names_gitops_identities_and_spares_status() -> None:
    values = {**acme_values(), "gitops": {"identities": [inst.FLUX_IDENTITY, inst.ARGOCD_IDENTITY]}}
    policy, binding = inst.install_objects(values)["admission"]
    rules = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rules[0]["resources"] == list(inst.GUARDED)  # no /status: the controller's status writes pass
    gitops = next(v for v in policy["spec"]["variables"] if v["name"] == "gitops")["expression"]
    assert inst.FLUX_IDENTITY in gitops and inst.ARGOCD_IDENTITY in gitops
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "chamberlain-system"}
    # Not only spec, labels and annotations: an ownerReference makes the garbage collector delete the intent, a
    # finalizer blocks its deletion (the lab test has the API server refuse both).
    rule = policy["spec"]["validations"][0]["expression"]
    for field in ("finalizers", "ownerReferences"):
        assert f"object.metadata.?{field}.orValue([]) == oldObject.metadata.?{field}.orValue([])" in rule


# ------------------------------------------------------------------------------------------ render layout


def test_render_keeps_optional_parts_out_of_the_kustomization() -> None:
    tree = rendered("acme")
    kustomization = yaml.safe_load(tree["clusters/dev1/kustomization.yaml"])
    assert "controller.yaml" in kustomization["resources"]
    assert not any(r.startswith(("admission", "monitoring")) for r in kustomization["resources"])
    assert yaml.safe_load(tree["clusters/dev1/admission/kustomization.yaml"])["resources"] == ["admission.yaml"]
    kinds = {o["kind"] for o in yaml.safe_load_all(tree["clusters/dev1/monitoring/monitoring.yaml"]) if o}
    assert kinds == {"ServiceMonitor", "PrometheusRule", "ConfigMap"}


# ------------------------------------------------------------------------------------------------ chart


def test_committed_chart_is_the_generator_output() -> None:
    stale = compare_output(RenderedTree(chart_mod.chart_files()), CHART_DIR)
    assert stale.fresh, f"chart is stale (python -m chamberlain.render.chart): {stale}"


def test_values_yaml_is_valid_and_documented() -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
    inst.ChartValues.model_validate(values)
    schema = json.loads((CHART_DIR / "values.schema.json").read_text(encoding="utf-8"))
    assert schema["additionalProperties"] is False
    assert all("description" in p for p in schema["properties"].values())


def test_string_with_references_becomes_printf() -> None:
    refs = chart_mod._Refs()
    values = refs.ref("$.Values")
    text = chart_mod._template_text([{"kind": "X", "metadata": {"name": f"a-{values['b']}-100%"}}], refs)
    assert '{{ (printf "a-%v-100%%" $.Values.b) | toJson }}' in text


def helm() -> Path:
    path = builds.binary(host_settings().lab_cache, "helm")
    if not path.is_file():
        pytest.skip("helm is not built: python -m chamberlain.lab build helm")
    return path


def run_helm(*args: str) -> str:
    proc = subprocess.run([str(helm()), *args], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_helm_lint() -> None:
    out = run_helm("lint", "--strict", str(CHART_DIR), "--set", "cluster=dev1")
    assert "1 chart(s) linted, 0 chart(s) failed" in out


@pytest.mark.parametrize(("repo", "cluster"), [("acme", "dev1"), ("acme", "prod-eu1"), ("acme-tenancy", "dev1")])
def test_helm_template_with_rendered_values_equals_render(repo: str, cluster: str, tmp_path: Path) -> None:
    tree = rendered(repo)
    if f"clusters/{cluster}/chart-values.json" not in tree:
        pytest.skip(f"{repo} has no cluster {cluster}")
    values = tmp_path / "values.json"
    values.write_text(tree[f"clusters/{cluster}/chart-values.json"], encoding="utf-8")
    out = run_helm("template", "chamberlain", str(CHART_DIR), "-f", str(values))
    from_helm = by_identity([d for d in yaml.safe_load_all(out) if d])
    from_render = by_identity(cluster_objects(tree, cluster))
    assert sorted(from_helm) == sorted(from_render)
    for key, obj in from_render.items():
        assert from_helm[key] == obj, key


def test_monitoring_embeds_the_observability_package() -> None:
    from chamberlain import observability

    parts = inst.install_objects(acme_values())["monitoring"]
    rule = next(o for o in parts if o["kind"] == "PrometheusRule")
    assert rule["spec"]["groups"] == observability.alert_groups() and rule["spec"]["groups"]
    dashboard = next(o for o in parts if o["kind"] == "ConfigMap")
    assert dashboard["data"]["chamberlain.json"] == observability.dashboard_json()
    assert json.loads((CHART_DIR / chart_mod.ALERT_GROUPS_FILE).read_text()) == observability.alert_groups()


def test_helm_template_of_the_defaults_equals_the_builders() -> None:
    out = run_helm("template", "chamberlain", str(CHART_DIR))
    from_helm = by_identity([d for d in yaml.safe_load_all(out) if d])
    parts = inst.install_objects(inst.chart_defaults())
    assert from_helm == by_identity([o for part in parts.values() for o in part])


# ------------------------------------------------------------------------------------------------ matrix


class FakeProbe:
    """Answers 403 to everything but the paths given (a fake: the real API server is tests/lab/test_chart.py)."""

    def __init__(self, allowed: frozenset[str] = frozenset()) -> None:
        self.allowed = allowed
        self.calls: list[tuple[str, str]] = []

    def request_status(self, method: str, path: str, body: Any = None, content_type: str = "") -> int:
        self.calls.append((method, path))
        return 200 if path in self.allowed else 403


def test_rbac_matrix_counts() -> None:
    probe = FakeProbe()
    matrix = install.rbac_matrix(probe, acme_values(), intent="payments-db")
    report = matrix.as_dict()
    assert report["rbac"] == "chart" and report["serviceAccount"] == "chamberlain"
    assert report["deniedChecks"] == report["deniedOk"] == len(probe.calls) >= 20
    leaked = install.rbac_matrix(FakeProbe(frozenset({"/api/v1/namespaces"})), acme_values())
    assert leaked.denied_ok == len(leaked.checks) - 1 and [c.what for c in leaked.failures] == ["list namespaces"]


def test_matrix_probes_a_secret_outside_the_named_set() -> None:
    values = acme_values()
    checks = install.planned_checks(values)
    first = values["rbac"]["namespaces"][0]
    named = {n for r in first["rules"] for n in r["resourceNames"]}
    gets = [c for c in checks if c.method == "GET" and f"/namespaces/{first['name']}/secrets/" in c.path]
    assert gets and all(c.path.rsplit("/", 1)[1] not in named for c in gets)


def test_each_consumer_namespace_may_create_events_and_nothing_more_of_them() -> None:
    """The retirement Events go on the ExternalSecret in the consumer namespace (controller/status.py); the
    grant is create only, in a Role of its own (the consumer Role's rules are all by name)."""
    values = acme_values()
    served = {ns["name"] for ns in values["rbac"]["namespaces"]}
    events = {role["metadata"]["namespace"]: role["rules"] for role in roles(values)
              if role["metadata"]["name"] == inst.CONSUMER_EVENTS_ROLE}
    assert set(events) == served
    assert all(rules == [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]
               for rules in events.values())
    bindings = [o for o in inst.install_objects(values)["controller"] if o["kind"] == "RoleBinding"
                and o["metadata"]["name"] == inst.CONSUMER_EVENTS_ROLE]
    assert {b["metadata"]["namespace"] for b in bindings} == served
    assert all(b["subjects"] == [{"kind": "ServiceAccount", "name": values["serviceAccount"],
                                  "namespace": values["controllerNamespace"]}] for b in bindings)
