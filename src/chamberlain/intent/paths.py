"""Where each intent lives: its environments, clusters and Vault paths (SPEC §9, fixed and documented).

- runtime and bootstrap (after handover): ``<runtime>/<environment>/<owner>/<name>``
- derived:  ``<internalData>/<environment>/<cluster>/<producer-namespace>/<name>``
- config:   ``<internalConfig>/<environment>/<cluster>/<producer-namespace>/<name>``

Every segment is a DNS-1123 label (enforced by the model), so no path can escape its prefix.

chamberlain's own records live under ``<runtime>/_chamberlain/``: a leading ``_`` cannot start a DNS label, so no
environment name can collide with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from chamberlain.intent.model import Environment, Platform, RotationPolicy, RotationPolicySpec, SecretIntent

LEDGER_PREFIX = "_chamberlain/ledger"  # partitions <env>/<cluster>/<seq:012d> (create-only) and .../head
LEDGER_HEAD = "_chamberlain/ledger-head"  # the previous release's one head (old layout: ledger/<seq>), read only
LEDGER_HEAD_NAME = "head"  # a partition's head: <LEDGER_PREFIX>/<env>/<cluster>/head (seq and hash of its tail)
# The configurator's own partition (authority init/configure/rekey): ``_`` cannot start an environment name.
AUTHORITY_PARTITION = ("_authority", "configurator")
# Issue 11 (signed ledger, keyed markers): a module constant until the Platform model names a transit mount.
TRANSIT_MOUNT = "chamberlain-transit"
LEDGER_KEY_PREFIX = "chamberlain-ledger-"  # ed25519 signing key per environment: chamberlain-ledger-<env>
MARKER_KEY_PREFIX = "chamberlain-marker-"  # transit key per environment whose HMAC key keys the version markers
RUNS_PREFIX = "_chamberlain/runs"  # rotation run records (and leases): runs/<env>/<owner>/<name>
PENDING_PREFIX = "_chamberlain/pending"  # values staged by a rotation before promotion, never read by ESO
# What a following cluster's controller saw through (two clusters, one environment): acks/<env>/<cluster>/<owner>/<name>
ACKS_PREFIX = "_chamberlain/acks"
# Versions a producer pushed that a cluster's controller followed to its consumers (rotation.external):
# external/<env>/<cluster>/<internal mount>/<ns>/<name>
EXTERNAL_PREFIX = "_chamberlain/external"
# instances of an ephemeral environment: <runtime>/<env>/_instances/<id>/<owner>/<name> (never an owner's segment),
# and the copy ESO of one consumer namespace reads: <runtime>/<env>/_instances/<id>/_ns/<namespace>/<owner>/<name>
INSTANCES_SEGMENT = "_instances"
READERS_SEGMENT = "_ns"
# A rendered policy names an auth mount's accessor this way; `authority configure` puts in the live accessor (random
# per mount, so render cannot know it) before it compares or writes the policy.
ACCESSOR_REF = re.compile(r"<<accessor:([a-z0-9][-a-z0-9]*)>>")


def accessor_ref(auth_mount: str) -> str:
    return f"<<accessor:{auth_mount}>>"


def ledger_key(environment: str) -> str:
    """The transit key that signs the ledger partitions of ``environment`` (``_authority``: the configurator's)."""
    return f"{LEDGER_KEY_PREFIX}{environment}"


def marker_key(environment: str) -> str:
    """The transit key whose HMAC key keys the version markers of ``environment``."""
    return f"{MARKER_KEY_PREFIX}{environment}"


@dataclass(frozen=True, order=True, slots=True)  # one or more per intent held
class VaultPath:
    """A KV v2 secret: its mount and its path inside the mount."""

    mount: str
    path: str

    @property
    def full(self) -> str:
        return f"{self.mount}/{self.path}"

    @property
    def data_path(self) -> str:
        """The HTTP API path of the data (what Vault policies match)."""
        return f"{self.mount}/data/{self.path}"

    @property
    def metadata_path(self) -> str:
        return f"{self.mount}/metadata/{self.path}"

    def __str__(self) -> str:
        return self.full


@dataclass(frozen=True, order=True)
class Placement:
    """One intent in one cluster of one environment, and the Vault path it reads from there."""

    environment: str
    cluster: str
    vault: VaultPath


def intent_environments(platform: Platform, intent: SecretIntent) -> list[Environment]:
    """The environments an intent exists in: as listed, or every non-ephemeral one. Unknown names are dropped
    here (the checker reports them)."""
    if intent.spec.environments is None:
        return [e for e in platform.spec.environments if not e.ephemeral]
    wanted = set(intent.spec.environments)
    return [e for e in platform.spec.environments if e.name in wanted]


def bootstrap_recipients(platform: Platform, intent: SecretIntent) -> list[str]:
    """Who may open a bootstrap file of ``intent``: the Platform's root recipients, then the GitOps decryption
    recipients of every cluster the intent is placed on (``spec.gitops.decryptionRecipients``), each once."""
    recipients = dict.fromkeys(platform.spec.root_of_trust.age_recipients)
    per_cluster = platform.spec.gitops.decryption_recipients
    for env in intent_environments(platform, intent):
        for cluster in env.clusters:
            recipients.update(dict.fromkeys(per_cluster.get(cluster, [])))
    return list(recipients)


def vault_path(platform: Platform, intent: SecretIntent, environment: str, cluster: str) -> VaultPath:
    mount, per_cluster, tail = _path_parts(platform, intent)
    return VaultPath(mount, f"{environment}/{cluster}/{tail}" if per_cluster else f"{environment}/{tail}")


def vault_paths(platform: Platform, intent: SecretIntent) -> Callable[[str, str], VaultPath]:
    """:func:`vault_path` of one intent as a function of (environment, cluster): what it depends on worked out once
    (a render asks it of every placement of every intent)."""
    mount, per_cluster, tail = _path_parts(platform, intent)
    if per_cluster:
        return lambda environment, cluster: VaultPath(mount, f"{environment}/{cluster}/{tail}")
    return lambda environment, _cluster: VaultPath(mount, f"{environment}/{tail}")


def _path_parts(platform: Platform, intent: SecretIntent) -> tuple[str, bool, str]:
    """(mount, whether the path names the cluster, what follows the environment and cluster segments)."""
    mounts = platform.spec.authority.mounts
    spec = intent.spec
    name = intent.metadata.name
    if spec.classification in ("derived", "config") and spec.source.publication is not None:
        mount = mounts.internal_data if spec.classification == "derived" else mounts.internal_config
        return mount, True, f"{spec.source.publication.namespace}/{name}"
    return mounts.runtime, False, f"{spec.owner}/{name}"


def vault_fulls(platform: Platform, intent: SecretIntent, environments: list[Environment]) -> set[str]:
    """``{p.vault.full for p in placements(platform, intent)}`` for ``intent_environments(platform, intent)``
    given, without building the placements (a cross-file check asks this of every intent)."""
    mount, per_cluster, tail = _path_parts(platform, intent)
    if per_cluster:
        return {f"{mount}/{env.name}/{cluster}/{tail}" for env in environments for cluster in env.clusters}
    return {f"{mount}/{env.name}/{tail}" for env in environments if env.clusters}


def placements(platform: Platform, intent: SecretIntent) -> list[Placement]:
    """Every (environment, cluster, Vault path) of an intent, in Platform order."""
    return [
        Placement(env.name, cluster, vault_path(platform, intent, env.name, cluster))
        for env in intent_environments(platform, intent)
        for cluster in env.clusters
    ]


def effective_policy(
    platform: Platform, policies: dict[str, RotationPolicy], intent: SecretIntent
) -> tuple[str, RotationPolicySpec] | None:
    """The rotation policy an intent starts with: inline, named, or the Platform default. ``None`` when the
    reference does not resolve (the checker reports it). The name is ``inline`` for inline policies."""
    setting = intent.spec.rotation
    if isinstance(setting, RotationPolicySpec):
        return ("inline", setting)
    name = setting.policy if setting is not None else platform.spec.defaults.rotation_policy
    if name is None:
        return None
    policy = policies.get(name)
    return (name, policy.spec) if policy is not None else None
