"""The typed values the runtime authority adapter returns and takes: seal and health states, tokens, mounts, auth
methods and roles, audit devices, transit keys and the server flavour.

Belongs here: frozen value objects with their normalisation (durations in seconds, ``bound_*`` lists sorted,
text stripped), so a value read from the server and the same value declared in Git compare equal. Each object
knows how to read itself from an API body (``from_api``) and how to write itself (``as_body``), field names being
Vault's own. Secret material (unseal shares, tokens, plaintexts, raw bodies) only ever travels in objects whose
``repr`` hides it.

Not here: any I/O or hvac (that is :mod:`chamberlain.authority.vault`, the only package that talks to a server),
the KV types (:mod:`chamberlain.authority.kv`) and the PKI certificate (:mod:`chamberlain.authority.pki`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, Self

from chamberlain.intent.durations import parse_duration


class Flavor(StrEnum):
    """Which server answers: the two share an HTTP API, and the adapter hides where they differ."""

    VAULT = "vault"
    OPENBAO = "openbao"


def seconds(value: Any) -> int:
    """A duration as Vault may spell it (``3600``, ``"3600"``, ``"1h"``, ``"60m"``, ``None``) in seconds."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise ValueError("a duration cannot be a boolean")
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    return int(parse_duration(text).total_seconds())


def names(value: Any) -> tuple[str, ...]:
    """A list field (a JSON list, or Vault's comma-separated string form) as a sorted tuple."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(sorted(v.strip() for v in value.split(",") if v.strip()))
    return tuple(sorted(str(v) for v in value))


def differing(want: Any, have: Any) -> tuple[str, ...]:
    """The names of the fields in which two values of the same dataclass differ, sorted."""
    return tuple(sorted(f.name for f in fields(want) if getattr(want, f.name) != getattr(have, f.name)))


# ------------------------------------------------------------------------------------------------ seal


@dataclass(frozen=True, kw_only=True)
class ServerState:
    """What every unauthenticated status read answers (seal status, health)."""

    initialized: bool
    sealed: bool
    version: str = ""
    cluster_name: str = ""
    flavor: Flavor = Flavor.VAULT
    cluster_id: str = ""  # the storage's identity (answered once unsealed): a backup names the authority by it


@dataclass(frozen=True, kw_only=True)
class SealStatus(ServerState):
    threshold: int  # of the recovery keys when ``recovery_seal`` (an auto-unseal seal)
    shares: int
    progress: int
    storage: str = ""
    seal_type: str = "shamir"  # the server's seal: shamir, or an auto-unseal seal (transit, awskms...)
    recovery_seal: bool = False  # auto-unseal: init issues recovery keys, which cannot unseal

    @property
    def auto_unseal(self) -> bool:
        return self.recovery_seal or self.seal_type not in ("", "shamir")


@dataclass(frozen=True, kw_only=True)
class Health(ServerState):
    """``sys/health`` read with every state answering 200, so sealed, standby and uninitialized are readable."""

    standby: bool

    @property
    def active(self) -> bool:
        return self.initialized and not self.sealed and not self.standby


@dataclass(frozen=True)
class HaStatus:
    ha_enabled: bool
    is_self: bool
    leader_address: str = ""


@dataclass(frozen=True)
class KeyStatus:
    """The barrier encryption key: ``term`` grows by one on every ``sys/rotate``."""

    term: int
    install_time: str = ""


@dataclass(frozen=True)
class InitResult:
    """What ``sys/init`` returns once, and never again. Both fields are secret."""

    keys: tuple[str, ...] = field(repr=False)
    root_token: str = field(repr=False)


@dataclass(frozen=True)
class RootToken:
    """A root token made from unseal shares (break-glass). Secret; revoke it when done."""

    token: str = field(repr=False)


@dataclass(frozen=True)
class RekeyProgress:
    started: bool
    nonce: str
    progress: int
    required: int
    verification_required: bool


@dataclass(frozen=True)
class RekeyResult:
    """The result of the last old share of a rekey: the new shares (secret), pending verification when asked."""

    keys: tuple[str, ...] = field(repr=False)
    verification_nonce: str = ""


@dataclass(frozen=True)
class RekeyVerification:
    """A pending rekey verification (``nonce`` empty when none is pending)."""

    nonce: str = ""
    progress: int = 0

    @property
    def pending(self) -> bool:
        return bool(self.nonce)


# ------------------------------------------------------------------------------------------------ tokens


@dataclass(frozen=True)
class TokenInfo:
    accessor: str
    policies: tuple[str, ...]
    ttl: int
    renewable: bool
    display_name: str = ""

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> TokenInfo:
        return cls(
            accessor=str(data.get("accessor") or ""),
            policies=names(data.get("policies")),
            ttl=int(data.get("ttl") or 0),
            renewable=bool(data.get("renewable")),
            display_name=str(data.get("display_name") or ""),
        )


@dataclass(frozen=True)
class Login:
    """A token obtained by a login or a renewal. ``token`` is secret (empty for a renewal: the token is kept)."""

    token: str = field(repr=False)
    ttl: int
    renewable: bool


# ------------------------------------------------------------------------------------------------ mounts


@dataclass(frozen=True)
class _Typed:
    """An entry of ``sys/mounts`` or ``sys/audit``: a type, a description and string options."""

    type: str
    description: str = ""
    options: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Self:
        options = data.get("options") or {}  # null on the wire for engines without options
        return cls(str(data.get("type") or ""), str(data.get("description") or "").strip(),
                   {str(k): str(v) for k, v in options.items()})


@dataclass(frozen=True)
class MountInfo(_Typed):
    """A secrets engine (``sys/mounts``). ``options`` carry the engine's options (KV: ``version``)."""

    @property
    def version(self) -> str:
        return self.options.get("version", "")


@dataclass(frozen=True)
class KvConfig:
    """A KV v2 mount's settings (``<mount>/config``); ``delete_version_after`` in seconds (0: never)."""

    max_versions: int = 0
    cas_required: bool = False
    delete_version_after: int = 0

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> KvConfig:
        return cls(int(data.get("max_versions") or 0), bool(data.get("cas_required")),
                   seconds(data.get("delete_version_after")))

    def as_body(self) -> dict[str, Any]:
        return {"max_versions": self.max_versions, "cas_required": self.cas_required,
                "delete_version_after": f"{self.delete_version_after}s"}


# ------------------------------------------------------------------------------------------------ auth


@dataclass(frozen=True)
class AuthMountInfo:
    """An auth method (``sys/auth``)."""

    type: str
    description: str = ""
    accessor: str = ""

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> AuthMountInfo:
        return cls(str(data.get("type") or ""), str(data.get("description") or "").strip(),
                   str(data.get("accessor") or ""))


@dataclass(frozen=True)
class KubernetesAuthConfig:
    """Where a Kubernetes auth mount reviews tokens. The reviewer JWT itself is write-only: the server answers
    only whether one is set."""

    kubernetes_host: str
    kubernetes_ca_cert: str
    disable_local_ca_jwt: bool = False
    token_reviewer_jwt_set: bool = False
    # The cluster's service-account issuer: when set, the mount refuses a token whose ``iss`` is another's (the
    # server's default, validation off, when unset).
    issuer: str = ""
    disable_iss_validation: bool = True

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> KubernetesAuthConfig:
        return cls(str(data.get("kubernetes_host") or "").strip(), str(data.get("kubernetes_ca_cert") or "").strip(),
                   bool(data.get("disable_local_ca_jwt")), bool(data.get("token_reviewer_jwt_set")),
                   str(data.get("issuer") or "").strip(), bool(data.get("disable_iss_validation", True)))


# The fields of a Kubernetes auth role chamberlain renders and compares (Vault's own names).
ROLE_FIELDS = frozenset({"bound_service_account_names", "bound_service_account_namespaces", "audience",
                         "token_policies", "token_ttl", "token_max_ttl"})


@dataclass(frozen=True)
class KubernetesRole:
    """A Kubernetes auth role as chamberlain manages it; TTLs in seconds, lists sorted."""

    bound_service_account_names: tuple[str, ...] = ()
    bound_service_account_namespaces: tuple[str, ...] = ()
    audience: str = ""
    token_policies: tuple[str, ...] = ()
    token_ttl: int = 0
    token_max_ttl: int = 0

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> KubernetesRole:
        """From a role body as the server answers it or as the bundle declares it (other fields are ignored)."""
        return cls(
            bound_service_account_names=names(data.get("bound_service_account_names")),
            bound_service_account_namespaces=names(data.get("bound_service_account_namespaces")),
            audience=str(data.get("audience") or "").strip(),
            token_policies=names(data.get("token_policies")),
            token_ttl=seconds(data.get("token_ttl")),
            token_max_ttl=seconds(data.get("token_max_ttl")),
        )

    def as_body(self) -> dict[str, Any]:
        return {"bound_service_account_names": list(self.bound_service_account_names),
                "bound_service_account_namespaces": list(self.bound_service_account_namespaces),
                "audience": self.audience, "token_policies": list(self.token_policies),
                "token_ttl": self.token_ttl, "token_max_ttl": self.token_max_ttl}


# ------------------------------------------------------------------------------------------------ audit


@dataclass(frozen=True)
class AuditDevice(_Typed):
    """An audit device (``sys/audit``)."""


# ------------------------------------------------------------------------------------------------ pki, transit


@dataclass(frozen=True)
class PkiRole:
    """The PKI role settings chamberlain's tests and rotators need (``<mount>/roles/<name>``)."""

    allowed_domains: tuple[str, ...] = ()
    allow_subdomains: bool = False
    allow_bare_domains: bool = False
    max_ttl: int = 0
    key_type: str = "any"  # the CSR's key decides (chamberlain's rotators send EC keys)

    def as_body(self) -> dict[str, Any]:
        return {"allowed_domains": list(self.allowed_domains), "allow_subdomains": self.allow_subdomains,
                "allow_bare_domains": self.allow_bare_domains, "max_ttl": self.max_ttl, "key_type": self.key_type}


@dataclass(frozen=True)
class TransitKey:
    name: str
    type: str
    latest_version: int
    min_decryption_version: int = 1


@dataclass(frozen=True)
class Plaintext:
    """Data decrypted by transit. Secret: never log or format it."""

    data: bytes = field(repr=False)


@dataclass(frozen=True)
class RawResponse:
    """The ``data`` of a raw path read (probes only; it may hold secret data, hence hidden)."""

    data: Mapping[str, Any] = field(repr=False)


__all__ = [
    "ROLE_FIELDS",
    "AuditDevice",
    "AuthMountInfo",
    "Flavor",
    "HaStatus",
    "Health",
    "InitResult",
    "KeyStatus",
    "KubernetesAuthConfig",
    "KubernetesRole",
    "KvConfig",
    "Login",
    "MountInfo",
    "PkiRole",
    "Plaintext",
    "RawResponse",
    "RekeyProgress",
    "RekeyResult",
    "RekeyVerification",
    "RootToken",
    "SealStatus",
    "ServerState",
    "TokenInfo",
    "TransitKey",
    "differing",
    "names",
    "seconds",
]
