"""Single-authority rules: distinct mounts (CH050), config kept off the data mount (CH051), one owner per
materialized Kubernetes Secret (CH060) and per Vault path (CH061), custody of the unseal shares (CH090-CH092).

The duplicate checks index by key in one pass (no pairwise comparison): 50k intents stay linear.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from chamberlain.checks.registry import check
from chamberlain.findings import Finding
from chamberlain.intent.loader import Loaded, Repository
from chamberlain.intent.model import SecretIntent
from chamberlain.intent.paths import intent_environments, vault_fulls

# Key names that say "this is a credential"; a config intent publishing them is mislabelled.
_SENSITIVE_KEY = re.compile(r"(pass(word|wd)?|secret|token|private|credential|api[-_]?key|\bkey$|dsn)", re.I)


def _label(item: Loaded[SecretIntent]) -> str:
    return f"SecretIntent/{item.obj.metadata.name}"


@check("shared-mounts", per_file=True)
def shared_mounts(repo: Repository) -> Iterator[Finding]:
    if len(repo.platforms) != 1:
        return
    item = repo.platforms[0]
    mounts = item.obj.spec.authority.mounts
    named = {"runtime": mounts.runtime, "internalData": mounts.internal_data,
             "internalConfig": mounts.internal_config}
    seen: dict[str, str] = {}
    for field, mount in named.items():
        if mount in seen:
            yield Finding(
                item.file, item.line_of("spec", "authority", "mounts", field), "CH050",
                f"mounts {seen[mount]} and {field} are both {mount!r}; config, derived and runtime data "
                "must live on separate mounts",
                object=f"Platform/{item.obj.metadata.name}",
            )
        else:
            seen[mount] = field


@check("config-on-data-mount", per_file=True)
def config_on_data_mount(repo: Repository) -> Iterator[Finding]:
    for item in repo.intents:
        spec = item.obj.spec
        if spec.classification != "config":
            continue
        if spec.target is not None:
            yield Finding(
                item.file, item.line_of("spec", "target"), "CH051",
                f"{_label(item)}: a config intent authenticates to a target, so it is a credential; "
                "classify it derived (internalData mount)",
                object=_label(item),
            )
        publication = spec.source.publication
        for i, key in enumerate(publication.keys or [] if publication else []):
            if _SENSITIVE_KEY.search(key):
                yield Finding(
                    item.file, item.line_of("spec", "source", "publication", "keys", i), "CH051",
                    f"{_label(item)}: config publishes key {key!r}, which names a credential; config lands on "
                    "the non-secret internalConfig mount — classify it derived",
                    object=_label(item),
                )


def _write_loc(intent: SecretIntent, namespace: str, secret: str) -> tuple[int | str, ...]:
    for i, c in enumerate(intent.spec.consumers):
        if (c.namespace, c.secret_name) == (namespace, secret):
            return ("spec", "consumers", i)
    return ("spec", "source", "publication")


@check("single-authority")
def single_authority(repo: Repository) -> Iterator[Finding]:
    platform = repo.platform
    if platform is None:
        return
    # (cluster, namespace, Secret) -> (intent, environment) that writes it. One intent in two environments that
    # share a cluster (dev and preview on dev1) is two writers too: each environment has its own Vault path.
    owners: dict[tuple[str, str, str], tuple[Loaded[SecretIntent], str]] = {}
    paths: dict[str, Loaded[SecretIntent]] = {}
    # Most intents take the default environments: their (cluster, environment) pairs are listed once.
    default_envs = [e for e in platform.spec.environments if not e.ephemeral]
    default_pairs = [(cluster, env.name) for env in default_envs for cluster in env.clusters]
    for item in repo.intents:
        intent = item.obj
        # The Secrets this intent writes in each cluster: its consumers, and the producer's Secret that
        # PushSecret reads (an ExternalSecret writing the same name would fight the operator). The location
        # (``spec.consumers[i]``, or -1 for the publication) is spelled out only for a finding.
        writes = [(c.namespace, c.secret_name, i) for i, c in enumerate(intent.spec.consumers)]
        publication = intent.spec.source.publication
        if publication is not None:
            writes.append((publication.namespace, publication.secret_name, -1))
        if intent.spec.environments is None:
            environments, pairs = default_envs, default_pairs
        else:
            environments = intent_environments(platform, intent)
            pairs = [(cluster, env.name) for env in environments for cluster in env.clusters]
        for cluster, env_name in pairs:
            for namespace, secret, index in writes:
                mine = (item, env_name)
                first = owners.setdefault((cluster, namespace, secret), mine)
                if first is mine:
                    continue
                loc = ("spec", "consumers", index) if index >= 0 else ("spec", "source", "publication")
                yield Finding(
                    item.file, item.doc.line_of(loc), "CH060",
                    f"{_label(item)}: Secret {namespace}/{secret} in cluster {cluster} ({env_name}) is already "
                    f"written by {_label(first[0])} ({first[0].file}:{first[0].line}, {first[1]}); two "
                    "authorities for one Kubernetes Secret",
                    object=_label(item),
                )
                if first[0] is not item:
                    # Both sides are named: which of the two writers is the newcomer, Git history knows.
                    first_loc = _write_loc(first[0].obj, namespace, secret)
                    yield Finding(
                        first[0].file, first[0].doc.line_of(first_loc), "CH060",
                        f"{_label(first[0])}: Secret {namespace}/{secret} is also written by {_label(item)} "
                        f"({item.file}:{item.line}); two authorities for one Kubernetes Secret",
                        object=_label(first[0]),
                    )
        for placement in sorted(vault_fulls(platform, intent, environments)):
            if placement in paths and paths[placement] is not item:
                owner = paths[placement]
                yield Finding(
                    item.file, item.line, "CH061",
                    f"{_label(item)}: Vault path {placement} is already owned by {_label(owner)} "
                    f"({owner.file}:{owner.line})",
                    object=_label(item),
                )
            else:
                paths[placement] = item


@check("custody", per_file=True)
def custody(repo: Repository) -> Iterator[Finding]:
    """SPEC §6: custodians and a threshold k, each share to one custodian. Several root recipients without custody
    are a warning (today's behaviour stays valid); a custodian whose key is in a cluster is an error always (it
    defeats the custody)."""
    if len(repo.platforms) != 1:
        return
    item = repo.platforms[0]
    trust = item.obj.spec.root_of_trust
    obj = f"Platform/{item.obj.metadata.name}"
    if trust.custody is None:
        # One root recipient is SPEC §6's single-identity root: nothing pretends to a threshold. Several root
        # recipients without custody look like several people, yet each of them opens every share alone.
        if len(trust.age_recipients) > 1:
            yield Finding(
                item.file, item.line_of("spec", "rootOfTrust"), "CH090",
                f"rootOfTrust names {len(trust.age_recipients)} recipients but no custody: every unseal share is "
                "sealed to every one of them, so each root identity opens them all and the threshold means "
                "nothing; declare rootOfTrust.custody (custodians with their own age recipients and a threshold), "
                "then run `chamberlain authority rekey` to move the shares to them",
                object=obj,
            )
        return
    in_cluster = {r: cluster for cluster, rs in item.obj.spec.gitops.decryption_recipients.items() for r in rs}
    for i, custodian in enumerate(trust.custody.custodians):
        if custodian.age_recipient in in_cluster:
            yield Finding(
                item.file, item.line_of("spec", "rootOfTrust", "custody", "custodians", i), "CH091",
                f"custodian {custodian.name}'s age recipient is the GitOps decryption recipient of cluster "
                f"{in_cluster[custodian.age_recipient]}: that in-cluster key would open an unseal share; give the "
                "custodian an offline identity of their own",
                object=obj, subject=custodian.name,
            )
    if trust.custody.threshold == 1 and len(trust.custody.custodians) > 1:
        yield Finding(
            item.file, item.line_of("spec", "rootOfTrust", "custody", "threshold"), "CH092",
            f"custody threshold 1 with {len(trust.custody.custodians)} custodians: any single custodian unseals "
            "alone (and Vault/OpenBao refuse a threshold of 1 for several shares); use a threshold of at least 2",
            object=obj,
        )
