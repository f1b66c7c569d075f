"""Declarative configuration of the runtime authority: desired state from the render bundle, observed state from
Vault, a pure plan between them, and an apply that carries the plan out (``chamberlain authority configure`` and
the Vault part of ``chamberlain plan``).

Boundary: :func:`desired_state` and :func:`plan` are pure (no I/O); :func:`observe` only reads; :func:`apply` only
writes what the plan says, in dependency order (mounts, auth methods and their config, policies, roles, audit
device, then prunes), with a crash checkpoint between groups. Every write is a whole-object put, so re-running
after a crash at any point converges; a second run against a converged server plans nothing.

The audit device depends on the server: Vault enables it through its API, so chamberlain manages it like the
rest; OpenBao takes audit devices only from its configuration file, so there chamberlain *verifies* that a device
of the desired type and options is declared (at any path: the operator names it) and plans ``declare`` when none
is. A ``declare`` change is never applied; :func:`apply` carries out everything else and reports it, and the
caller fails once the rest is done (:class:`DeclarationRequired`) — during ``authority init`` that leaves the
configurator role in place, so a re-run can log in after the operator has fixed the server's configuration.

Ownership: objects in the bundle are managed; so are chamberlain's own configurator and backup policies and roles
(below).
``--prune`` removes policies that are not desired (never ``root``/``default``) and roles that are not desired *inside
the managed Kubernetes auth mounts* — stale roles there still let a ServiceAccount log in. Mounts and auth methods
are never pruned: disabling a KV mount destroys its data, and one chamberlain does not manage is not ours to judge.

The configurator: after ``authority init`` revokes the root token, configuration needs an identity allowed to
change ``sys/`` — the role ``chamberlain.authority.configurator`` in each cluster's Kubernetes auth mount, bound to
a ServiceAccount of its own (``Settings.configurator_service_account`` in ``Settings.configurator_namespace``, a
namespace no workload runs in), never to the controller's: the controller's identity can log in as its cluster's
orchestrator and nothing else. Its policy is limited to the managed mounts, auth mounts, ACL policies, audit
devices, key rotation, token accessors (to sweep orphaned root tokens) and the ledger. It can rewrite policies, so
it is as powerful as the configuration it applies; who may mint its ServiceAccount's tokens (Kubernetes RBAC on
``serviceaccounts/token`` in that namespace: a human or CI) is who may reconfigure Vault.

The backup identity: the role ``chamberlain.authority.backup`` (policy :func:`backup_policy`: read
``sys/storage/raft/snapshot`` and the ledger, nothing else), bound to its own ServiceAccount ``chamberlain-backup``
in the configurator's namespace; ``chamberlain backup`` mints its token the way the configurator's is minted.

Kubernetes auth: one mount per cluster (:func:`chamberlain.render.naming.kubernetes_auth_mount`), each configured
with its own cluster's API server and CA (``Settings.kubernetes_by_mount``, falling back to ``Settings.kubernetes``)
and holding only that cluster's roles, so a token of one cluster is never reviewed by another.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from chamberlain import wellknown as wk
from chamberlain.authority.model import (
    ROLE_FIELDS,
    AuditDevice,
    AuthMountInfo,
    KubernetesAuthConfig,
    KubernetesRole,
    KvConfig,
    MountInfo,
    TransitKey,
    differing,
    seconds,
)
from chamberlain.errors import ChamberlainError, UsageError
from chamberlain.faults import checkpoint
from chamberlain.intent.paths import (
    ACCESSOR_REF,
    AUTHORITY_PARTITION,
    LEDGER_HEAD,
    LEDGER_HEAD_NAME,
    LEDGER_PREFIX,
    ledger_key,
)

CONFIGURATOR = "chamberlain.authority.configurator"
# The identity ``chamberlain backup`` takes snapshots with: read the raft snapshot and the ledger heads, nothing else.
BACKUP = "chamberlain.authority.backup"
BACKUP_TTL = "15m"
CONFIGURATOR_TTL = "15m"
CONFIGURATOR_MAX_TTL = "1h"
AUDIT_PATH = wk.AUDIT_DEVICE_PATH
AUDIT_DESCRIPTION = wk.AUDIT_DEVICE_DESCRIPTION
NEVER_PRUNED_POLICIES = frozenset({"root", "default"})
VAULT_AUDIENCE = "vault"  # the audience chamberlain's ServiceAccount tokens are requested for

Kind = Literal["mount", "kv-config", "transit-key", "auth", "auth-config", "policy", "role", "audit"]
Action = Literal["add", "change", "remove", "conflict", "declare"]  # declare: only the server's own config can
K = TypeVar("K", str, tuple[str, str])
T = TypeVar("T")


class ConfigurationConflict(ChamberlainError):
    """The server holds something under a managed name that cannot be converged safely (e.g. a KV v1 mount where
    a KV v2 mount is wanted); nothing was changed."""


class DeclarationRequired(ChamberlainError):
    """Something the configuration needs can only be declared in the server's own configuration file (OpenBao's
    audit devices); everything else was applied. Permanent until the operator declares it and reloads the
    server."""


# ---------------------------------------------------------------------------------------------- desired state


@dataclass(frozen=True)
class KubernetesAuthSettings:
    """Where Vault's Kubernetes auth checks tokens. ``reviewer_jwt`` is a credential (hidden from repr); without
    one, Vault uses its own pod's token in-cluster, or the logging-in client's JWT when ``disable_local_ca_jwt``
    is set (then that ServiceAccount needs ``system:auth-delegator``)."""

    host: str
    ca_pem: str
    reviewer_jwt: str | None = field(default=None, repr=False)
    disable_local_ca_jwt: bool = False
    issuer: str | None = None  # the cluster's service-account issuer; set: tokens of another issuer are refused


@dataclass(frozen=True)
class Settings:
    """Runtime facts that are not intent: the configurator identity, the audit file, each cluster's API server.

    ``kubernetes_by_mount`` names the API server and CA of each Kubernetes auth mount (one per cluster);
    ``kubernetes`` is the fallback for a mount it does not name (one cluster, or every selected cluster reached
    through one kubeconfig)."""

    controller_namespace: str
    controller_service_account: str
    runtime_mount: str
    audit_file: str | None = "stdout"  # Vault's file device writes to its stdout: container logs
    kubernetes: KubernetesAuthSettings | None = None
    kubernetes_by_mount: Mapping[str, KubernetesAuthSettings] = field(default_factory=dict)
    configurator_namespace: str = "chamberlain-configurator"
    configurator_service_account: str = "chamberlain-configurator"
    backup_service_account: str = "chamberlain-backup"  # in the configurator's namespace (minted by a human or CI)
    # ``chamberlain upgrade`` only: the previous release's shared auth mount while it still holds chamberlain's
    # roles. The configurator may list, read and delete roles there (never create or configure), so the upgrade
    # can remove them once no SecretStore logs in there; empty on every other run.
    legacy_auth_mounts: tuple[str, ...] = ()
    # Write each reviewer JWT given even when the server says one is set (it cannot be read back to compare): a
    # cluster rebuilt empty invalidates the old one with its ServiceAccount.
    replace_reviewer_jwt: bool = False

    def __post_init__(self) -> None:
        if self.configurator_namespace == self.controller_namespace:
            # Separation of duties: the identity that runs the controller must never be the configurator, and no
            # workload runs where the configurator's tokens are minted (RBAC on serviceaccounts/token is
            # namespaced).
            raise UsageError(f"the configurator's namespace cannot be the controller's ({self.controller_namespace}): "
                             "no workload may run where the configurator's tokens are minted")

    def kubernetes_for(self, mount: str) -> KubernetesAuthSettings | None:
        return self.kubernetes_by_mount.get(mount, self.kubernetes)


@dataclass(frozen=True)
class Desired:
    """What the bundle and the settings call for, in the adapter's types (normalised: compares with
    :class:`Observed` field by field)."""

    mounts: Mapping[str, MountInfo]
    kv_config: Mapping[str, KvConfig]  # per KV mount that declares settings
    auth: Mapping[str, AuthMountInfo]
    auth_config: Mapping[str, KubernetesAuthConfig]  # per Kubernetes auth mount
    reviewer_jwts: Mapping[str, str | None] = field(repr=False)  # per Kubernetes auth mount (credentials)
    policies: Mapping[str, str]
    roles: Mapping[tuple[str, str], KubernetesRole]
    audit: Mapping[str, AuditDevice]
    transit_keys: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (mount, key) -> key type
    replace_reviewer: frozenset[str] = frozenset()  # auth mounts whose reviewer JWT is written unconditionally
    pki_mounts: frozenset[str] = frozenset()  # mounts the orchestrators' policies grant sign on (must be pki)

    @property
    def auth_mounts(self) -> list[str]:
        return sorted(self.auth)


def _cluster_of(name: str) -> tuple[str | None, str] | None:
    """(environment, cluster) of a chamberlain policy/role name; None for names that are not per-cluster."""
    parts = name.split(".")
    if parts[0] != "chamberlain":
        return None
    if len(parts) == 3 and parts[2] == "orchestrator":
        return None, parts[1]
    if len(parts) == 5 and parts[4] == "reader":
        return parts[1], parts[2]
    if len(parts) == 6 and parts[5] == "publisher":
        return parts[1], parts[2]
    return None


def select(bundle: Mapping[str, str], environment: str | None = None, cluster: str | None = None) -> dict[str, str]:
    """The bundle restricted to one environment and/or cluster (a Vault serving only that cluster)."""
    if environment is None and cluster is None:
        return dict(bundle)
    out: dict[str, str] = {}
    for path, text in bundle.items():
        stem = path.rsplit("/", 1)[-1].removesuffix(".hcl").removesuffix(".json")
        scope = _cluster_of(stem) if path.startswith(("policies/", "auth/")) else None
        if scope is not None:
            env, clu = scope
            if cluster is not None and clu != cluster:
                continue
            if environment is not None and env is not None and env != environment:
                continue
        out[path] = text
    if "auth.json" in out:
        # One Kubernetes auth mount per cluster: keep the mounts whose roles were kept (a cluster not selected
        # keeps its mount out of this Vault's configuration too).
        kept = {p[len("auth/"):].partition("/roles/")[0] for p in out if p.startswith("auth/") and "/roles/" in p}
        try:
            auth = json.loads(out["auth.json"])
        except ValueError:
            raise UsageError("the Vault bundle's auth.json is malformed") from None
        out["auth.json"] = json.dumps({m: spec for m, spec in auth.items() if m in kept}, indent=2,
                                      sort_keys=True) + "\n"
    return out


def configurator_policy(mounts: Iterable[str], auth_mounts: Iterable[str], runtime: str,
                        transit_keys: Collection[tuple[str, str]] = (), legacy_auth_mounts: Iterable[str] = ()) -> str:
    blocks: list[tuple[str, list[str]]] = [("sys/mounts", ["read"])]
    transit = {mount for mount, _ in transit_keys}
    for m in sorted(mounts):
        blocks += [(f"sys/mounts/{m}", ["create", "read", "update"]), (f"sys/mounts/{m}/tune", ["read", "update"])]
        if m not in transit:  # a KV mount's settings; a transit mount's config/* is never the configurator's
            blocks.append((f"{m}/config", ["read", "update"]))
    blocks.append(("sys/auth", ["read"]))
    for a in sorted(auth_mounts):
        blocks += [(f"sys/auth/{a}", ["create", "read", "sudo", "update"]),
                   (f"sys/auth/{a}/tune", ["read", "update"]),
                   (f"auth/{a}/config", ["read", "update"]),
                   (f"auth/{a}/role", ["list"]),
                   (f"auth/{a}/role/*", ["create", "delete", "list", "read", "update"])]
    for a in sorted(set(legacy_auth_mounts) - set(auth_mounts)):  # the upgrade's clean-up of the shared mount
        blocks += [(f"auth/{a}/role", ["list"]), (f"auth/{a}/role/*", ["delete", "list", "read"])]
    blocks += [
        ("sys/policies/acl", ["list"]),
        ("sys/policies/acl/*", ["create", "delete", "read", "update"]),
        ("sys/audit", ["read", "sudo"]),
        ("sys/audit/*", ["create", "delete", "sudo", "update"]),
        ("sys/rotate", ["sudo", "update"]),
        # OpenBao rekeys here, with a token (Vault's sys/rekey/* needs none). Exact paths: a bare sys/rotate/root
        # would rotate the root key without any share.
        ("sys/rotate/root/init", ["create", "delete", "read", "update"]),
        ("sys/rotate/root/update", ["create", "update"]),
        ("sys/rotate/root/verify", ["create", "delete", "read", "update"]),
        # The recovery keys of an auto-unsealed OpenBao, likewise (they authorize it: k of them, as shares do).
        ("sys/rotate/recovery/init", ["create", "delete", "read", "update"]),
        ("sys/rotate/recovery/update", ["create", "update"]),
        ("sys/rotate/recovery/verify", ["create", "delete", "read", "update"]),
        ("sys/key-status", ["read"]),
        ("auth/token/accessors", ["list", "sudo"]),
        ("auth/token/lookup-accessor", ["update"]),
        ("auth/token/revoke-accessor", ["update"]),
        # The ledger (issue 11): every partition readable, its own (_authority/configurator) writable, the
        # previous release's head read only. Transit keys: created and read by exact name, signing only with the
        # configurator's own ledger key; never export, config (deletion_allowed, exportable), rotate or delete.
        (f"{runtime}/data/{LEDGER_PREFIX}/*", ["read"]),
        (f"{runtime}/metadata/{LEDGER_PREFIX}/*", ["list", "read"]),
        (f"{runtime}/data/{LEDGER_PREFIX}/{'/'.join(AUTHORITY_PARTITION)}/*", ["create", "read"]),
        (f"{runtime}/data/{LEDGER_PREFIX}/{'/'.join(AUTHORITY_PARTITION)}/{LEDGER_HEAD_NAME}",
         ["create", "read", "update"]),
        (f"{runtime}/data/{LEDGER_HEAD}", ["read"]),
        (f"{runtime}/metadata/{LEDGER_HEAD}", ["read"]),
    ]
    for mount, name in sorted(transit_keys):
        # Transit answers key creation as an update (it has no existence check on keys/<name>); a POST to an
        # existing key changes nothing (its settings are keys/<name>/config, never granted).
        blocks.append((f"{mount}/keys/{name}", ["create", "read", "update"]))
        if name == ledger_key(AUTHORITY_PARTITION[0]):
            blocks.append((f"{mount}/sign/{name}", ["update"]))
    lines = ["# Managed by chamberlain (authority configure): the identity that converges Vault's configuration.\n"]
    for path, caps in blocks:
        quoted = ", ".join(f'"{c}"' for c in caps)
        lines.append(f'\npath "{path}" {{\n  capabilities = [{quoted}]\n}}\n')
    return "".join(lines)


def backup_policy(runtime: str) -> str:
    """``chamberlain backup``'s identity: the raft snapshot (the storage, still barrier-encrypted: opening it takes
    the unseal shares) and the ledger's heads and entries (no values), so a restore can check the ledger continues.
    No sudo, no write, no secret path."""
    blocks: list[tuple[str, list[str]]] = [
        ("sys/storage/raft/snapshot", ["read"]),
        (f"{runtime}/data/{LEDGER_PREFIX}/*", ["read"]),
        (f"{runtime}/metadata/{LEDGER_PREFIX}", ["list"]),
        (f"{runtime}/metadata/{LEDGER_PREFIX}/*", ["list"]),
        (f"{runtime}/metadata/{LEDGER_HEAD}", ["read"]),
    ]
    lines = ["# Managed by chamberlain (authority configure): the identity `chamberlain backup` snapshots with.\n"]
    for path, caps in blocks:
        quoted = ", ".join(f'"{c}"' for c in caps)
        lines.append(f'\npath "{path}" {{\n  capabilities = [{quoted}]\n}}\n')
    return "".join(lines)


def _bundle_json(bundle: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        return json.loads(bundle["mounts.json"]), json.loads(bundle.get("auth.json", "{}"))
    except (KeyError, ValueError) as exc:
        raise UsageError(f"the Vault bundle is incomplete or malformed ({type(exc).__name__})") from None


def _transit_keys(bundle: Mapping[str, str]) -> dict[tuple[str, str], str]:
    """``transit.json``: ``{mount: {key: {type}}}`` (absent in bundles of the previous release)."""
    try:
        raw = json.loads(bundle.get("transit.json", "{}"))
        return {(str(mount), str(name)): str(spec["type"])
                for mount, keys in raw.items() for name, spec in keys.items()}
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"the Vault bundle's transit.json is malformed ({type(exc).__name__})") from None


def _role_of(path: str, text: str) -> KubernetesRole:
    body = json.loads(text)
    unknown = sorted(set(body) - ROLE_FIELDS)
    if unknown:  # a field chamberlain would neither write nor compare: refuse rather than drop it silently
        raise UsageError(f"{path}: role fields chamberlain does not manage: {', '.join(unknown)}")
    return KubernetesRole.from_api(body)


def _configurator_role(settings: Settings) -> KubernetesRole:
    return KubernetesRole(
        bound_service_account_names=(settings.configurator_service_account,),
        bound_service_account_namespaces=(settings.configurator_namespace,),
        audience=VAULT_AUDIENCE,
        token_policies=(CONFIGURATOR,),
        token_ttl=seconds(CONFIGURATOR_TTL),
        token_max_ttl=seconds(CONFIGURATOR_MAX_TTL),
    )


def _backup_role(settings: Settings) -> KubernetesRole:
    return KubernetesRole(
        bound_service_account_names=(settings.backup_service_account,),
        bound_service_account_namespaces=(settings.configurator_namespace,),
        audience=VAULT_AUDIENCE,
        token_policies=(BACKUP,),
        token_ttl=seconds(BACKUP_TTL),
        token_max_ttl=seconds(BACKUP_TTL),
    )


def desired_state(bundle: Mapping[str, str], settings: Settings) -> Desired:
    """The configuration the bundle (files relative to ``vault/``) and the runtime settings call for."""
    mounts, auth = _bundle_json(bundle)
    policies: dict[str, str] = {}
    roles: dict[tuple[str, str], KubernetesRole] = {}
    for path, text in bundle.items():
        if path.startswith("policies/") and path.endswith(".hcl"):
            policies[path[len("policies/"):-len(".hcl")]] = text
        elif path.startswith("auth/") and path.endswith(".json") and "/roles/" in path:
            mount, _, name = path[len("auth/"):-len(".json")].partition("/roles/")
            roles[(mount, name)] = _role_of(path, text)
    if settings.runtime_mount not in mounts:
        raise UsageError(f"the runtime mount {settings.runtime_mount!r} is not in the bundle's mounts.json")
    transit_keys = _transit_keys(bundle)
    policies[CONFIGURATOR] = configurator_policy(mounts, auth, settings.runtime_mount, transit_keys,
                                                 settings.legacy_auth_mounts)
    policies[BACKUP] = backup_policy(settings.runtime_mount)
    for mount in auth:
        roles[(mount, CONFIGURATOR)] = _configurator_role(settings)
        roles[(mount, BACKUP)] = _backup_role(settings)
    auth_config: dict[str, KubernetesAuthConfig] = {}
    reviewer_jwts: dict[str, str | None] = {}
    for mount, spec in auth.items():
        k = settings.kubernetes_for(mount)
        if k is None or spec.get("type") != "kubernetes":
            continue
        issuer = (k.issuer or "").strip()
        auth_config[mount] = KubernetesAuthConfig(k.host.strip(), k.ca_pem.strip(), k.disable_local_ca_jwt,
                                                  k.reviewer_jwt is not None, issuer, not issuer)
        reviewer_jwts[mount] = k.reviewer_jwt
    audit = {} if not settings.audit_file else {
        AUDIT_PATH: AuditDevice("file", AUDIT_DESCRIPTION, {"file_path": settings.audit_file})}
    return Desired(
        mounts={path: MountInfo.from_api(spec) for path, spec in mounts.items()},
        kv_config={path: KvConfig.from_api(spec["kv_config"])
                   for path, spec in mounts.items() if spec.get("kv_config")},
        auth={path: AuthMountInfo.from_api(spec) for path, spec in auth.items()},
        auth_config=auth_config, reviewer_jwts=reviewer_jwts,
        policies=policies, roles=roles, audit=audit, transit_keys=transit_keys,
        replace_reviewer=frozenset(m for m, jwt in reviewer_jwts.items() if jwt is not None)
        if settings.replace_reviewer_jwt else frozenset(),
        pki_mounts=_pki_mounts(bundle),
    )


def _pki_mounts(bundle: Mapping[str, str]) -> frozenset[str]:
    text = bundle.get("pki.json")
    if text is None:
        return frozenset()
    try:
        listed = json.loads(text).get("mounts", [])
    except (ValueError, AttributeError):
        raise UsageError("the Vault bundle's pki.json is malformed") from None
    if not isinstance(listed, list) or not all(isinstance(m, str) for m in listed):
        raise UsageError("the Vault bundle's pki.json is malformed")
    return frozenset(m.strip("/") for m in listed)


# --------------------------------------------------------------------------------------------- observed state


class MountsAPI(Protocol):
    def list(self) -> dict[str, MountInfo]: ...
    def enable(self, path: str, mount: MountInfo) -> None: ...
    def tune(self, path: str, description: str) -> None: ...
    def read_kv_config(self, mount: str) -> KvConfig: ...
    def configure_kv(self, mount: str, config: KvConfig) -> None: ...


class AuthAPI(Protocol):
    def list_mounts(self) -> dict[str, AuthMountInfo]: ...
    def enable(self, path: str, method: AuthMountInfo) -> None: ...
    def read_kubernetes_config(self, mount: str) -> KubernetesAuthConfig | None: ...
    def write_kubernetes_config(self, mount: str, config: KubernetesAuthConfig, reviewer_jwt: str | None) -> None: ...
    def list_roles(self, mount: str) -> list[str]: ...
    def read_role(self, mount: str, name: str) -> KubernetesRole | None: ...
    def write_role(self, mount: str, name: str, role: KubernetesRole) -> None: ...
    def delete_role(self, mount: str, name: str) -> None: ...


class PoliciesAPI(Protocol):
    def list(self) -> list[str]: ...
    def read(self, name: str) -> str | None: ...
    def write(self, name: str, text: str) -> None: ...
    def delete(self, name: str) -> None: ...


class AuditAPI(Protocol):
    @property
    def declarative(self) -> bool: ...
    def list(self) -> dict[str, AuditDevice]: ...
    def enable(self, path: str, device: AuditDevice) -> None: ...
    def disable(self, path: str) -> None: ...


class TransitKeysAPI(Protocol):
    def read_key(self, mount: str, name: str) -> TransitKey | None: ...
    def ensure_key(self, mount: str, name: str, key_type: str = ...) -> TransitKey: ...


class ConfigAPI(Protocol):
    """The areas of :class:`~chamberlain.authority.vault.VaultClient` configuration uses (a fake stands in)."""

    @property
    def mounts(self) -> MountsAPI: ...
    @property
    def auth(self) -> AuthAPI: ...
    @property
    def policies(self) -> PoliciesAPI: ...
    @property
    def audit(self) -> AuditAPI: ...
    @property
    def transit(self) -> TransitKeysAPI: ...


@dataclass(frozen=True)
class Observed:
    mounts: Mapping[str, MountInfo]
    kv_config: Mapping[str, KvConfig]
    auth: Mapping[str, AuthMountInfo]
    auth_config: Mapping[str, KubernetesAuthConfig]
    policies: Mapping[str, str]
    roles: Mapping[tuple[str, str], KubernetesRole]
    audit: Mapping[str, AuditDevice]
    audit_declarative: bool = False  # the server takes audit devices only from its configuration file (OpenBao)
    transit_keys: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (mount, key) -> key type


def observe(vault: ConfigAPI, desired: Desired) -> Observed:
    """Read what the plan compares: every mount and auth method, the managed mounts' settings, every policy, the
    roles of the managed auth mounts and every audit device."""
    mounts = vault.mounts.list()
    kv_config = {m: vault.mounts.read_kv_config(m) for m in desired.mounts
                 if m in mounts and mounts[m].type == "kv"}
    auth = vault.auth.list_mounts()
    auth_config: dict[str, KubernetesAuthConfig] = {}
    roles: dict[tuple[str, str], KubernetesRole] = {}
    for mount in desired.auth:
        if mount not in auth:
            continue
        cfg = vault.auth.read_kubernetes_config(mount) if auth[mount].type == "kubernetes" else None
        if cfg is not None:
            auth_config[mount] = cfg
        for name in vault.auth.list_roles(mount):
            role = vault.auth.read_role(mount, name)
            if role is not None:
                roles[(mount, name)] = role
    policies: dict[str, str] = {}
    for name in vault.policies.list():
        if name == "root":
            continue  # not readable and never ours
        text = vault.policies.read(name)
        if text is not None:
            policies[name] = text
    transit_keys: dict[tuple[str, str], str] = {}
    for mount, name in desired.transit_keys:
        if mount in mounts and (key := vault.transit.read_key(mount, name)) is not None:
            transit_keys[(mount, name)] = key.type
    return Observed(mounts, kv_config, auth, auth_config, policies, roles, vault.audit.list(),
                    audit_declarative=vault.audit.declarative, transit_keys=transit_keys)


# ------------------------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class Change:
    kind: Kind
    name: str
    action: Action
    fields: tuple[str, ...] = ()
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "name": self.name, "action": self.action}
        if self.fields:
            out["fields"] = list(self.fields)
        if self.detail:
            out["detail"] = self.detail
        return out

    def line(self) -> str:
        sign = {"add": "+", "change": "~", "remove": "-", "conflict": "!", "declare": "?"}[self.action]
        extra = f" ({', '.join(self.fields)})" if self.fields else ""
        note = f" — {self.detail}" if self.detail else ""
        return f"{sign} {self.kind} {self.name}{extra}{note}"


def _plan_mounts(desired: Desired, observed: Observed) -> list[Change]:
    changes: list[Change] = []
    for path, want in sorted(desired.mounts.items()):
        have = observed.mounts.get(path)
        if have is None:
            changes.append(Change("mount", path, "add"))
            if path in desired.kv_config:
                changes.append(Change("kv-config", path, "add"))
            continue
        if have.type != want.type or have.version != want.version:
            changes.append(Change("mount", path, "conflict", detail=(
                f"exists as {have.type} version {have.version or '?'}, want {want.type} version {want.version}; "
                "migrate it by hand")))
            continue
        if have.description != want.description:
            changes.append(Change("mount", path, "change", ("description",)))
        want_kv = desired.kv_config.get(path)
        if want_kv is not None and (fields := differing(want_kv, observed.kv_config.get(path, KvConfig()))):
            changes.append(Change("kv-config", path, "change", fields))
    return changes


Verdict = tuple[Action, tuple[str, ...], str] | None  # (action, fields, detail); None: nothing to change


def _compare(kind: Kind, desired: Mapping[K, T], observed: Mapping[K, T], judge: Callable[[T, T], Verdict],
             name: Callable[[K], str] = str) -> list[Change]:
    """One change per desired object: ``add`` when the server lacks it, else what ``judge(want, have)`` says."""
    changes: list[Change] = []
    for key, want in sorted(desired.items()):
        have = observed.get(key)
        verdict: Verdict = ("add", (), "") if have is None else judge(want, have)
        if verdict is not None:
            action, changed, detail = verdict
            changes.append(Change(kind, name(key), action, changed, detail))
    return changes


def _fields_differ(want: Any, have: Any) -> Verdict:
    return ("change", changed, "") if (changed := differing(want, have)) else None


def _plan_auth(desired: Desired, observed: Observed) -> list[Change]:
    def same_type(want: AuthMountInfo, have: AuthMountInfo) -> Verdict:
        return None if have.type == want.type else ("conflict", (), f"exists as {have.type}, want {want.type}")

    changes = (_compare("auth", desired.auth, observed.auth, same_type)
               + _compare("auth-config", desired.auth_config, observed.auth_config, _fields_differ))
    planned = {c.name for c in changes if c.kind == "auth-config"}
    return changes + [Change("auth-config", mount, "change", ("token_reviewer_jwt",))
                      for mount in sorted(desired.replace_reviewer & set(desired.auth_config) - planned)]


def resolve_accessors(text: str, auth: Mapping[str, AuthMountInfo]) -> str:
    """``text`` with each ``<<accessor:MOUNT>>`` of the bundle (a templated policy names an auth mount's accessor,
    which exists only once the mount does) replaced by the live accessor; an unknown one is left as it is."""
    def live(match: re.Match[str]) -> str:
        info = auth.get(match.group(1))
        return info.accessor if info is not None and info.accessor else match.group(0)

    return ACCESSOR_REF.sub(live, text)


def _plan_policies_roles(desired: Desired, observed: Observed) -> list[Change]:
    def same_text(want: str, have: str) -> Verdict:
        want = resolve_accessors(want, observed.auth)
        return None if have.strip() == want.strip() else ("change", ("policy",), "")

    return (_compare("policy", desired.policies, observed.policies, same_text)
            + _compare("role", desired.roles, observed.roles, _fields_differ, name=lambda key: "/".join(key)))


def declaration(path: str, device: AuditDevice) -> str:
    """The server-configuration stanza (HCL) that declares ``device`` at ``path``, as OpenBao reads it."""
    options = " ".join(f"{k} = {json.dumps(v)}" for k, v in sorted(device.options.items()))
    description = json.dumps(device.description)
    return f'audit "{device.type}" "{path}" {{ description = {description} options {{ {options} }} }}'


def plan_audit(desired: Mapping[str, AuditDevice], observed: Mapping[str, AuditDevice], *,
               declarative: bool) -> list[Change]:
    """The audit device: enabled through the API where the server allows it (re-enabled when its options differ:
    devices cannot be tuned); where it only takes them from its configuration file, verified: any device of the
    same type carrying the desired options satisfies it, else ``declare`` with the stanza to add."""
    if not declarative:
        def same_device(want: AuditDevice, have: AuditDevice) -> Verdict:
            if have.type == want.type and dict(have.options) == dict(want.options):
                return None
            return "change", ("options",), "re-enabled (audit devices cannot be tuned)"

        return _compare("audit", desired, observed, same_device)
    changes: list[Change] = []
    for path, want in sorted(desired.items()):
        if any(have.type == want.type and want.options.items() <= have.options.items() for have in observed.values()):
            continue
        changes.append(Change("audit", path, "declare", detail=(
            "this server takes audit devices only from its configuration file: add "
            f"{declaration(path, want)} and reload it (SIGHUP)")))
    return changes


def _plan_transit(desired: Desired, observed: Observed) -> list[Change]:
    """Transit keys are created, never changed or deleted: a key of another type under the name is a conflict."""
    def same_type(want: str, have: str) -> Verdict:
        return None if want == have else ("conflict", (), f"exists as {have}, want {want}; a key is never replaced")

    return _compare("transit-key", desired.transit_keys, observed.transit_keys, same_type,
                    name=lambda key: "/".join(key))


def _plan_prunes(desired: Desired, observed: Observed) -> list[Change]:
    changes = [Change("role", f"{mount}/{name}", "remove")
               for (mount, name) in sorted(set(observed.roles) - set(desired.roles)) if mount in desired.auth]
    changes += [Change("policy", name, "remove")
                for name in sorted(set(observed.policies) - set(desired.policies) - NEVER_PRUNED_POLICIES)]
    return changes


def _plan_pki(desired: Desired, observed: Observed) -> list[Change]:
    """A mount the orchestrators would sign on that exists as anything but a PKI engine is a conflict: ``update``
    on ``<mount>/sign/<role>`` of a transit or SSH engine signs with that engine's keys (red team). One not enabled
    yet is left to its operator: the sign fails until a PKI engine is mounted there."""
    return [Change("mount", m, "conflict", detail=(
                f"x509-vault-pki intents sign on it, but it is a {observed.mounts[m].type} engine, not pki: the "
                "orchestrator's sign grant would sign with its keys; point the intents' x509-pki-mount at a PKI "
                "engine"))
            for m in sorted(desired.pki_mounts) if m in observed.mounts and observed.mounts[m].type != "pki"]


def plan(desired: Desired, observed: Observed, *, prune: bool = False) -> list[Change]:
    """The changes that bring ``observed`` to ``desired`` (pure). Conflicts are reported, never resolved."""
    changes = [*_plan_mounts(desired, observed), *_plan_pki(desired, observed), *_plan_transit(desired, observed),
               *_plan_auth(desired, observed),
               *_plan_policies_roles(desired, observed),
               *plan_audit(desired.audit, observed.audit, declarative=observed.audit_declarative)]
    return changes + _plan_prunes(desired, observed) if prune else changes


def summarize(changes: Iterable[Change]) -> dict[str, int]:
    counts = {"add": 0, "change": 0, "remove": 0, "conflict": 0, "declare": 0}
    for c in changes:
        counts[c.action] += 1
    return counts


# ------------------------------------------------------------------------------------------------- applying


@dataclass
class ApplyResult:
    changes: list[Change]
    applied: int = 0

    @property
    def counts(self) -> dict[str, int]:
        return summarize(self.changes)

    @property
    def undeclared(self) -> list[Change]:
        """What only the server's configuration file can add (never applied; the caller fails on it)."""
        return [c for c in self.changes if c.action == "declare"]

    def raise_undeclared(self) -> None:
        if self.undeclared:
            raise DeclarationRequired("everything else was applied, but " + "; ".join(
                f"{c.kind} {c.name}: {c.detail}" for c in self.undeclared))


def _apply_mounts(vault: ConfigAPI, desired: Desired, changes: list[Change]) -> int:
    applied = 0
    for c in _of(changes, "mount"):
        if c.action == "add":
            vault.mounts.enable(c.name, desired.mounts[c.name])
        else:
            vault.mounts.tune(c.name, desired.mounts[c.name].description)
        applied += 1
    for c in _of(changes, "kv-config"):
        vault.mounts.configure_kv(c.name, desired.kv_config[c.name])
        applied += 1
    return applied


def _apply_transit(vault: ConfigAPI, desired: Desired, changes: list[Change]) -> int:
    adds = _of(changes, "transit-key", "add")
    for c in adds:
        mount, _, name = c.name.partition("/")
        vault.transit.ensure_key(mount, name, desired.transit_keys[(mount, name)])
    return len(adds)


def _apply_auth(vault: ConfigAPI, desired: Desired, changes: list[Change]) -> int:
    applied = 0
    for c in _of(changes, "auth", "add"):
        vault.auth.enable(c.name, desired.auth[c.name])
        applied += 1
    for c in _of(changes, "auth-config"):
        vault.auth.write_kubernetes_config(c.name, desired.auth_config[c.name], desired.reviewer_jwts.get(c.name))
        applied += 1
    return applied


def _apply_policies(vault: ConfigAPI, desired: Desired, changes: list[Change]) -> int:
    writes = [c for c in _of(changes, "policy") if c.action in ("add", "change")]
    auth = vault.auth.list_mounts() if any(ACCESSOR_REF.search(desired.policies[c.name]) for c in writes) else {}
    for c in writes:
        text = resolve_accessors(desired.policies[c.name], auth)  # the auth mounts exist by now (_apply_auth)
        if (missing := ACCESSOR_REF.search(text)) is not None:
            raise ConfigurationConflict(f"policy {c.name} names the auth mount {missing.group(1)!r}, which has no "
                                        "accessor; nothing more was changed")
        vault.policies.write(c.name, text)
    return len(writes)


def _apply_roles(vault: ConfigAPI, desired: Desired, changes: list[Change]) -> int:
    writes = [c for c in _of(changes, "role") if c.action in ("add", "change")]
    for c in writes:
        mount, _, name = c.name.partition("/")
        vault.auth.write_role(mount, name, desired.roles[(mount, name)])
    return len(writes)


def _apply_audit(vault: ConfigAPI, desired: Desired, changes: list[Change]) -> int:
    devices = [c for c in _of(changes, "audit") if c.action != "declare"]
    for c in devices:
        if c.action == "change":
            vault.audit.disable(c.name)
        vault.audit.enable(c.name, desired.audit[c.name])
    return len(devices)


def _apply_prunes(vault: ConfigAPI, desired: Desired, changes: list[Change]) -> int:
    # Prunes last: a role is removed before the policy it names, and nothing desired depends on either.
    roles, policies = _of(changes, "role", "remove"), _of(changes, "policy", "remove")
    for c in roles:
        mount, _, name = c.name.partition("/")
        vault.auth.delete_role(mount, name)
    for c in policies:
        vault.policies.delete(c.name)
    return len(roles) + len(policies)


def _of(changes: list[Change], kind: Kind, action: Action | None = None) -> list[Change]:
    return [c for c in changes if c.kind == kind and (action is None or c.action == action)]


# Groups in dependency order, each followed by its crash checkpoint (names are part of the crash tests).
_GROUPS: tuple[tuple[Callable[[ConfigAPI, Desired, list[Change]], int], str | None], ...] = (
    (_apply_mounts, "configure.after-mounts"),
    (_apply_transit, "configure.after-transit-keys"),
    (_apply_auth, "configure.after-auth"),
    (_apply_policies, "configure.after-policies"),
    (_apply_roles, "configure.after-roles"),
    (_apply_audit, None),
    (_apply_prunes, None),
)


def apply(vault: ConfigAPI, desired: Desired, changes: list[Change]) -> ApplyResult:
    """Carry out ``changes`` (from :func:`plan`) in dependency order. Refuses the whole plan on any conflict."""
    conflicts = [c for c in changes if c.action == "conflict"]
    if conflicts:
        raise ConfigurationConflict(
            "nothing was changed; resolve by hand first: " + "; ".join(c.line() for c in conflicts))
    result = ApplyResult(changes)
    for group, point in _GROUPS:
        result.applied += group(vault, desired, changes)
        if point is not None:
            checkpoint(point)
    return result
