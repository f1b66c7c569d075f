"""Names, labels and sync waves of everything chamberlain renders — one place, so the controller can find them.

Belongs here: the pure functions that name Kubernetes objects, Vault policies and Kubernetes-auth roles, the
labels and annotations they carry, and the Argo CD sync-wave of each phase. Nothing here builds a manifest.

Kubernetes names stay env-qualified where two environments can share a cluster and a namespace (the acme
``preview`` environment lives on the ``dev1`` cluster), so two Argo CD applications never fight over one object.

Vault names join DNS-1123 labels with ``.``, a character no label can contain, so
``chamberlain.<env>.<cluster>.<namespace>.reader`` can never be the same string for two different tuples. Every
Vault name starts with ``chamberlain.`` so a later "configure --prune" can tell what it owns.
"""

from __future__ import annotations

from collections.abc import Mapping

from chamberlain import wellknown as wk
from chamberlain.errors import UsageError
from chamberlain.intent.model import Platform, SecretIntent

# Deleting a CRD deletes every intent; deleting a Namespace deletes the workloads in it. Neither may happen as a
# side effect of removing something from the rendered output or deleting the Argo CD application.
KEEP = "Delete=false,Prune=false"


def keep() -> dict[str, str]:
    """Annotations that stop both GitOps controllers from ever deleting an object (CRDs, Namespaces)."""
    return {wk.ARGOCD_SYNC_OPTIONS: KEEP, wk.FLUX_PRUNE: "disabled"}

# Argo CD applies lower waves first and waits for them to be healthy.
WAVE_FOUNDATION = 0  # CRDs and Namespaces: everything else lives in or is typed by them
WAVE_IDENTITY = 1  # ServiceAccounts: the identities Vault's Kubernetes auth roles are bound to
WAVE_INTENT = 2  # Platform, RotationPolicies, SecretIntents: the orchestrator can generate values now
WAVE_STORE = 3  # SecretStores: need their ServiceAccount and the Vault role (configured in phase 3)
WAVE_SYNC = 4  # PushSecrets and ExternalSecrets, together: a producer not yet ready never holds back consumers

READER_ROLE = "reader"
PUBLISHER_ROLE = "publisher"
ORCHESTRATOR_ROLE = "orchestrator"


def common_labels() -> dict[str, str]:
    return {wk.MANAGED_BY: wk.MANAGER}


def intent_labels(intent: SecretIntent) -> dict[str, str]:
    """Labels of an object that belongs to exactly one intent."""
    return {
        wk.MANAGED_BY: wk.MANAGER,
        wk.LABEL_INTENT: intent.metadata.name,
        wk.LABEL_CLASS: intent.spec.classification,
        wk.LABEL_OWNER: intent.spec.owner,
    }


def wave(number: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    out = {wk.ARGOCD_SYNC_WAVE: str(number)}
    if extra:
        out.update(extra)
    return out


# ------------------------------------------------------------------------------------ Kubernetes object names


def reader_service_account(environment: str) -> str:
    """The identity ESO uses to read, in a consumer namespace, for one environment."""
    return f"chamberlain-{environment}-reader"


def reader_store(environment: str, mount: str) -> str:
    """One SecretStore per (environment, KV mount) in a consumer namespace: a Vault store addresses one mount."""
    return f"chamberlain-{environment}-{mount}"


def publisher_name(environment: str, intent: str) -> str:
    """ServiceAccount, SecretStore and PushSecret of one published intent in its producer namespace."""
    return f"chamberlain-{environment}-publish-{intent}"


def controller_namespace(platform: Platform) -> str:
    return platform.spec.controller.namespace


def controller_service_account(platform: Platform) -> str:
    return platform.spec.controller.service_account


# --------------------------------------------------------------------------------------------- Vault names


def reader_policy(environment: str, cluster: str, namespace: str) -> str:
    return f"chamberlain.{environment}.{cluster}.{namespace}.{READER_ROLE}"


def instance_reader_policy(environment: str, cluster: str, namespace: str) -> str:
    """ESO in every instance ``<namespace>-<id>`` of an ephemeral environment (chamberlain.lifecycle.ephemeral)."""
    return f"chamberlain.{environment}.{cluster}.{namespace}.instance-{READER_ROLE}"


def publisher_policy(environment: str, cluster: str, namespace: str, intent: str) -> str:
    return f"chamberlain.{environment}.{cluster}.{namespace}.{intent}.{PUBLISHER_ROLE}"


def orchestrator_policy(cluster: str) -> str:
    """One orchestrator per cluster; it serves every environment that cluster hosts."""
    return f"chamberlain.{cluster}.{ORCHESTRATOR_ROLE}"


def kubernetes_auth_mount(platform: Platform, cluster: str) -> str:
    """The Vault auth mount the given cluster's service accounts log in at: ``<kubernetesAuthMount>-<cluster>``.

    A Kubernetes auth mount reviews tokens at one cluster's API server (with that cluster's CA), so each cluster
    gets its own, holding only that cluster's roles: a ServiceAccount token of one cluster is reviewed by its own
    API server and can never log in to a role of another (SPEC §6). ``spec.authority.kubernetesAuthMount`` is the
    base every cluster's mount name starts with. The one place that names these mounts.
    """
    return f"{platform.spec.authority.kubernetes_auth_mount}-{cluster}"


def cluster_of_auth_mount(platform: Platform, mount: str) -> str | None:
    """The cluster whose Kubernetes auth mount ``mount`` is (None: not one of the Platform's clusters' mounts)."""
    for cluster in platform_clusters(platform):
        if kubernetes_auth_mount(platform, cluster) == mount:
            return cluster
    return None


# The configurator: the identity that converges the authority's configuration (policies, auth, audit). A human or
# CI obtains its token with the TokenRequest API; no workload runs as it, and its namespace holds nothing else, so
# no identity that runs the controller (or any workload) is ever bound to its role.
CONFIGURATOR_NAMESPACE = "chamberlain-configurator"
CONFIGURATOR_SERVICE_ACCOUNT = "chamberlain-configurator"


def configurator_namespace(platform: Platform) -> str:
    del platform  # a convention today; a Platform field can replace it here without touching callers
    return CONFIGURATOR_NAMESPACE


def configurator_service_account(platform: Platform) -> str:
    del platform
    return CONFIGURATOR_SERVICE_ACCOUNT


def platform_clusters(platform: Platform) -> list[str]:
    return sorted({c for e in platform.spec.environments for c in e.clusters})


def orchestrator_cluster(role: str) -> str | None:
    """``<cluster>`` of an orchestrator role ``chamberlain.<cluster>.orchestrator`` (None for any other name)."""
    parts = role.split(".")
    return parts[1] if len(parts) == 3 and parts[0] == "chamberlain" and parts[2] == ORCHESTRATOR_ROLE else None


def login_cluster(platform: Platform, cluster: str | None) -> str:
    """The cluster whose auth mount a login from this process goes to: the one named, or the Platform's only
    one. A kubeconfig reaches one cluster, and a token is reviewed only at its own cluster's mount."""
    known = platform_clusters(platform)
    if cluster is None:
        if len(known) == 1:
            return known[0]
        raise UsageError(f"pass --cluster (one of {', '.join(known)}): a Kubernetes login goes to the auth mount of "
                         "the cluster the kubeconfig reaches")
    if cluster not in known:
        raise UsageError(f"--cluster {cluster}: not a cluster of the Platform")
    return cluster
