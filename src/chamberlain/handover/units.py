"""Which handovers a run covers: one unit per bootstrap intent in the selected environment and cluster.

A kubeconfig reaches one cluster, so a run hands over the bootstrap Secrets materialized in that one cluster. The
cluster is named with ``--cluster`` (optional when the Platform has a single cluster); the environment is the one
that cluster serves (``--environment`` chooses when a cluster serves several, e.g. dev and preview on ``dev1``).

Boundary: pure selection over a loaded, validated repository; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from chamberlain.checks.sops import bootstrap_secrets
from chamberlain.errors import UsageError
from chamberlain.intent.loader import Repository
from chamberlain.intent.model import AfterHandover, Platform, RotationPolicySpec
from chamberlain.intent.paths import VaultPath, effective_policy, placements


@dataclass(frozen=True)
class HandoverUnit:
    """One bootstrap Secret in one cluster, and the runtime path it is handed over to."""

    intent: str
    environment: str
    cluster: str
    vault: VaultPath
    namespace: str  # of the bootstrap Secret
    name: str
    after_handover: AfterHandover
    policy_name: str | None
    policy: RotationPolicySpec | None

    @property
    def source(self) -> str:
        return f"{self.namespace}/{self.name}"


def _platform(repo: Repository) -> Platform:
    platform = repo.platform
    if platform is None:  # load_valid guarantees one; this guards direct callers
        raise UsageError(f"{repo.root}: the repository needs exactly one Platform")
    return platform


def select_cluster(platform: Platform, environment: str | None, cluster: str | None) -> tuple[str, list[str]]:
    """(cluster, environments served there that the run covers); raise UsageError when ambiguous or unknown."""
    if environment is not None and platform.environment(environment) is None:
        known = ", ".join(e.name for e in platform.spec.environments)
        raise UsageError(f"unknown environment {environment!r} (the Platform has: {known})")
    all_clusters = sorted({c for e in platform.spec.environments for c in e.clusters})
    if cluster is None:
        candidates = (
            platform.environment(environment).clusters  # type: ignore[union-attr]
            if environment is not None
            else all_clusters
        )
        if len(candidates) != 1:
            raise UsageError(
                "pass --cluster: a run hands over the bootstrap Secrets of the one cluster the kubeconfig reaches "
                f"(candidates: {', '.join(sorted(candidates))})"
            )
        cluster = candidates[0]
    if cluster not in all_clusters:
        raise UsageError(f"unknown cluster {cluster!r} (the Platform has: {', '.join(all_clusters)})")
    envs = [e.name for e in platform.spec.environments if cluster in e.clusters]
    if environment is not None:
        if environment not in envs:
            raise UsageError(f"environment {environment!r} does not include cluster {cluster!r}")
        envs = [environment]
    return cluster, envs


def handover_units(repo: Repository, environment: str | None = None, cluster: str | None = None) -> list[HandoverUnit]:
    """Every bootstrap intent placed in the selected cluster, in intent-name order."""
    platform = _platform(repo)
    chosen, envs = select_cluster(platform, environment, cluster)
    policies = {p.obj.metadata.name: p.obj for p in repo.policies}
    secrets = {s.ref.intent.obj.name: s for s in bootstrap_secrets(repo)}
    units: list[HandoverUnit] = []
    for loaded in sorted(repo.intents, key=lambda i: i.obj.name):
        intent = loaded.obj
        source = intent.spec.source.bootstrap
        if source is None:
            continue
        here = [p for p in placements(platform, intent) if p.cluster == chosen and p.environment in envs]
        if not here:
            continue
        if len(here) > 1:
            # One bootstrap Secret cannot be retired twice, to two runtime paths: the user picks one environment.
            raise UsageError(
                f"intent {intent.name} exists in several environments on cluster {chosen} "
                f"({', '.join(p.environment for p in here)}); pass --environment"
            )
        secret = secrets.get(intent.name)
        if secret is None or secret.namespace is None:  # the checker (CH025) rejects both; guard anyway
            raise UsageError(f"intent {intent.name}: its bootstrap file names no namespaced Secret")
        resolved = effective_policy(platform, policies, intent)
        units.append(
            HandoverUnit(
                intent=intent.name,
                environment=here[0].environment,
                cluster=chosen,
                vault=here[0].vault,
                namespace=secret.namespace,
                name=secret.name,
                after_handover=source.after_handover,
                policy_name=resolved[0] if resolved else None,
                policy=resolved[1] if resolved else None,
            )
        )
    return units
