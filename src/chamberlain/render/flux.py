"""The Flux side of the rendered output: per cluster, the Flux ``Kustomization`` objects that apply the rest of the
tree in order, decrypting bootstrap files in-cluster with SOPS.

Layout (paths in the Kustomizations are relative to the Git repository's root, under ``spec.gitops.path``)::

    flux/<cluster>/kustomization.yaml   the list below: what the cluster's root Kustomization (the one
                                        ``flux bootstrap`` creates, ``flux-system``) points at: ./flux/<cluster>
    flux/<cluster>/crds.yaml            chamberlain-crds: ./crds
    flux/<cluster>/cluster.yaml         chamberlain-cluster: ./clusters/<cluster> (namespaces, the controller's
                                        identity, Platform, policies, intents)
    flux/<cluster>/<env>.yaml           chamberlain-bootstrap-<env>: ./envs/<env>/<cluster>/bootstrap (SOPS, with
                                        the in-cluster age key in flux-system/sops-age), when the environment
                                        carries bootstrap files; chamberlain-env-<env>: ./envs/<env>/<cluster>/
                                        namespaces (ServiceAccounts, SecretStores, PushSecrets, ExternalSecrets)

Order comes from ``dependsOn``: crds → cluster → bootstrap-<env> → env-<env>. The authority is initialized outside
GitOps between the last two: a SecretStore turns Ready only once its Vault role exists, so ``env-<env>`` stays
not-ready (and retries) until then. Health checks name only objects with conditions a controller sets without a
kubelet: CRDs (Established) and SecretStores (Ready); never workloads.

Pruning: CRDs, namespaces and bootstrap Secrets are never pruned by Flux (deleting a CRD deletes every intent; a
bootstrap Secret is retired by handover, never by Flux). Everything else is pruned when it leaves Git.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chamberlain import wellknown as wk
from chamberlain.intent.model import Platform
from chamberlain.render import naming
from chamberlain.render.crds import crd_kinds, crd_name
from chamberlain.render.topology import Topology
from chamberlain.render.yamlio import dump_yaml, dump_yaml_documents

Manifest = dict[str, Any]

KUSTOMIZATION_API = "kustomize.toolkit.fluxcd.io/v1"
NAMESPACE = "flux-system"
SOURCE = "flux-system"  # the GitRepository `flux bootstrap` creates, and the lab's demo too
SOPS_AGE_SECRET = "sops-age"  # noqa: S105 - the name of the Secret holding the in-cluster age key, not a value
CRDS, CLUSTER = "chamberlain-crds", "chamberlain-cluster"
# ESO's own CRDs: the stores and syncs chamberlain renders are typed by them.
ESO_CRDS = ("externalsecrets.external-secrets.io", "pushsecrets.external-secrets.io",
            "secretstores.external-secrets.io")
# Flux retries a failed or not-ready Kustomization this often; dependents wait for it in the meantime.
INTERVAL, RETRY, TIMEOUT = "10m", "1m", "3m"


@dataclass(frozen=True)
class Store:
    """A SecretStore an environment's Kustomization waits for (it is Ready once ESO can log in to the authority)."""

    api_version: str
    namespace: str
    name: str


def bootstrap_name(environment: str) -> str:
    return f"chamberlain-bootstrap-{environment}"


def env_name(environment: str) -> str:
    return f"chamberlain-env-{environment}"


def _path(platform: Platform, *parts: str) -> str:
    root = platform.spec.gitops.path.removeprefix("./").rstrip("/")
    joined = "/".join(p for p in (root if root != "." else "", *parts) if p)
    return f"./{joined}"


def _kustomization(name: str, path: str, *, prune: bool, depends_on: Sequence[str] = (),
                   health: Sequence[Mapping[str, str]] = (), extra_spec: Mapping[str, Any] | None = None,
                   labels: Mapping[str, str] | None = None) -> Manifest:
    spec: dict[str, Any] = {
        "interval": INTERVAL,
        "retryInterval": RETRY,
        "timeout": TIMEOUT,
        "sourceRef": {"kind": "GitRepository", "name": SOURCE},
        "path": path,
        "prune": prune,
        "wait": False,  # health comes from healthChecks only: never from workloads (they need a kubelet)
    }
    if depends_on:
        spec["dependsOn"] = [{"name": d} for d in depends_on]
    if health:
        spec["healthChecks"] = [dict(h) for h in health]
    spec.update(extra_spec or {})
    return {
        "apiVersion": KUSTOMIZATION_API,
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {**naming.common_labels(), **(labels or {})}},
        "spec": spec,
    }


def _crd_check(name: str) -> dict[str, str]:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "name": name}


def crds_kustomization(platform: Platform) -> Manifest:
    checks = [_crd_check(crd_name(kind)) for kind in crd_kinds()] + [_crd_check(n) for n in ESO_CRDS]
    return _kustomization(CRDS, _path(platform, "crds"), prune=False, health=checks)


def cluster_kustomization(platform: Platform, cluster: str) -> Manifest:
    return _kustomization(CLUSTER, _path(platform, "clusters", cluster), prune=True, depends_on=[CRDS])


def bootstrap_kustomization(platform: Platform, environment: str, cluster: str) -> Manifest:
    return _kustomization(
        bootstrap_name(environment), _path(platform, "envs", environment, cluster, "bootstrap"),
        prune=False,  # handover retires bootstrap Secrets; Flux must never delete one itself
        depends_on=[CLUSTER],
        extra_spec={"decryption": {"provider": "sops", "secretRef": {"name": SOPS_AGE_SECRET}}},
        labels={wk.LABEL_CLASS: "bootstrap", wk.LABEL_ENVIRONMENT: environment},
    )


def env_kustomization(platform: Platform, environment: str, cluster: str, stores: Iterable[Store],
                      *, after_bootstrap: bool) -> Manifest:
    health = [{"apiVersion": s.api_version, "kind": "SecretStore", "namespace": s.namespace, "name": s.name}
              for s in sorted(stores, key=lambda s: (s.namespace, s.name))]
    return _kustomization(
        env_name(environment), _path(platform, "envs", environment, cluster, "namespaces"), prune=True,
        depends_on=[bootstrap_name(environment) if after_bootstrap else CLUSTER], health=health,
        labels={wk.LABEL_ENVIRONMENT: environment},
    )


def flux_files(topo: Topology, stores: Mapping[tuple[str, str], Sequence[Store]],
               carrying_bootstrap: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``flux/<cluster>/...`` for every cluster. ``stores``: the SecretStores of each (environment, cluster) that
    has namespaces; ``carrying_bootstrap``: the (environment, cluster) applications that carry bootstrap files."""
    platform = topo.platform
    carried = set(carrying_bootstrap)
    files: dict[str, str] = {}
    for cluster in topo.clusters:
        base = f"flux/{cluster}"
        listed = ["crds.yaml", "cluster.yaml"]
        files[f"{base}/crds.yaml"] = dump_yaml(crds_kustomization(platform))
        files[f"{base}/cluster.yaml"] = dump_yaml(cluster_kustomization(platform, cluster))
        for env in topo.cluster_environments[cluster]:
            docs = []
            if (env, cluster) in carried:
                docs.append(bootstrap_kustomization(platform, env, cluster))
            if (env, cluster) in stores:
                docs.append(env_kustomization(platform, env, cluster, stores[(env, cluster)],
                                              after_bootstrap=(env, cluster) in carried))
            if docs:
                files[f"{base}/{env}.yaml"] = dump_yaml_documents(docs)
                listed.append(f"{env}.yaml")
        files[f"{base}/kustomization.yaml"] = dump_yaml({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": listed})
    return files


__all__ = ["NAMESPACE", "SOPS_AGE_SECRET", "SOURCE", "Store", "flux_files"]
