"""The controller's scope: which secrets one controller acts on, and what its time trigger reads of each.

A :class:`Scope` is data (the Platform, the policies, the intents, the placements in one environment and cluster,
and the intents the cluster holds but validation rejected); it never changes: a controller driven by the cluster
swaps in a whole new one (:meth:`~chamberlain.controller.loop.Controller.set_scope`, built by
:mod:`chamberlain.controller.source`). :func:`schedule_of` turns a secret's custom_metadata into what the time
trigger needs. No I/O here.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from chamberlain import wellknown as wk
from chamberlain.errors import UsageError
from chamberlain.findings import Finding
from chamberlain.intent.model import Platform, RotationPolicy, RotationPolicySpec, SecretIntent
from chamberlain.rotation import manual as rm
from chamberlain.rotation.policy import failure_streak, from_metadata
from chamberlain.triggers import SecretSchedule


@dataclass(frozen=True)
class Scope:
    """The secrets one controller acts on: every intent placed in its cluster and environment."""

    platform: Platform
    intents: Mapping[str, SecretIntent]
    environment: str
    cluster: str
    placed: Mapping[str, rm.Placed]
    policies: Mapping[str, RotationPolicy] = field(default_factory=dict)
    # SecretIntents present in the cluster that failed validation there, by name: each with its error findings
    # (rule id, message; never a value). They are not placed: the controller leaves them alone.
    rejected: Mapping[str, tuple[Finding, ...]] = field(default_factory=dict)

    def knows(self, secret: str) -> bool:
        return secret in self.placed

    @property
    def runtime_mount(self) -> str:
        """The mount the orchestrator owns: the scope's secrets, their run records and the ledger."""
        return self.platform.spec.authority.mounts.runtime


def scope_of(platform: Platform, intents: Mapping[str, SecretIntent], environment: str, cluster: str, *,
             policies: Mapping[str, RotationPolicy] | None = None,
             rejected: Mapping[str, tuple[Finding, ...]] | None = None) -> Scope:
    """Place every intent in ``environment``/``cluster``; intents not placed there are out of scope, and so are
    derived and config intents: their producers publish them (PushSecret) into the internal mounts, which the
    orchestrator neither reads nor rotates."""
    placed: dict[str, rm.Placed] = {}
    runtime = platform.spec.authority.mounts.runtime
    for name, intent in intents.items():
        try:
            p = rm.place(platform, intent, environment, cluster)
        except UsageError:
            continue
        if p.vault.mount == runtime:
            placed[name] = p
    return Scope(platform, intents, environment, cluster, placed, dict(policies or {}), dict(rejected or {}))


def published_here(platform: Platform, intents: Mapping[str, SecretIntent], environment: str,
                   cluster: str) -> set[str]:
    """The derived and config intents whose producers publish in ``environment``/``cluster``: not rotated, but a
    scope keeps them, since the controller follows their producers' new versions to the consumers
    (:mod:`.external`)."""
    out: set[str] = set()
    for name, intent in intents.items():
        if intent.spec.source.publication is None:
            continue
        try:
            rm.place(platform, intent, environment, cluster)
        except UsageError:
            continue
        out.add(name)
    return out


@functools.lru_cache(maxsize=256)
def _policy_of(fields: tuple[tuple[str, str], ...]) -> RotationPolicySpec | None:
    return from_metadata(dict(fields))


def policy_of(custom: Mapping[str, str]) -> RotationPolicySpec | None:
    """:func:`~chamberlain.rotation.policy.from_metadata`, one shared (frozen) model per distinct policy: thousands
    of secrets share a few, and a model per secret (with its timedeltas) cost about 1 KiB each at 10k intents."""
    return _policy_of(tuple(sorted((k, v) for k, v in custom.items() if k.startswith(wk.POLICY_PREFIX))))


def schedule_of(name: str, custom: Mapping[str, str]) -> SecretSchedule | None:
    """What the time trigger needs, from the secret's custom_metadata; None without a known last change, and for
    data decommissioning soft-deleted (a rotation would write a live version over it)."""
    since = rm.last_changed(custom)
    if since is None or custom.get(wk.DECOMMISSIONED_AT, "-") != "-":
        return None
    failures, last_failure = failure_streak(custom)
    return SecretSchedule(name, policy_of(custom), since, held=custom.get(wk.HELD) == "true",
                          failures=failures, last_failure=last_failure)


__all__ = ["Scope", "policy_of", "published_here", "schedule_of", "scope_of"]
