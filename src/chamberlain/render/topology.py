"""Who reads and who publishes what, where: the facts every rendered artifact is derived from.

Belongs here: one pass over a validated repository that answers, for each (environment, cluster), which
namespaces materialize which intent from which Vault path, and which producer namespaces publish where. The ESO
manifests and the Vault policies are both built from this one structure, so a SecretStore can never point at a
path its policy does not grant. Pure data; no text, no I/O.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field

from chamberlain.errors import ChamberlainError
from chamberlain.intent.model import Consumer, Platform, PublicationSource, RotationPolicy, SecretIntent
from chamberlain.intent.paths import VaultPath, intent_environments, vault_path, vault_paths
from chamberlain.intent.templates import TemplateSyntaxError, granted_keys, references


class RenderError(ChamberlainError):
    """The repository cannot be rendered as asked (no Platform, two objects with one identity); the message
    names the objects, never a value."""


@dataclass(frozen=True)
class Part:
    """One intent a templated consumer reads (:mod:`chamberlain.intent.templates`), at its path in the cluster."""

    intent: SecretIntent
    vault: VaultPath


@dataclass(frozen=True)
class Read:
    """One consumer of one intent in one cluster: becomes one ExternalSecret and one policy path (a templated
    consumer: one path per part)."""

    intent: SecretIntent
    consumer: Consumer
    vault: VaultPath
    # A templated consumer's parts: the declaring intent first, then each other intent its template references,
    # in order of first reference. Empty for a plain consumer.
    parts: tuple[Part, ...] = ()

    @property
    def paths(self) -> tuple[VaultPath, ...]:
        """Every Vault path the consumer reads: its policy grants these and nothing else."""
        return tuple(p.vault for p in self.parts) or (self.vault,)


@dataclass(frozen=True)
class Publish:
    """One derived/config intent published from its producer namespace: one PushSecret, one write-only role."""

    intent: SecretIntent
    source: PublicationSource
    vault: VaultPath


@dataclass
class Unit:
    """One environment on one cluster: the scope of one Argo CD application."""

    environment: str
    cluster: str
    reads: dict[str, list[Read]] = field(default_factory=dict)  # consumer namespace -> reads
    publishes: dict[str, list[Publish]] = field(default_factory=dict)  # producer namespace -> publications

    @property
    def namespaces(self) -> list[str]:
        return sorted(set(self.reads) | set(self.publishes))


@dataclass
class Topology:
    platform: Platform
    policies: list[RotationPolicy]
    units: list[Unit]  # in Platform order: environments as declared, clusters as listed
    cluster_intents: dict[str, list[SecretIntent]]  # cluster -> intents present there, by name
    cluster_environments: dict[str, list[str]]  # cluster -> environments it hosts, in Platform order

    @property
    def clusters(self) -> list[str]:
        return sorted(self.cluster_environments)

    def base_owner(self, cluster: str) -> str:
        """The environment whose application also applies the cluster-wide objects (CRDs, namespaces,
        controller, intents): the first non-ephemeral environment on the cluster, else the first one. Exactly one
        application owns each object, so Argo CD applications never fight over one."""
        envs = self.cluster_environments[cluster]
        ephemeral = {e.name for e in self.platform.spec.environments if e.ephemeral}
        return next((e for e in envs if e not in ephemeral), envs[0])

    def namespaces(self, cluster: str) -> list[str]:
        """Every namespace chamberlain renders objects into on a cluster, controller namespace included."""
        names = {self.platform.spec.controller.namespace}
        for unit in self.units:
            if unit.cluster == cluster:
                names.update(unit.namespaces)
        return sorted(names)


# A piece of the render, a few files that depend on a few inputs only (:class:`chamberlain.render.layout.Piece`):
# ("namespace", environment, cluster, namespace), ("owner", cluster, owner), ("cluster", cluster) or ("crds",).
PieceName = tuple[str, ...]


def namespace_piece(environment: str, cluster: str, namespace: str) -> PieceName:
    """One namespace of one application: its ESO objects, and its Vault reader and publisher policies and roles."""
    return ("namespace", environment, cluster, namespace)


def owner_piece(cluster: str, owner: str) -> PieceName:
    """One owner's SecretIntents on one cluster (``clusters/<cluster>/intents/<owner>.yaml``)."""
    return ("owner", cluster, owner)


def cluster_piece(cluster: str) -> PieceName:
    """One cluster's namespaces and controller installation (chart values, controller, admission, monitoring)."""
    return ("cluster", cluster)


def derived_key(lines: list[str]) -> str:
    """A piece's key: a digest of the lines that name its inputs."""
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:32]


def build_topology(
    platform: Platform, policies: list[RotationPolicy], intents: list[SecretIntent]
) -> Topology:
    """Index every placement of every intent. Linear in intents x clusters x consumers."""
    units: dict[tuple[str, str], Unit] = {}
    cluster_envs: dict[str, list[str]] = defaultdict(list)
    for env in platform.spec.environments:
        for cluster in env.clusters:
            if (env.name, cluster) in units:
                continue
            units[(env.name, cluster)] = Unit(env.name, cluster)
            cluster_envs[cluster].append(env.name)
    per_cluster: dict[str, dict[str, SecretIntent]] = defaultdict(dict)
    by_name = {i.metadata.name: i for i in intents}
    # Sorting by name makes the output independent of file layout and load order.
    for intent in sorted(intents, key=lambda i: i.metadata.name):
        spec = intent.spec
        publication = spec.source.publication if spec.classification in ("derived", "config") else None
        path_in = vault_paths(platform, intent)
        for env in intent_environments(platform, intent):
            for cluster in dict.fromkeys(env.clusters):
                unit = units[(env.name, cluster)]
                path = path_in(env.name, cluster)
                per_cluster[cluster].setdefault(intent.metadata.name, intent)
                for consumer in spec.consumers:
                    parts = _parts(platform, by_name, intent, consumer, env.name, cluster, path)
                    unit.reads.setdefault(consumer.namespace, []).append(Read(intent, consumer, path, parts))
                if publication is not None:
                    unit.publishes.setdefault(publication.namespace, []).append(
                        Publish(intent, publication, path)
                    )
    return Topology(
        platform=platform,
        policies=sorted(policies, key=lambda p: p.metadata.name),
        units=list(units.values()),
        cluster_intents={c: list(per_cluster.get(c, {}).values()) for c in cluster_envs},
        cluster_environments=dict(cluster_envs),
    )


def _parts(platform: Platform, by_name: dict[str, SecretIntent], intent: SecretIntent, consumer: Consumer,
           environment: str, cluster: str, path: VaultPath) -> tuple[Part, ...]:
    """The parts of a templated consumer, each checked like validate does (CH116-CH118): a part that is not
    declared, does not declare the consumer's namespace or is not placed in ``environment`` is refused, so a
    template can never widen what a namespace reads."""
    if not consumer.template:
        return ()
    names = dict.fromkeys([intent.metadata.name])
    keys: dict[str, set[str]] = {}
    for text in consumer.template.values():
        try:
            refs = references(text)
            names.update(dict.fromkeys(r.intent for r in refs))
            for r in refs:
                keys.setdefault(r.intent, set()).add(r.key)
        except TemplateSyntaxError as exc:
            raise RenderError(f"SecretIntent {intent.metadata.name}: consumer {consumer.namespace}/"
                              f"{consumer.secret_name}: template does not parse: {exc} (CH115)") from None
    parts = [Part(intent, path)]
    where = f"SecretIntent {intent.metadata.name}: consumer {consumer.namespace}/{consumer.secret_name}"
    for name in list(names)[1:]:
        other = by_name.get(name)
        if other is None:
            raise RenderError(f"{where}: template references undeclared SecretIntent {name} (CH116)")
        if not any(c.namespace == consumer.namespace for c in other.spec.consumers):
            raise RenderError(f"{where}: SecretIntent {name} does not declare namespace {consumer.namespace} "
                              "among its consumers (CH117)")
        granted = granted_keys(other, consumer.namespace)
        taken = sorted(k for k in keys.get(name, ()) if granted is not None and k not in granted)
        if taken:
            raise RenderError(f"{where}: SecretIntent {name} does not hand out {', '.join(taken)} in namespace "
                              f"{consumer.namespace} (CH117)")
        if environment not in {e.name for e in intent_environments(platform, other)}:
            raise RenderError(f"{where}: SecretIntent {name} does not exist in {environment} (CH118)")
        parts.append(Part(other, vault_path(platform, other, environment, cluster)))
    return tuple(parts)
