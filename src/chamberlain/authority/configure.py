"""Declarative configuration of the runtime authority: desired state from the render bundle, observed state from
Vault, a pure plan between them, and an apply that carries the plan out (``chamberlain authority configure`` and
the Vault part of ``chamberlain plan``).

Boundary: :func:`desired_state` and :func:`plan` are pure (no I/O); :func:`observe` only reads; :func:`apply` only
writes what the plan says, in dependency order (mounts, auth methods and their config, policies, roles, audit
device, then prunes), with a crash checkpoint between groups. Every write is a whole-object put, so re-running
after a crash at any point converges; a second run against a converged server plans nothing.

Ownership: objects in the bundle are managed; so are chamberlain's own configurator policy and role (below).
``--prune`` removes policies that are not desired (never ``root``/``default``) and roles that are not desired *inside
the managed Kubernetes auth mounts* — stale roles there still let a ServiceAccount log in. Mounts and auth methods
are never pruned: disabling a KV mount destroys its data, and one chamberlain does not manage is not ours to judge.

The configurator: after ``authority init`` revokes the root token, configuration needs an identity allowed to
change ``sys/`` — the role ``chamberlain.authority.configurator`` in the Kubernetes auth mount, bound to the
controller's ServiceAccount and namespace, with a policy limited to the managed mounts, auth mounts, ACL policies,
audit devices, key rotation, token accessors (to sweep orphaned root tokens) and the ledger. It can rewrite
policies, so it is as powerful as the configuration it applies; who may mint its ServiceAccount's tokens
(Kubernetes RBAC on ``serviceaccounts/token``) is who may reconfigure Vault.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from chamberlain.errors import ChamberlainError, UsageError
from chamberlain.faults import checkpoint
from chamberlain.intent.durations import parse_duration
from chamberlain.intent.paths import LEDGER_HEAD, LEDGER_PREFIX

CONFIGURATOR = "chamberlain.authority.configurator"
CONFIGURATOR_TTL = "15m"
CONFIGURATOR_MAX_TTL = "1h"
AUDIT_PATH = "chamberlain-file"
AUDIT_DESCRIPTION = "chamberlain: file audit device"
NEVER_PRUNED_POLICIES = frozenset({"root", "default"})
VAULT_AUDIENCE = "vault"  # the audience chamberlain's ServiceAccount tokens are requested for

Kind = Literal["mount", "kv-config", "auth", "auth-config", "policy", "role", "audit"]
Action = Literal["add", "change", "remove", "conflict"]


class ConfigurationConflict(ChamberlainError):
    """The server holds something under a managed name that cannot be converged safely (e.g. a KV v1 mount where
    a KV v2 mount is wanted); nothing was changed."""


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


@dataclass(frozen=True)
class Settings:
    """Runtime facts that are not intent: the controller identity, the audit file, the cluster's API server."""

    controller_namespace: str
    controller_service_account: str
    runtime_mount: str
    audit_file: str | None = "stdout"  # Vault's file device writes to its stdout: container logs
    kubernetes: KubernetesAuthSettings | None = None


@dataclass(frozen=True)
class Desired:
    mounts: Mapping[str, Mapping[str, Any]]
    auth: Mapping[str, Mapping[str, Any]]
    auth_config: Mapping[str, Mapping[str, Any]]  # per auth mount; comparable fields only
    reviewer_jwt: str | None = field(repr=False)
    policies: Mapping[str, str]
    roles: Mapping[tuple[str, str], Mapping[str, Any]]
    audit: Mapping[str, Mapping[str, Any]]

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
    return out


def configurator_policy(mounts: Iterable[str], auth_mounts: Iterable[str], runtime: str) -> str:
    blocks: list[tuple[str, list[str]]] = [("sys/mounts", ["read"])]
    for m in sorted(mounts):
        blocks += [(f"sys/mounts/{m}", ["create", "read", "update"]), (f"sys/mounts/{m}/tune", ["read", "update"]),
                   (f"{m}/config", ["read", "update"])]
    blocks.append(("sys/auth", ["read"]))
    for a in sorted(auth_mounts):
        blocks += [(f"sys/auth/{a}", ["create", "read", "sudo", "update"]),
                   (f"sys/auth/{a}/tune", ["read", "update"]),
                   (f"auth/{a}/config", ["read", "update"]),
                   (f"auth/{a}/role", ["list"]),
                   (f"auth/{a}/role/*", ["create", "delete", "list", "read", "update"])]
    blocks += [
        ("sys/policies/acl", ["list"]),
        ("sys/policies/acl/*", ["create", "delete", "read", "update"]),
        ("sys/audit", ["read", "sudo"]),
        ("sys/audit/*", ["create", "delete", "sudo", "update"]),
        ("sys/rotate", ["sudo", "update"]),
        ("sys/key-status", ["read"]),
        ("auth/token/accessors", ["list", "sudo"]),
        ("auth/token/lookup-accessor", ["update"]),
        ("auth/token/revoke-accessor", ["update"]),
        (f"{runtime}/data/{LEDGER_PREFIX}/*", ["create", "read"]),
        (f"{runtime}/metadata/{LEDGER_PREFIX}/*", ["list", "read"]),
        (f"{runtime}/data/{LEDGER_HEAD}", ["create", "read", "update"]),
        (f"{runtime}/metadata/{LEDGER_HEAD}", ["read"]),
    ]
    lines = ["# Managed by chamberlain (authority configure): the identity that converges Vault's configuration.\n"]
    for path, caps in blocks:
        quoted = ", ".join(f'"{c}"' for c in caps)
        lines.append(f'\npath "{path}" {{\n  capabilities = [{quoted}]\n}}\n')
    return "".join(lines)


def desired_state(bundle: Mapping[str, str], settings: Settings) -> Desired:
    """The configuration the bundle (files relative to ``vault/``) and the runtime settings call for."""
    try:
        mounts = json.loads(bundle["mounts.json"])
        auth = json.loads(bundle.get("auth.json", "{}"))
    except (KeyError, ValueError) as exc:
        raise UsageError(f"the Vault bundle is incomplete or malformed ({type(exc).__name__})") from None
    policies: dict[str, str] = {}
    roles: dict[tuple[str, str], Mapping[str, Any]] = {}
    for path, text in bundle.items():
        if path.startswith("policies/") and path.endswith(".hcl"):
            policies[path[len("policies/"):-len(".hcl")]] = text
        elif path.startswith("auth/") and path.endswith(".json") and "/roles/" in path:
            mount, _, name = path[len("auth/"):-len(".json")].partition("/roles/")
            roles[(mount, name)] = json.loads(text)
    if settings.runtime_mount not in mounts:
        raise UsageError(f"the runtime mount {settings.runtime_mount!r} is not in the bundle's mounts.json")
    policies[CONFIGURATOR] = configurator_policy(mounts, auth, settings.runtime_mount)
    for mount in auth:
        roles[(mount, CONFIGURATOR)] = {
            "audience": VAULT_AUDIENCE,
            "bound_service_account_names": [settings.controller_service_account],
            "bound_service_account_namespaces": [settings.controller_namespace],
            "token_policies": [CONFIGURATOR],
            "token_ttl": CONFIGURATOR_TTL,
            "token_max_ttl": CONFIGURATOR_MAX_TTL,
        }
    auth_config: dict[str, Mapping[str, Any]] = {}
    k = settings.kubernetes
    if k is not None:
        for mount, spec in auth.items():
            if spec.get("type") == "kubernetes":
                auth_config[mount] = {
                    "kubernetes_host": k.host,
                    "kubernetes_ca_cert": k.ca_pem.strip(),
                    "disable_local_ca_jwt": k.disable_local_ca_jwt,
                    "token_reviewer_jwt_set": k.reviewer_jwt is not None,
                }
    audit = {}
    if settings.audit_file:
        audit[AUDIT_PATH] = {"type": "file", "description": AUDIT_DESCRIPTION,
                             "options": {"file_path": settings.audit_file}}
    return Desired(mounts, auth, auth_config, k.reviewer_jwt if k else None, policies, roles, audit)


# --------------------------------------------------------------------------------------------- observed state


class ConfigAPI(Protocol):
    """The part of :class:`~chamberlain.authority.vault.VaultClient` configuration uses (a fake stands in)."""

    def list_secret_mounts(self) -> dict[str, dict[str, Any]]: ...
    def enable_secret_mount(self, path: str, type_: str, description: str, options: Mapping[str, str]) -> None: ...
    def tune_mount_description(self, path: str, description: str) -> None: ...
    def read_kv_config(self, mount: str) -> dict[str, Any]: ...
    def configure_kv(self, mount: str, config: Mapping[str, Any]) -> None: ...
    def list_auth_mounts(self) -> dict[str, dict[str, Any]]: ...
    def enable_auth_mount(self, path: str, type_: str, description: str) -> None: ...
    def read_path(self, path: str) -> dict[str, Any] | None: ...
    def write_path(self, path: str, body: Mapping[str, Any]) -> None: ...
    def delete_path(self, path: str) -> None: ...
    def list_path(self, path: str) -> list[str]: ...
    def list_policies(self) -> list[str]: ...
    def read_policy(self, name: str) -> str | None: ...
    def write_policy(self, name: str, text: str) -> None: ...
    def delete_policy(self, name: str) -> None: ...
    def list_audit_devices(self) -> dict[str, dict[str, Any]]: ...
    def enable_audit_device(self, path: str, type_: str, description: str, options: Mapping[str, str]) -> None: ...
    def disable_audit_device(self, path: str) -> None: ...


@dataclass(frozen=True)
class Observed:
    mounts: Mapping[str, Mapping[str, Any]]
    kv_config: Mapping[str, Mapping[str, Any]]
    auth: Mapping[str, Mapping[str, Any]]
    auth_config: Mapping[str, Mapping[str, Any]]
    policies: Mapping[str, str]
    roles: Mapping[tuple[str, str], Mapping[str, Any]]
    audit: Mapping[str, Mapping[str, Any]]


def observe(vault: ConfigAPI, desired: Desired) -> Observed:
    """Read what the plan compares: every mount and auth method, the managed mounts' settings, every policy, the
    roles of the managed auth mounts and every audit device."""
    mounts = vault.list_secret_mounts()
    kv_config = {m: vault.read_kv_config(m) for m in desired.mounts
                 if m in mounts and str(mounts[m].get("type")) == "kv"}
    auth = vault.list_auth_mounts()
    auth_config: dict[str, Mapping[str, Any]] = {}
    roles: dict[tuple[str, str], Mapping[str, Any]] = {}
    for mount in desired.auth:
        if mount not in auth:
            continue
        cfg = vault.read_path(f"auth/{mount}/config")
        if cfg:
            auth_config[mount] = cfg
        for name in vault.list_path(f"auth/{mount}/role"):
            body = vault.read_path(f"auth/{mount}/role/{name}")
            if body is not None:
                roles[(mount, name)] = body
    policies: dict[str, str] = {}
    for name in vault.list_policies():
        if name == "root":
            continue  # not readable and never ours
        text = vault.read_policy(name)
        if text is not None:
            policies[name] = text
    return Observed(mounts, kv_config, auth, auth_config, policies, roles, vault.list_audit_devices())


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
        sign = {"add": "+", "change": "~", "remove": "-", "conflict": "!"}[self.action]
        extra = f" ({', '.join(self.fields)})" if self.fields else ""
        note = f" — {self.detail}" if self.detail else ""
        return f"{sign} {self.kind} {self.name}{extra}{note}"


def _seconds(value: Any) -> int:
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    return int(parse_duration(text).total_seconds())


def _norm(key: str, value: Any) -> Any:
    if key.endswith("_ttl") or key == "delete_version_after":
        return _seconds(value or 0)
    if isinstance(value, list | tuple):
        return sorted(str(v) for v in value)
    if isinstance(value, str) and key.startswith("bound_"):
        return sorted(v for v in value.split(",") if v)
    if isinstance(value, str):
        return value.strip()
    return value


def _diff_fields(want: Mapping[str, Any], have: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(k for k, v in want.items() if _norm(k, v) != _norm(k, have.get(k))))


def plan(desired: Desired, observed: Observed, *, prune: bool = False) -> list[Change]:
    """The changes that bring ``observed`` to ``desired`` (pure). Conflicts are reported, never resolved."""
    changes: list[Change] = []
    for path, spec in sorted(desired.mounts.items()):
        have = observed.mounts.get(path)
        if have is None:
            changes.append(Change("mount", path, "add"))
            changes.append(Change("kv-config", path, "add"))
            continue
        want_version = str((spec.get("options") or {}).get("version", ""))
        have_version = str((have.get("options") or {}).get("version", ""))
        if have.get("type") != spec.get("type") or want_version != have_version:
            changes.append(Change("mount", path, "conflict", detail=(
                f"exists as {have.get('type')} version {have_version or '?'}, want {spec.get('type')} "
                f"version {want_version}; migrate it by hand")))
            continue
        if str(have.get("description") or "") != str(spec.get("description") or ""):
            changes.append(Change("mount", path, "change", ("description",)))
        fields = _diff_fields(spec.get("kv_config") or {}, observed.kv_config.get(path, {}))
        if fields:
            changes.append(Change("kv-config", path, "change", fields))
    for path, spec in sorted(desired.auth.items()):
        have = observed.auth.get(path)
        if have is None:
            changes.append(Change("auth", path, "add"))
        elif have.get("type") != spec.get("type"):
            changes.append(Change("auth", path, "conflict",
                                  detail=f"exists as {have.get('type')}, want {spec.get('type')}"))
            continue
    for path, want in sorted(desired.auth_config.items()):
        have_cfg = observed.auth_config.get(path)
        if have_cfg is None:
            changes.append(Change("auth-config", path, "add"))
        elif fields := _diff_fields(want, have_cfg):
            changes.append(Change("auth-config", path, "change", fields))
    for name, text in sorted(desired.policies.items()):
        have_text = observed.policies.get(name)
        if have_text is None:
            changes.append(Change("policy", name, "add"))
        elif have_text.strip() != text.strip():
            changes.append(Change("policy", name, "change", ("policy",)))
    for (mount, name), body in sorted(desired.roles.items()):
        have_role = observed.roles.get((mount, name))
        if have_role is None:
            changes.append(Change("role", f"{mount}/{name}", "add"))
        elif fields := _diff_fields(body, have_role):
            changes.append(Change("role", f"{mount}/{name}", "change", fields))
    for path, spec in sorted(desired.audit.items()):
        have = observed.audit.get(path)
        if have is None:
            changes.append(Change("audit", path, "add"))
        elif have.get("type") != spec.get("type") or dict(have.get("options") or {}) != dict(spec["options"]):
            changes.append(Change("audit", path, "change", ("options",), "re-enabled (audit devices cannot be tuned)"))
    if prune:
        for (mount, name) in sorted(set(observed.roles) - set(desired.roles)):
            if mount in desired.auth:
                changes.append(Change("role", f"{mount}/{name}", "remove"))
        for name in sorted(set(observed.policies) - set(desired.policies) - NEVER_PRUNED_POLICIES):
            changes.append(Change("policy", name, "remove"))
    return changes


def summarize(changes: Iterable[Change]) -> dict[str, int]:
    counts = {"add": 0, "change": 0, "remove": 0, "conflict": 0}
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


def _role_body(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, list | tuple) else v) for k, v in body.items()}


def apply(vault: ConfigAPI, desired: Desired, changes: list[Change]) -> ApplyResult:
    """Carry out ``changes`` (from :func:`plan`) in dependency order. Refuses the whole plan on any conflict."""
    conflicts = [c for c in changes if c.action == "conflict"]
    if conflicts:
        raise ConfigurationConflict(
            "nothing was changed; resolve by hand first: " + "; ".join(c.line() for c in conflicts))
    result = ApplyResult(changes)

    def of(kind: Kind, action: Action | None = None) -> list[Change]:
        return [c for c in changes if c.kind == kind and (action is None or c.action == action)]

    for c in of("mount"):
        spec = desired.mounts[c.name]
        if c.action == "add":
            vault.enable_secret_mount(c.name, str(spec["type"]), str(spec.get("description") or ""),
                                      {str(k): str(v) for k, v in (spec.get("options") or {}).items()})
        else:
            vault.tune_mount_description(c.name, str(spec.get("description") or ""))
        result.applied += 1
    for c in of("kv-config"):
        vault.configure_kv(c.name, desired.mounts[c.name].get("kv_config") or {})
        result.applied += 1
    checkpoint("configure.after-mounts")
    for c in of("auth", "add"):
        spec = desired.auth[c.name]
        vault.enable_auth_mount(c.name, str(spec["type"]), str(spec.get("description") or ""))
        result.applied += 1
    for c in of("auth-config"):
        want = dict(desired.auth_config[c.name])
        want.pop("token_reviewer_jwt_set", None)
        if desired.reviewer_jwt is not None:
            want["token_reviewer_jwt"] = desired.reviewer_jwt
        vault.write_path(f"auth/{c.name}/config", want)
        result.applied += 1
    checkpoint("configure.after-auth")
    for c in of("policy"):
        if c.action in ("add", "change"):
            vault.write_policy(c.name, desired.policies[c.name])
            result.applied += 1
    checkpoint("configure.after-policies")
    for c in of("role"):
        mount, _, name = c.name.partition("/")
        if c.action in ("add", "change"):
            vault.write_path(f"auth/{mount}/role/{name}", _role_body(desired.roles[(mount, name)]))
            result.applied += 1
    checkpoint("configure.after-roles")
    for c in of("audit"):
        spec = desired.audit[c.name]
        if c.action == "change":
            vault.disable_audit_device(c.name)
        vault.enable_audit_device(c.name, str(spec["type"]), str(spec.get("description") or ""),
                                  dict(spec["options"]))
        result.applied += 1
    # Prunes last: a role is removed before the policy it names, and nothing desired depends on either.
    for c in of("role", "remove"):
        mount, _, name = c.name.partition("/")
        vault.delete_path(f"auth/{mount}/role/{name}")
        result.applied += 1
    for c in of("policy", "remove"):
        vault.delete_policy(c.name)
        result.applied += 1
    return result
