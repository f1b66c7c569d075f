"""One environment on several clusters: who rotates, how the others follow, and when the old credential may go.

Every runtime secret of an environment has one path (``<runtime>/<env>/<owner>/<name>``) shared by all the
environment's clusters. Exactly one cluster's controller rotates it: the environment's **rotating cluster**
(``spec.environments[].rotationCluster``, default the first cluster listed). The other clusters **follow**: their
controllers never write a runtime value; they watch the secret's ``value-version``/``value-marker`` metadata, and
when it moves past what they acknowledged they refresh their own ExternalSecrets, wait until their consumer Secrets
carry the new marker, restart their own workloads once, and record an **acknowledgement** in the authority under
their own cluster's internal path::

    <runtime>/_chamberlain/acks/<env>/<cluster>/<owner>/<name>   {version, marker, run, at}

The rotating cluster's orchestrator may read every acknowledgement of its environment (never write one); a
follower may write only its own. So the owner learns that another cluster's consumers carry the new version
without any credential for that cluster's Kubernetes API. A rotation never waits for a follower, except before
``revokeOld``: the old credential is revoked only once every follower acknowledged the new version; past
``maxOverlap`` + the acknowledgement deadline the wait raises an alert (once) and goes on waiting (a cluster that is
down still runs workloads with the old credential when it returns, until it follows).

Boundary: pure decisions with the clock passed in, and the record's (de)serialisation; the KV reads and writes are
two small functions at the end, over the :class:`~chamberlain.authority.kv.KV` protocol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from chamberlain import wellknown as wk
from chamberlain.authority.kv import KV
from chamberlain.clock import parse_rfc3339, rfc3339
from chamberlain.intent.model import Platform
from chamberlain.intent.paths import ACKS_PREFIX, VaultPath

DEFAULT_ACK_DEADLINE = timedelta(hours=1)  # past maxOverlap: how long revokeOld waits for followers before alerting
AWAITING_NOTE = "awaiting"  # run note: the clusters revokeOld waits for (names only)
ACKNOWLEDGED_NOTE = "acknowledged"  # run note: the followers that acknowledged before the revoke
OVERDUE_NOTE = "acks-overdue"  # run note: the alert of an overdue acknowledgement was raised (once per run)


# --------------------------------------------------------------------------------------------------- who rotates


def rotating_cluster(platform: Platform, environment: str) -> str | None:
    """The cluster whose controller rotates ``environment``'s runtime secrets (None: unknown environment)."""
    env = platform.environment(environment)
    return env.rotating_cluster if env is not None else None


def followers(platform: Platform, environment: str) -> tuple[str, ...]:
    """The environment's other clusters, in Platform order: they follow, they never rotate."""
    env = platform.environment(environment)
    if env is None:
        return ()
    return tuple(c for c in env.clusters if c != env.rotating_cluster)


def is_follower(platform: Platform, environment: str, cluster: str) -> bool:
    owner = rotating_cluster(platform, environment)
    return owner is not None and owner != cluster


# --------------------------------------------------------------------------------------------------- the record


def ack_path(secret: VaultPath, cluster: str) -> VaultPath:
    """Where ``cluster`` acknowledges ``secret`` (``<env>/<owner>/<name>``): under its own cluster segment, so a
    policy can give each follower exactly its own subtree."""
    environment, _, rest = secret.path.partition("/")
    return VaultPath(secret.mount, f"{ACKS_PREFIX}/{environment}/{cluster}/{rest}")


@dataclass(frozen=True)
class Acknowledgement:
    """``cluster``'s consumers carried ``version`` (``marker``) and its workloads restarted for it. No value."""

    cluster: str
    version: int
    marker: str
    run: str  # the owner's run that promoted the version ("" when unknown)
    at: datetime

    def to_data(self) -> dict[str, str]:
        return {"cluster": self.cluster, "version": str(self.version), "marker": self.marker, "run": self.run,
                "at": rfc3339(self.at)}

    @classmethod
    def from_data(cls, cluster: str, data: Mapping[str, str]) -> Acknowledgement | None:
        """None for a record that is not one (a malformed record counts as no acknowledgement, never as one)."""
        try:
            version, marker, at = int(data["version"]), data["marker"], parse_rfc3339(data["at"])
        except (KeyError, ValueError):
            return None
        return cls(cluster, version, marker, data.get("run", ""), at) if at is not None and marker else None


# --------------------------------------------------------------------------------------------------- follow


@dataclass(frozen=True)
class Follow:
    """A version a follower has not acknowledged yet."""

    version: int
    marker: str
    run: str
    restart: bool  # False for the very first acknowledgement of a secret: nothing changed under the workloads


def follow_due(custom: Mapping[str, str], acknowledged: Acknowledgement | None) -> Follow | None:
    """What a follower must do for a secret whose metadata is ``custom`` (pure): nothing while it acknowledged the
    current version, else follow it — restarting its workloads unless it never acknowledged any version (a
    controller's first sight of a secret: its consumers got that version when they were created)."""
    marker = custom.get(wk.VALUE_MARKER)
    try:
        version = int(custom.get(wk.VALUE_VERSION, ""))
    except ValueError:
        return None
    if not marker:
        return None
    if acknowledged is not None and acknowledged.version >= version:
        return None
    return Follow(version, marker, custom.get(wk.LAST_RUN, ""), restart=acknowledged is not None)


# --------------------------------------------------------------------------------------------------- revoke


def unacknowledged(expected: Sequence[str], acks: Mapping[str, Acknowledgement | None], version: int
                   ) -> tuple[str, ...]:
    """The clusters of ``expected`` that have not acknowledged ``version`` (or a later one) yet, in order."""
    return tuple(c for c in expected if (a := acks.get(c)) is None or a.version < version)


class RevokeGate(StrEnum):
    OVERLAP = "overlap"  # maxOverlap has not passed yet
    AWAIT = "await"  # maxOverlap passed; some follower has not acknowledged
    OVERDUE = "overdue"  # ... and the acknowledgement deadline passed: alert (once), keep waiting
    REVOKE = "revoke"  # every follower acknowledged: the old credential may go


def revoke_gate(revoke_at: datetime | None, missing: Sequence[str], now: datetime, deadline: timedelta) -> RevokeGate:
    """May ``revokeOld`` act now (pure)? Never before ``revoke_at`` (maxOverlap), never while a follower has not
    acknowledged; ``deadline`` past ``revoke_at`` turns the wait into an alert."""
    if revoke_at is not None and now < revoke_at:
        return RevokeGate.OVERLAP
    if not missing:
        return RevokeGate.REVOKE
    if revoke_at is not None and now >= revoke_at + deadline:
        return RevokeGate.OVERDUE
    return RevokeGate.AWAIT


# --------------------------------------------------------------------------------------------------- I/O


def read_acknowledgement(kv: KV, secret: VaultPath, cluster: str) -> tuple[Acknowledgement | None, int]:
    """``cluster``'s acknowledgement of ``secret`` and the record's version (0: none; the CAS of the next write)."""
    path = ack_path(secret, cluster)
    got = kv.read(path.mount, path.path)
    if got is None:
        return None, 0
    return Acknowledgement.from_data(cluster, got.data), got.version


def write_acknowledgement(kv: KV, secret: VaultPath, ack: Acknowledgement, cas: int) -> int:
    """Record ``ack`` (check-and-set: the runtime mount requires it; a lost race is an error, retried later)."""
    path = ack_path(secret, ack.cluster)
    return kv.write(path.mount, path.path, ack.to_data(), cas=cas)


__all__ = [
    "ACKNOWLEDGED_NOTE",
    "AWAITING_NOTE",
    "DEFAULT_ACK_DEADLINE",
    "OVERDUE_NOTE",
    "Acknowledgement",
    "Follow",
    "RevokeGate",
    "ack_path",
    "follow_due",
    "followers",
    "is_follower",
    "read_acknowledgement",
    "revoke_gate",
    "rotating_cluster",
    "unacknowledged",
    "write_acknowledgement",
]
