"""The controller's installation objects, from one source: render writes them per cluster, the Helm chart is
generated from the same builders (:mod:`.chart`).

Belongs here: the chart's values (:class:`ChartValues`, documented; its JSON schema is ``values.schema.json``),
the values a rendered cluster needs (:func:`cluster_values`: its environments, and the names the controller may
touch in each consumer namespace), and the builders of every object — ServiceAccount, least-privilege Roles and
bindings, per environment a Deployment (its own Lease), Service, PodDisruptionBudget and NetworkPolicy, the
ValidatingAdmissionPolicy that keeps chamberlain's resources GitOps-only, ServiceMonitor, PrometheusRule and the
Grafana dashboard's ConfigMap (rules and dashboard from :mod:`chamberlain.observability`).
Pure: plain dicts in, plain dicts out. Not here: files and directories (:mod:`.layout`, :mod:`.chart`).

One source, two outputs: each builder reads its inputs only by key (``values["image"]["tag"]``) and composes
strings with f-strings. :mod:`.chart` calls the same builders with references in place of values and turns each
reference into a Go template expression, so a Helm template cannot say anything the builder does not.
Conditionals and loops stay in :func:`install_objects` (and the chart's template headers), never in a builder.

RBAC is derived from the calls the controller makes (``chamberlain.kube.client`` and the controller): every rule
carries its reason in :data:`WHY`, and ``docs/rbac.md`` is generated from the same rules (:func:`rbac_markdown`).
Secrets: ``get`` only, only by ``resourceNames`` (the consumer Secrets, whose version-marker annotation
propagation reads as PartialObjectMetadata, never the data), never ``list`` or ``watch``. RBAC cannot make a
``get`` metadata-only; the narrow name list is what keeps the exposure small.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chamberlain import __version__, observability
from chamberlain import wellknown as wk
from chamberlain.intent.model import GROUP
from chamberlain.render import naming
from chamberlain.render.topology import Topology

Manifest = dict[str, Any]

COMPONENT = "chamberlain-controller"
CONSUMER_ROLE = "chamberlain-controller-consumers"  # in each consumer namespace (may be the controller's own)
# Also in each consumer namespace, apart from CONSUMER_ROLE because every rule of that one is by name (values
# schema) and RBAC cannot name an Event not yet created.
CONSUMER_EVENTS_ROLE = "chamberlain-controller-consumer-events"
# In each producer namespace (a PushSecret publishes a derived or config intent there): the controller watches the
# PushSecrets' status to follow a producer-side rotation. A watch cannot be limited by name; a PushSecret holds no
# value (names, keys, status), and the producer Secret itself stays out of reach.
PRODUCER_ROLE = "chamberlain-controller-producers"
METRICS_PORT_NAME, WEBHOOK_PORT_NAME = "metrics", "webhook"
FLUX_IDENTITY = "system:serviceaccount:flux-system:kustomize-controller"
ARGOCD_IDENTITY = "system:serviceaccount:argocd:argocd-application-controller"
# Annotations anyone may change on a SecretIntent: the annotation trigger (a person asks for a rotation) and the
# controller's record of what it did with the request. Everything else is the GitOps controller's.
TRIGGER_ANNOTATIONS = (wk.ANNOTATION_ROTATE, wk.PREFIX + "rotate-handled", wk.PREFIX + "rotate-result")
GUARDED = ("secretintents", "platforms", "rotationpolicies")
# Deleting a namespace deletes what is in it, through the API (and so through admission): these may delete, or the
# controller namespace would never finish terminating.
CLEANUP_IDENTITIES = ("system:serviceaccount:kube-system:namespace-controller",
                      "system:serviceaccount:kube-system:generic-garbage-collector", "system:kube-controller-manager")


# ---------------------------------------------------------------------------------------------------- values


class _Values(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Image(_Values):
    repository: str = Field("ghcr.io/chamberlain-dev/chamberlain", description="Image repository (no image is "
                            "published yet: build deploy/Dockerfile and push it to your registry).")
    tag: str = Field(__version__, description="Image tag.")
    pull_policy: str = Field("IfNotPresent", alias="pullPolicy", description="imagePullPolicy.",
                             pattern="^(Always|IfNotPresent|Never)$")


class Environment(_Values):
    name: str = Field(description="An environment of the Platform hosted on this cluster: one Deployment, one "
                      "Lease (chamberlain-<env>-<cluster>), one leader.", pattern="^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class Metrics(_Values):
    # A pod listens on its own IP: every interface, or the probes and Prometheus cannot reach it.
    address: str = Field("0.0.0.0", description="Listen address of /metrics, /healthz and /readyz "  # noqa: S104
                         "(--metrics-address host part).")
    port: int = Field(9102, ge=1, le=65535, description="Port of /metrics, /healthz and /readyz.")


class Webhook(_Values):
    port: int = Field(8443, ge=1, le=65535, description="Port of POST /v1/rotate.")
    secret_name: str = Field("chamberlain-webhook", alias="secretName", description="Secret holding the webhook "
                             "HMAC key under `key`, mounted read-only (create it before the pods can start: "
                             "kubectl create secret generic chamberlain-webhook --from-file=key=FILE).")


class Resources(_Values):
    requests: dict[str, str] = Field(default_factory=lambda: {"cpu": "50m", "memory": "128Mi"},
                                     description="Container resource requests.")
    limits: dict[str, str] = Field(default_factory=lambda: {"memory": "512Mi"}, description="Container limits.")


class Rule(_Values):
    api_groups: list[str] = Field(alias="apiGroups", description="API groups.")
    resources: list[str] = Field(description="Resources.")
    verbs: list[str] = Field(description="Verbs.")
    resource_names: list[str] = Field(alias="resourceNames", min_length=1, description="Object names: never "
                                      "empty (an empty list would grant every name).")


class NamespaceAccess(_Values):
    name: str = Field(description="A consumer namespace the controller serves.")
    rules: list[Rule] = Field(min_length=1, description="What the controller may do there, by name: "
                              "ExternalSecrets (patch: force-sync), consumer Secrets (get: metadata), "
                              "restart targets (get, patch).")


class Rbac(_Values):
    namespaces: list[NamespaceAccess] = Field(default_factory=list, description="Consumer namespaces and the "
                                              "names the controller may touch there (render writes them).")
    producers: list[str] = Field(default_factory=list, description="Producer namespaces: the controller watches "
                                 "their PushSecrets (get, list, watch) to follow producer-side rotations.")


class GitOps(_Values):
    identities: list[str] = Field(default_factory=lambda: [FLUX_IDENTITY], min_length=1, description="Users "
                                  "allowed to create, change and delete SecretIntents, Platforms and "
                                  f"RotationPolicies (Flux: {FLUX_IDENTITY}; Argo CD: {ARGOCD_IDENTITY}).")


class Toggle(_Values):
    enabled: bool = Field(True, description="Render this object.")


class Monitoring(_Values):
    service_monitor: Toggle = Field(default_factory=lambda: Toggle(enabled=False), alias="serviceMonitor",
                                    description="A ServiceMonitor per environment (needs the Prometheus "
                                    "Operator's CRDs).")
    prometheus_rule: Toggle = Field(default_factory=lambda: Toggle(enabled=False), alias="prometheusRule",
                                    description="The alert rules (needs the Prometheus Operator's CRDs).")
    dashboard: Toggle = Field(default_factory=lambda: Toggle(enabled=False), description="The Grafana "
                              "dashboard as a ConfigMap labelled grafana_dashboard (Grafana's sidecar loads it).")


class ChartValues(_Values):
    """The chart's values: everything an installation chooses. Render writes one set per cluster."""

    cluster: str = Field(description="The cluster this release runs on (a cluster of the Platform).")
    controller_namespace: str = Field("chamberlain-system", alias="controllerNamespace", description="Namespace "
                                      "of the controller, its Leases, RotationRuns and the intents.")
    service_account: str = Field("chamberlain", alias="serviceAccount", description="The controller's "
                                 "ServiceAccount: the identity the authority's orchestrator role is bound to.")
    environments: list[Environment] = Field(min_length=1, description="Environments hosted on this cluster.")
    replicas: int = Field(2, ge=1, description="Replicas per environment (one leads, the others wait).")
    image: Image = Field(default_factory=Image, description="The controller image.")
    metrics: Metrics = Field(default_factory=Metrics, description="Metrics and health endpoints.")
    webhook: Webhook = Field(default_factory=Webhook, description="The rotation webhook.")
    resources: Resources = Field(default_factory=Resources, description="Container resources.")
    rbac: Rbac = Field(default_factory=Rbac, description="Least-privilege access in consumer namespaces.")
    gitops: GitOps = Field(default_factory=GitOps, description="The GitOps controller's identity.")
    admission: Toggle = Field(default_factory=Toggle, description="The ValidatingAdmissionPolicy that lets only "
                              "the GitOps identities write chamberlain's resources.")
    monitoring: Monitoring = Field(default_factory=Monitoring, description="Prometheus Operator objects.")
    network_policy: Toggle = Field(default_factory=Toggle, alias="networkPolicy", description="A NetworkPolicy "
                                   "admitting only the metrics and webhook ports.")


def chart_defaults() -> dict[str, Any]:
    """values.yaml: the defaults, with an example cluster and environment to replace."""
    example = ChartValues(cluster="my-cluster", environments=[Environment(name="dev")])
    return example.model_dump(by_alias=True, mode="json")


def values_schema() -> dict[str, Any]:
    return ChartValues.model_json_schema(by_alias=True, mode="validation")


# ------------------------------------------------------------------------------- what the controller calls


def lease_name(environment: str, cluster: str) -> str:
    """The leader Lease of one environment on one cluster: two environments on one cluster each get a leader."""
    return f"chamberlain-{environment}-{cluster}"


def deployment_name(environment: str) -> str:
    return f"chamberlain-{environment}"


CONTROLLER_COMMAND = ("chamberlain", "controller", "run")  # the image's ENTRYPOINT too (deploy/Dockerfile)


# The authority login presents a projected ServiceAccount token with the `vault` audience, which the kubelet
# mounts and rotates: the controller needs no right to mint tokens (no serviceaccounts/token create).
LOGIN_TOKEN_DIR = "/var/run/secrets/chamberlain/vault"  # noqa: S105 - a path, not a credential
LOGIN_TOKEN_FILE = "token"  # noqa: S105 - a file name
LOGIN_TOKEN_SECONDS = 3600


def controller_args(environment: str, values: Mapping[str, Any]) -> list[str]:
    """The container's arguments to :data:`CONTROLLER_COMMAND`: the one place the chart names ``controller
    run``'s flags. The command is set explicitly as well, so an image with another entry point still runs it."""
    metrics, webhook = values["metrics"], values["webhook"]
    return [
        "--from-cluster",
        "--environment", environment,
        "--cluster", values["cluster"],
        "--lease-name", lease_name(environment, values["cluster"]),
        "--metrics-address", f"{metrics['address']}:{metrics['port']}",
        f"--webhook-port={webhook['port']}",  # one argument: a number alone would leave the chart as a number
        f"--login-token-file={LOGIN_TOKEN_DIR}/{LOGIN_TOKEN_FILE}",
    ]


def _rule(groups: list[str], resources: list[str], verbs: list[str], names: Iterable[str] = ()) -> Manifest:
    rule: Manifest = {"apiGroups": groups, "resources": resources, "verbs": verbs}
    names = list(names)
    if names:
        rule["resourceNames"] = names
    return rule


# Why each rule exists: (resource, verb) -> the call that needs it. docs/rbac.md is this table.
WHY: Mapping[tuple[str, str], str] = {
    ("leases", "create"): "LeaderElector creates its Lease the first time (create cannot be limited by name)",
    ("leases", "get"): "LeaderElector reads its Lease every tick (KubeClient.get_lease)",
    ("leases", "patch"): "LeaderElector renews, takes over or releases with a resourceVersion precondition "
                         "(KubeClient.replace_lease is a merge patch)",
    ("rotationruns", "create"): "RunPublisher mirrors a run; the webhook persists a request (RunObjectStore)",
    ("rotationruns", "get"): "RunPublisher reads back an adopted run's conditions; RunObjectStore checks a "
                             "request id",
    ("rotationruns", "list"): "RunObjectStore lists persisted webhook requests (label selector)",
    ("rotationruns", "watch"): "--from-cluster: persisted webhook requests are watched, not listed every tick "
                               "(controller.watched.WatchedRequests)",
    ("rotationruns", "delete"): "pruning finished RotationRuns beyond the history limit "
                                "(KubeClient.delete_custom_object)",
    ("rotationruns/status", "patch"): "RunPublisher and RunObjectStore set a run's status",
    ("secretintents", "get"): "AnnotationTrigger re-reads an intent before clearing its rotate annotation",
    ("secretintents", "list"): "AnnotationTrigger and the intent source (--from-cluster) list intents, in pages",
    ("secretintents", "watch"): "the intent source watches intents from the list's resourceVersion",
    ("secretintents", "patch"): "AnnotationTrigger clears chamberlain.dev/rotate and records rotate-handled "
                                "(the admission policy refuses any other change)",
    ("secretintents/status", "patch"): "SecretIntent status: phase, conditions, versions, consumers in sync",
    ("platforms", "list"): "the intent source (--from-cluster) lists the Platform",
    ("platforms", "watch"): "the intent source watches the Platform",
    ("rotationpolicies", "list"): "the intent source lists RotationPolicies",
    ("rotationpolicies", "watch"): "the intent source watches RotationPolicies",
    ("events", "create"): "Events on RotationRuns and SecretIntents (KubeClient.create_event); in a consumer "
                          "namespace, the retirement Events on a retiring secret's ExternalSecret",
    ("externalsecrets", "patch"): "propagation forces a refresh: the force-sync annotation "
                                  "(KubeClient.annotate_external_secret)",
    ("secrets", "get"): "propagation reads a consumer Secret's version-marker annotation as PartialObjectMetadata "
                        "(never its data; RBAC cannot tell the two apart, hence resourceNames)",
    ("pushsecrets", "get"): "an observed external rotation reads a PushSecret's status (controller.external)",
    ("pushsecrets", "list"): "the PushSecret watch lists a producer namespace first (controller.external)",
    ("pushsecrets", "watch"): "the PushSecret watch: a producer's new version, or a declared key missing "
                              "(controller.external)",
    ("deployments", "get"): "restart reads the pod template's restart annotations",
    ("deployments", "patch"): "restart patches the pod template (what kubectl rollout restart does)",
    ("statefulsets", "get"): "restart reads the pod template's restart annotations",
    ("statefulsets", "patch"): "restart patches the pod template",
    ("daemonsets", "get"): "restart reads the pod template's restart annotations",
    ("daemonsets", "patch"): "restart patches the pod template",
}


def controller_rules(service_account: str) -> list[Manifest]:
    """The controller namespace: chamberlain's own resources, Events, and creating its Lease. No token minting:
    the authority login presents the pod's projected token (:data:`LOGIN_TOKEN_DIR`)."""
    return [
        _rule(["coordination.k8s.io"], ["leases"], ["create"]),
        _rule([GROUP], ["rotationruns"], ["create", "delete", "get", "list", "watch"]),
        _rule([GROUP], ["rotationruns/status"], ["patch"]),
        _rule([GROUP], ["secretintents"], ["get", "list", "patch", "watch"]),
        _rule([GROUP], ["platforms", "rotationpolicies"], ["list", "watch"]),
        _rule([GROUP], ["secretintents/status"], ["patch"]),
        _rule([""], ["events"], ["create"]),
    ]


def lease_rules(lease: str) -> list[Manifest]:
    return [_rule(["coordination.k8s.io"], ["leases"], ["get", "patch"], [lease])]


_WORKLOAD_RESOURCES = {"Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets"}


def consumer_rules(external_secrets: Iterable[str], secrets: Iterable[str],
                   workloads: Iterable[tuple[str, str]]) -> list[Manifest]:
    """One consumer namespace: the ExternalSecrets it reads through, their Secrets, the restart targets, each
    by name. A kind without names gets no rule (an empty ``resourceNames`` would grant every name)."""
    rules = [_rule(["external-secrets.io"], ["externalsecrets"], ["patch"], sorted(set(external_secrets))),
             _rule([""], ["secrets"], ["get"], sorted(set(secrets)))]
    by_kind: dict[str, set[str]] = {}
    for kind, name in workloads:
        by_kind.setdefault(_WORKLOAD_RESOURCES[kind], set()).add(name)
    rules += [_rule(["apps"], [resource], ["get", "patch"], sorted(by_kind[resource]))
              for resource in sorted(by_kind)]
    return [r for r in rules if r.get("resourceNames")]


def cluster_values(topo: Topology, cluster: str, access: ClusterAccess | None = None) -> dict[str, Any]:
    """The chart values of one rendered cluster: its environments and, per consumer namespace, the names the
    controller may touch — the consumers of the intents it rotates there (runtime mount) and of the derived and
    config intents whose producers' rotations it follows, as ``rotation.manual.consumers_of`` addresses them (the
    ExternalSecret and the Secret are named after the consumer's secret; workloads are in the consumer's
    namespace) — and the producer namespaces whose PushSecrets it watches. ``access``: :func:`cluster_access`
    of the same, when the caller has it."""
    platform = topo.platform
    access = access if access is not None else cluster_access(topo, cluster)
    values = ChartValues(
        cluster=cluster,
        controller_namespace=naming.controller_namespace(platform),
        service_account=naming.controller_service_account(platform),
        environments=[Environment(name=e) for e in topo.cluster_environments[cluster]],
        rbac=Rbac(namespaces=[NamespaceAccess.model_validate(
            {"name": ns, "rules": consumer_rules(names, names, workloads)}) for ns, (names, workloads)
            in sorted(access.namespaces.items())], producers=sorted(access.producers)),
        admission=Toggle(enabled=True),
        monitoring=Monitoring(service_monitor=Toggle(enabled=True), prometheus_rule=Toggle(enabled=True),
                              dashboard=Toggle(enabled=True)),
    )
    return values.model_dump(by_alias=True, mode="json")


@dataclass(frozen=True)
class ClusterAccess:
    """What a cluster's chart values are made of besides the Platform: per consumer namespace the Secret names
    and the workloads (kind, name) of its consumers, and the producer namespaces."""

    namespaces: dict[str, tuple[set[str], set[tuple[str, str]]]]
    producers: set[str]

    def lines(self) -> list[str]:
        """The same, as sorted text (an incremental render's key, :mod:`chamberlain.render.incremental`)."""
        out = [f"producers {' '.join(sorted(self.producers))}"]
        for ns, (names, workloads) in sorted(self.namespaces.items()):
            out.append(f"reads {ns} {' '.join(sorted(names))} / {' '.join(f'{k}/{n}' for k, n in sorted(workloads))}")
        return out


def cluster_access(topo: Topology, cluster: str) -> ClusterAccess:
    access: dict[str, tuple[set[str], set[tuple[str, str]]]] = {}
    producers: set[str] = set()
    for unit in topo.units:
        if unit.cluster != cluster:
            continue
        producers.update(unit.publishes)
        for ns, reads in unit.reads.items():
            # derived and config too: their producers rotate them, the controller follows (controller.external)
            names, workloads = access.setdefault(ns, (set(), set()))
            for read in reads:
                consumer = read.consumer
                names.add(consumer.secret_name)
                if consumer.restart:
                    workloads.update([(w.kind, w.name) for w in consumer.restart])
    return ClusterAccess(access, producers)


# ---------------------------------------------------------------------------------------------------- builders


def _labels(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**naming.common_labels(), "app.kubernetes.io/name": COMPONENT, **(extra or {})}


def _selector(environment: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": COMPONENT, wk.LABEL_ENVIRONMENT: environment}


def _meta(name: str, namespace: str | None, wave: int, labels: Mapping[str, str] | None = None) -> Manifest:
    meta: Manifest = {"name": name, "labels": _labels(labels), "annotations": naming.wave(wave)}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def service_account(v: Mapping[str, Any]) -> Manifest:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": _meta(v["serviceAccount"], v["controllerNamespace"], naming.WAVE_IDENTITY,
                              {wk.LABEL_ROLE: naming.ORCHESTRATOR_ROLE}),
            "automountServiceAccountToken": True}


def _role(name: str, namespace: str, rules: Any) -> Manifest:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": _meta(name, namespace, naming.WAVE_IDENTITY), "rules": rules}


def _binding(v: Mapping[str, Any], name: str, namespace: str) -> Manifest:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": _meta(name, namespace, naming.WAVE_IDENTITY),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": v["serviceAccount"],
                          "namespace": v["controllerNamespace"]}]}


def controller_role(v: Mapping[str, Any]) -> list[Manifest]:
    ns = v["controllerNamespace"]
    return [_role(COMPONENT, ns, controller_rules(v["serviceAccount"])), _binding(v, COMPONENT, ns)]


def lease_role(v: Mapping[str, Any], env: Mapping[str, Any]) -> list[Manifest]:
    ns, name = v["controllerNamespace"], f"{COMPONENT}-lease-{env['name']}"
    return [_role(name, ns, lease_rules(lease_name(env["name"], v["cluster"]))), _binding(v, name, ns)]


def consumer_events_rules() -> list[Manifest]:
    """A retirement warns the consuming team where it looks: an Event on its ExternalSecret
    (controller/status.py). Create only: no get, list, patch or delete of anyone's Events."""
    return [_rule([""], ["events"], ["create"])]


def consumer_role(v: Mapping[str, Any], access: Mapping[str, Any]) -> list[Manifest]:
    ns = access["name"]
    return [_role(CONSUMER_ROLE, ns, access["rules"]), _binding(v, CONSUMER_ROLE, ns),
            _role(CONSUMER_EVENTS_ROLE, ns, consumer_events_rules()), _binding(v, CONSUMER_EVENTS_ROLE, ns)]


def producer_rules() -> list[Manifest]:
    """One producer namespace: the PushSecrets' status (no Secret, no value)."""
    return [_rule(["external-secrets.io"], ["pushsecrets"], ["get", "list", "watch"])]


def producer_role(v: Mapping[str, Any], ns: Any) -> list[Manifest]:
    return [_role(PRODUCER_ROLE, ns, producer_rules()), _binding(v, PRODUCER_ROLE, ns)]


def deployment(v: Mapping[str, Any], env: Mapping[str, Any]) -> Manifest:
    name, selector = deployment_name(env["name"]), _selector(env["name"])
    probe = {"httpGet": {"path": "/healthz", "port": METRICS_PORT_NAME}, "periodSeconds": 10, "failureThreshold": 3}
    # Readiness never depends on leadership: a follower serves the webhook (it persists requests) and metrics.
    ready = {"httpGet": {"path": "/readyz", "port": METRICS_PORT_NAME}, "periodSeconds": 5, "failureThreshold": 2}
    container = {
        "name": "controller",
        "image": f"{v['image']['repository']}:{v['image']['tag']}",
        "imagePullPolicy": v["image"]["pullPolicy"],
        "command": list(CONTROLLER_COMMAND),
        "args": controller_args(env["name"], v),
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},  # its Lease identity
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "CHAMBERLAIN_WEBHOOK_KEY_FILE", "value": "/etc/chamberlain/webhook/key"},
        ],
        "ports": [{"name": METRICS_PORT_NAME, "containerPort": v["metrics"]["port"], "protocol": "TCP"},
                  {"name": WEBHOOK_PORT_NAME, "containerPort": v["webhook"]["port"], "protocol": "TCP"}],
        "livenessProbe": probe,
        "readinessProbe": ready,
        "resources": v["resources"],
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir, the only writable path
                         {"name": "webhook", "mountPath": "/etc/chamberlain/webhook", "readOnly": True},
                         {"name": "vault-token", "mountPath": LOGIN_TOKEN_DIR, "readOnly": True}],
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(name, v["controllerNamespace"], naming.WAVE_SYNC, {wk.LABEL_ENVIRONMENT: env["name"]}),
        "spec": {
            "replicas": v["replicas"],
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": _labels({wk.LABEL_ENVIRONMENT: env["name"]})},
                "spec": {
                    "serviceAccountName": v["serviceAccount"],
                    "automountServiceAccountToken": True,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                        "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    # SIGTERM stops the tick between run steps; a batch whose restart pass has begun finishes its
                    # restarts first (seconds per thousand runs), then the RotationRun states drain (10 s at most)
                    "terminationGracePeriodSeconds": 60,
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                                # Not optional: without its key the controller refuses to serve the webhook,
                                # and a pod waiting for the Secret says so in an Event, without a restart loop.
                                {"name": "webhook", "secret": {"secretName": v["webhook"]["secretName"],
                                                               "optional": False, "defaultMode": 256}},
                                {"name": "vault-token", "projected": {"defaultMode": 256, "sources": [
                                    {"serviceAccountToken": {"audience": "vault", "path": LOGIN_TOKEN_FILE,
                                                             "expirationSeconds": LOGIN_TOKEN_SECONDS}}]}}],
                    # Two replicas on two nodes: a node drain never takes both.
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                                           "labelSelector": {"matchLabels": selector}}}]}},
                },
            },
        },
    }


def service(v: Mapping[str, Any], env: Mapping[str, Any]) -> Manifest:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _meta(deployment_name(env["name"]), v["controllerNamespace"], naming.WAVE_SYNC,
                              {wk.LABEL_ENVIRONMENT: env["name"]}),
            "spec": {"selector": _selector(env["name"]), "ports": [
                {"name": METRICS_PORT_NAME, "port": v["metrics"]["port"], "targetPort": METRICS_PORT_NAME,
                 "protocol": "TCP"},
                {"name": WEBHOOK_PORT_NAME, "port": v["webhook"]["port"], "targetPort": WEBHOOK_PORT_NAME,
                 "protocol": "TCP"}]}}


def disruption_budget(v: Mapping[str, Any], env: Mapping[str, Any]) -> Manifest:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": _meta(deployment_name(env["name"]), v["controllerNamespace"], naming.WAVE_SYNC,
                              {wk.LABEL_ENVIRONMENT: env["name"]}),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _selector(env["name"])}}}


def network_policy(v: Mapping[str, Any], env: Mapping[str, Any]) -> Manifest:
    """Ingress to the metrics and webhook ports only. Egress stays open: the API server's and the authority's
    addresses are the cluster's, not the chart's, to know."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": _meta(deployment_name(env["name"]), v["controllerNamespace"], naming.WAVE_SYNC,
                              {wk.LABEL_ENVIRONMENT: env["name"]}),
            "spec": {"podSelector": {"matchLabels": _selector(env["name"])}, "policyTypes": ["Ingress"],
                     "ingress": [{"ports": [{"port": v["metrics"]["port"], "protocol": "TCP"},
                                            {"port": v["webhook"]["port"], "protocol": "TCP"}]}]}}


def service_monitor(v: Mapping[str, Any], env: Mapping[str, Any]) -> Manifest:
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": _meta(deployment_name(env["name"]), v["controllerNamespace"], naming.WAVE_SYNC,
                              {wk.LABEL_ENVIRONMENT: env["name"]}),
            "spec": {"selector": {"matchLabels": _selector(env["name"])},
                     "endpoints": [{"port": METRICS_PORT_NAME, "path": "/metrics", "interval": "30s"}]}}


def prometheus_rule(v: Mapping[str, Any], groups: Any) -> Manifest:
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": _meta(COMPONENT, v["controllerNamespace"], naming.WAVE_SYNC),
            "spec": {"groups": groups}}


def alert_groups() -> list[Any]:
    """The PrometheusRule groups (:mod:`chamberlain.observability`, their one source)."""
    return observability.alert_groups()


def dashboard_text() -> str:
    """The Grafana dashboard as JSON text (:mod:`chamberlain.observability`)."""
    return observability.dashboard_json()


def dashboard_config_map(v: Mapping[str, Any], text: Any) -> Manifest:
    """The dashboard for Grafana's sidecar, which loads every ConfigMap labelled ``grafana_dashboard``."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _meta(f"{COMPONENT}-dashboard", v["controllerNamespace"], naming.WAVE_SYNC,
                              {"grafana_dashboard": "1"}),
            "data": {"chamberlain.json": text}}


def _cel_list(items: Iterable[str]) -> str:
    return json.dumps(list(items), separators=(",", ":"))


def admission_policy_name(v: Mapping[str, Any]) -> str:
    return f"chamberlain-gitops-only-{v['controllerNamespace']}"


def admission_policy(v: Mapping[str, Any], identities: str) -> list[Manifest]:
    """Only the GitOps identities create, change or delete SecretIntents, Platforms and RotationPolicies in the
    controller namespace, so nothing skips ``validate`` (Kubernetes' own namespace and garbage collectors may
    delete). Anyone allowed by RBAC may still change the trigger
    annotations (a person asking for a rotation; the controller recording what it did) when nothing else changes.
    Status is a subresource this policy does not match, so the controller's status writes pass.

    ``identities``: the CEL list literal of the allowed user names (``json.dumps`` of the list; the chart
    writes ``toJson`` of the value, the same text)."""
    name = admission_policy_name(v)
    # Spelled as prefix + suffix: the rotate annotation's full name anywhere in a committed manifest is what
    # CH074 refuses (it would be an endless trigger), and this policy names it without setting it.
    suffixes = _cel_list(a.removeprefix(wk.PREFIX) for a in TRIGGER_ANNOTATIONS)
    trigger = f"{suffixes}.map(s, {json.dumps(wk.PREFIX)} + s)"
    kept = ("variables.newAnnotations.all(k, k in variables.trigger || "
            "(k in variables.oldAnnotations && variables.oldAnnotations[k] == variables.newAnnotations[k])) && "
            "variables.oldAnnotations.all(k, k in variables.trigger || k in variables.newAnnotations)")
    # An ownerReference (even to a made-up uid) makes the garbage collector delete the intent, and a finalizer
    # keeps GitOps from deleting it: both are changes only GitOps makes. The garbage collector itself removes
    # the finalizers of a foreground deletion, so the cleanup identities may change these.
    bound = " && ".join(f"object.metadata.?{f}.orValue([]) == oldObject.metadata.?{f}.orValue([])"
                        for f in ("finalizers", "ownerReferences"))
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": _meta(name, None, naming.WAVE_SYNC),
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": [GROUP], "apiVersions": ["*"],
                                                    "operations": ["CREATE", "UPDATE", "DELETE"],
                                                    "resources": list(GUARDED)}]},
            "variables": [
                {"name": "gitops", "expression": f"request.userInfo.username in {identities}"},
                {"name": "cleanup", "expression": f"request.userInfo.username in {_cel_list(CLEANUP_IDENTITIES)}"},
                {"name": "trigger", "expression": trigger},
                {"name": "newAnnotations", "expression":
                    "request.operation == 'UPDATE' ? object.metadata.?annotations.orValue({}) : {}"},
                {"name": "oldAnnotations", "expression":
                    "request.operation == 'UPDATE' ? oldObject.metadata.?annotations.orValue({}) : {}"},
            ],
            "validations": [{
                "expression": "variables.gitops || (request.operation == 'DELETE' && variables.cleanup) || "
                              "(request.operation == 'UPDATE' && "
                              "object.spec == oldObject.spec && "
                              "object.metadata.?labels.orValue({}) == oldObject.metadata.?labels.orValue({}) && "
                              f"{kept} && (variables.cleanup || ({bound})))",
                "reason": "Forbidden",
                "message": "only the GitOps controller may create, change or delete chamberlain's resources: "
                           "commit the change to Git, where `chamberlain validate` checks it (the rotate "
                           "annotation stays open to anyone RBAC allows)",
            }],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": _meta(name, None, naming.WAVE_SYNC),
        "spec": {"policyName": name, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {
                     "kubernetes.io/metadata.name": v["controllerNamespace"]}}}},
    }
    return [policy, binding]


# ---------------------------------------------------------------------------------------------------- assembly


def install_objects(values: Mapping[str, Any], groups: list[Any] | None = None,
                    dashboard: str | None = None) -> dict[str, list[Manifest]]:
    """Every object of one installation, by part: ``controller`` (identity, RBAC, workloads; what GitOps applies
    with the cluster), ``admission`` and ``monitoring`` (optional parts). ``values`` are validated first."""
    v = ChartValues.model_validate(values).model_dump(by_alias=True, mode="json")
    parts: dict[str, list[Manifest]] = {"controller": [service_account(v)], "admission": [], "monitoring": []}
    parts["controller"] += controller_role(v)
    for env in v["environments"]:
        parts["controller"] += lease_role(v, env)
    for access in v["rbac"]["namespaces"]:
        parts["controller"] += consumer_role(v, access)
    for ns in v["rbac"]["producers"]:
        parts["controller"] += producer_role(v, ns)
    for env in v["environments"]:
        parts["controller"] += [deployment(v, env), service(v, env), disruption_budget(v, env)]
        if v["networkPolicy"]["enabled"]:
            parts["controller"].append(network_policy(v, env))
        if v["monitoring"]["serviceMonitor"]["enabled"]:
            parts["monitoring"].append(service_monitor(v, env))
    if v["monitoring"]["prometheusRule"]["enabled"]:
        parts["monitoring"].append(prometheus_rule(v, alert_groups() if groups is None else groups))
    if v["monitoring"]["dashboard"]["enabled"]:
        parts["monitoring"].append(dashboard_config_map(v, dashboard_text() if dashboard is None else dashboard))
    if v["admission"]["enabled"]:
        parts["admission"] += admission_policy(v, _cel_list(v["gitops"]["identities"]))
    return parts


_DOC_HEADER = """# The controller's RBAC

Generated from `chamberlain.render.install` (the Roles that `chamberlain render` writes to
`clusters/<cluster>/controller.yaml` and the Helm chart installs); `tests/unit/test_install.py` fails when this
file and the Roles differ. Regenerate with `python -m chamberlain.render.chart --docs docs/rbac.md`.

Every grant is a namespaced `Role`: the controller has no ClusterRole at all. Four kinds of Role:

- `chamberlain-controller` in the controller namespace: chamberlain's own resources, Events and creating its
  Lease. No token minting: the authority login presents the pod's projected ServiceAccount token (audience
  `vault`, mounted at `/var/run/secrets/chamberlain/vault/token`, rotated by the kubelet);
- `chamberlain-controller-lease-<env>` in the controller namespace: its own Lease, by name
  (`chamberlain-<env>-<cluster>`: two environments on one cluster each elect a leader);
- `chamberlain-controller-consumers` in each consumer namespace: only the objects propagation touches, each by
  name (`resourceNames`), as `chamberlain render` computes them from the intents it rotates on that cluster;
- `chamberlain-controller-consumer-events` beside it: creating Events (a retirement's warnings on the
  ExternalSecret), nothing else (an Event not yet created has no name to grant by).

Secrets: `get` by name only, never `list` or `watch`, never in the controller namespace. The controller reads a
consumer Secret as `PartialObjectMetadata` (its annotations; the data never crosses the wire), but RBAC cannot
tell that from a full read, so the name list is what keeps the exposure small. Intents are also guarded by a
ValidatingAdmissionPolicy: `patch` on SecretIntents lets the controller clear the `chamberlain.dev/rotate`
annotation, and the policy refuses any other change from anyone but the GitOps controller.

| Role | API group | Resource | Verb | Names | Why |
|---|---|---|---|---|---|
"""


def rbac_markdown() -> str:
    """docs/rbac.md: one row per (Role, resource, verb), with the reason of :data:`WHY`."""
    roles = [
        (COMPONENT, controller_rules("<serviceAccount>")),
        (f"{COMPONENT}-lease-<env>", lease_rules("chamberlain-<env>-<cluster>")),
        (CONSUMER_ROLE, consumer_rules(["<consumer Secret>"], ["<consumer Secret>"],
                                       [(kind, "<restart target>") for kind in _WORKLOAD_RESOURCES])),
        (CONSUMER_EVENTS_ROLE, consumer_events_rules()),
        (PRODUCER_ROLE, producer_rules()),
    ]
    rows = []
    for role, rules in roles:
        for rule in rules:
            names = ", ".join(rule.get("resourceNames", [])) or "any"
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        why = WHY[(resource, verb)]
                        rows.append(f"| {role} | {group or 'core'} | {resource} | {verb} | {names} | {why} |")
    return _DOC_HEADER + "\n".join(rows) + "\n"


__all__ = [
    "WHY",
    "ChartValues",
    "alert_groups",
    "chart_defaults",
    "cluster_values",
    "controller_args",
    "install_objects",
    "lease_name",
    "rbac_markdown",
    "values_schema",
]
