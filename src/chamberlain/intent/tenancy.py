"""Who may write where: the pure rules behind tenancy (issue 11), shared by the checks, the inventory and render.

Belongs here: the namespaces that are platform-only (:func:`always_protected`, :func:`protected_namespaces`), the
Secrets platform components own (:func:`platform_secret`), repository path globs (:func:`path_matches`), the
namespace holders of a declared tenancy (:class:`Holders`) and the cross-owner edges an intent makes
(:func:`cross_owner_edges`). Every function is pure over the models and strings it is given, and linear in its
input. Not here: findings (:mod:`chamberlain.checks.tenancy`), reading files.

Two kinds of protection:

- **Always** (no declaration needed, they stop demonstrated exploits): chamberlain's own namespace, the
  Kubernetes system namespaces, the authority's namespace (read from its ``<svc>.<ns>.svc`` address) and ESO's;
  and, in any namespace, the Secrets that platform components own (:data:`PLATFORM_SECRETS`).
- **With a declared tenancy**: the GitOps controllers' namespaces (``flux-system``, ``argocd``) and
  ``tenancy.protectedNamespaces`` too, writable by ``platformOwners`` only; every other namespace by its holder,
  or by an owner its holder lists in ``acceptsFrom``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from chamberlain import wellknown as wk
from chamberlain.intent.model import Platform, SecretIntent, Tenancy

# ------------------------------------------------------------------------------------------- protected namespaces


def authority_namespace(address: str) -> str | None:
    """The namespace of an in-cluster authority (``https://vault.vault.svc:8200`` -> ``vault``), else None.
    Only the ``<svc>.<ns>.svc[.<cluster domain>]`` form names a namespace; any other host is outside the cluster."""
    try:
        host = urlsplit(address).hostname or ""
    except ValueError:
        return None
    labels = host.lower().split(".")
    if len(labels) >= 3 and labels[2] == "svc" and labels[1]:
        return labels[1]
    return None


def always_protected(platform: Platform | None) -> dict[str, str]:
    """Namespace -> why, for the namespaces no intent ever writes into or publishes from."""
    out = {ns: "a Kubernetes system namespace" for ns in wk.SYSTEM_NAMESPACES}
    for ns in wk.ESO_NAMESPACES:
        out[ns] = "External Secrets Operator's namespace"
    for ns in wk.ISSUER_NAMESPACES:
        out[ns] = "a certificate issuer's namespace (its CA key mints certificates for anything)"
    if platform is not None:
        out[platform.spec.controller.namespace] = "chamberlain's own namespace (spec.controller.namespace)"
        authority = authority_namespace(platform.spec.authority.address)
        if authority is not None:
            out[authority] = "the authority's namespace (spec.authority.address)"
    else:
        out["chamberlain-system"] = "chamberlain's own namespace"
    return out


def protected_namespaces(platform: Platform) -> dict[str, str]:
    """With a declared tenancy: the always-protected namespaces, the GitOps controllers' and the declared ones."""
    out = always_protected(platform)
    for ns in wk.GITOPS_NAMESPACES:
        out.setdefault(ns, "a GitOps controller's namespace")
    tenancy = platform.spec.tenancy
    for ns in tenancy.protected_namespaces if tenancy is not None else ():
        out.setdefault(ns, "declared in spec.tenancy.protectedNamespaces")
    return out


# ------------------------------------------------------------------------------------------- platform Secrets


def _glob_regex(glob: str) -> re.Pattern[str]:
    # Only '*' is special (any run of characters); the result has no nested quantifiers, so it matches in linear time.
    return re.compile("".join(".*" if c == "*" else re.escape(c) for c in glob) + r"\Z")


# (namespace glob, Secret name glob, whose). Central and documented in the README ("Platform-owned Secrets"). A
# namespace of "*" means any namespace: the component may be installed anywhere, and no team names its own
# Secret like this.
PLATFORM_SECRETS: tuple[tuple[str, str, str], ...] = (
    ("*", "chamberlain-*", "chamberlain's own Secrets (unseal material, controller credentials)"),
    ("*", "sops-age", "the GitOps controller's SOPS decryption key"),
    ("*", "sops-gpg", "the GitOps controller's SOPS decryption key"),
    ("flux-system", "flux-system", "Flux's Git credentials (flux bootstrap)"),
    ("flux-system", "*-git-*", "Flux's Git credentials"),
    ("*", "argocd-secret", "Argo CD's server secret (admin password, signing key, webhook secrets)"),
    ("*", "argocd-initial-admin-secret", "Argo CD's initial admin password"),
    ("*", "argocd-redis*", "Argo CD's Redis password"),
    ("*", "argocd-notifications-secret", "Argo CD notifications' credentials"),
    ("*", "argocd-repo-*", "Argo CD repository credentials"),
    ("*", "argocd-repo-creds*", "Argo CD repository credentials"),
    ("*", "argocd-*-tls", "an Argo CD component's TLS key"),
    ("*", "argocd-dex-*", "Argo CD's Dex credentials"),
    ("argocd", "repo-*", "Argo CD repository credentials"),
    ("argocd", "creds-*", "Argo CD repository credentials"),
    ("argocd", "cluster-*", "Argo CD cluster credentials"),
    ("*", "external-secrets-webhook*", "External Secrets Operator's webhook certificate"),
    ("*", "external-secrets-*-tls", "External Secrets Operator's TLS key"),
    ("*", "vault-unseal*", "the authority's unseal keys"),
    ("*", "openbao-unseal*", "the authority's unseal keys"),
    ("*", "bao-unseal*", "the authority's unseal keys"),
    ("*", "*-unseal-keys", "the authority's unseal keys"),
    ("*", "*root-token*", "the authority's root token"),
    ("*", "vault-server-tls", "the authority's TLS key"),
    ("*", "openbao-server-tls", "the authority's TLS key"),
    ("*", "sealed-secrets-key*", "the Sealed Secrets controller's private key"),
    ("*", "istio-ca-secret", "Istio's CA key"),
    ("istio-system", "cacerts", "Istio's CA key"),
    ("*", "linkerd-identity-issuer", "Linkerd's identity issuer key"),
    ("*", "linkerd-trust-anchor", "Linkerd's trust anchor"),
    ("*", "*-superuser", "a database superuser (CloudNativePG)"),
    ("*", "postgres.*.credentials.postgresql.acid.zalan.do", "a database superuser (Zalando postgres-operator)"),
    ("*", "*-pguser-postgres", "a database superuser (Crunchy PGO)"),
    ("*", "*-root-credentials", "a database superuser"),
    ("*", "sh.helm.release.v1.*", "Helm's release record (it holds the manifests Helm rolls back to)"),
)
_PLATFORM_SECRETS = [(_glob_regex(ns), _glob_regex(name), whose) for ns, name, whose in PLATFORM_SECRETS]
# Kubernetes' legacy ServiceAccount token Secrets: <service account>-token-<5 random characters>.
_SA_TOKEN = re.compile(r"[a-z0-9][-a-z0-9.]*-token-[a-z0-9]{5}\Z")
# Keys that hold a database superuser's password (Bitnami charts and their likes): publishing them hands the
# superuser to whoever consumes the intent.
SUPERUSER_KEYS = frozenset({
    "postgres-password", "postgrespassword", "postgres_password", "mysql-root-password", "mariadb-root-password",
    "root-password", "mongodb-root-password", "superuser-password", "superuserpassword", "admin-password-root",
})


# Any platform Secret name at all, in one match: most names are none, and validate asks for every consumer and
# publication (tens of thousands at fleet scale), so the ordered per-pattern loop runs only for a candidate.
_ANY_PLATFORM_NAME = re.compile("|".join(f"(?:{name_re.pattern})" for _, name_re, _ in _PLATFORM_SECRETS))


def platform_secret(namespace: str, name: str) -> str | None:
    """Whose Secret ``namespace/name`` is, when a platform component owns it (else None)."""
    if not _ANY_PLATFORM_NAME.match(name) and not _SA_TOKEN.match(name):
        return None
    for ns_re, name_re, whose in _PLATFORM_SECRETS:
        if ns_re.match(namespace) and name_re.match(name):
            return whose
    if _SA_TOKEN.match(name):
        return "a ServiceAccount token (kubernetes.io/service-account-token)"
    return None


# ------------------------------------------------------------------------------------------- superuser roles

# Roles that are superusers (or reserved) on managed and self-hosted PostgreSQL: never a rotation target.
SUPERUSER_ROLES = frozenset({
    "postgres", "root", "admin", "superuser", "rdsadmin", "rds_superuser", "rdsrepladmin", "rdstopmgr",
    "cloudsqladmin", "cloudsqlsuperuser", "cloudsqlreplica", "cloudsqlagent", "cloudsqlimportexport",
    "azure_superuser", "azure_pg_admin", "azuresu", "replication", "supabase_admin", "supabase_auth_admin",
    "supabase_storage_admin", "supabase_replication_admin", "alloydbadmin", "alloydbsuperuser", "crdb_admin",
    "streaming_replica", "pgbouncer", "neon_superuser", "cloud_admin", "aiven_admin", "avnadmin", "doadmin",
    "tsdbadmin", "rds_replication", "rdsproxyadmin", "enterprisedb", "gpadmin", "yugabyte", "timescaledb",
    # Names PostgreSQL gives a meaning in ALTER ROLE (unquoted, CURRENT_USER is the admin's own session) or
    # refuses as role names: never a target, however the rotator quotes them.
    "current_user", "session_user", "current_role", "public", "none",
})


def superuser_role(role: str) -> str | None:
    """Why ``role`` is never a rotation target, or None."""
    lowered = role.lower()
    if lowered in SUPERUSER_ROLES:
        return "a superuser or reserved role"
    if lowered.startswith("pg_"):
        return "a role name PostgreSQL reserves (pg_*)"
    return None


# ------------------------------------------------------------------------------------------- the authority address


def is_loopback(host: str) -> bool:
    """A host that never leaves the machine (the lab): localhost or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def insecure_authority(address: str) -> str | None:
    """Why the authority address is unacceptable, or None: ``http://`` only to a loopback host (the lab), never
    user information in the URL."""
    try:
        parts = urlsplit(address)
        host = parts.hostname or ""
    except ValueError:
        return "not a valid URL"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "it carries user information ('user@host'); the authority's host is what is reached"
    if parts.scheme != "http" or is_loopback(host):
        return None
    return (f"plain http:// to {host!r}: tokens and secret values would cross the network unencrypted; use https "
            "(http:// is accepted for a loopback host only, the lab)")


# ------------------------------------------------------------------------------------------- repository paths


def glob_match(pattern: str, segment: str) -> bool:
    """``*`` matches any run of characters (within one path segment, and in host and role patterns). Linear:
    the literal chunks are found left to right, the first anchored at the start and the last at the end."""
    chunks = pattern.split("*")
    if len(chunks) == 1:
        return pattern == segment
    first, last = chunks[0], chunks[-1]
    if len(first) + len(last) > len(segment) or not segment.startswith(first) or not segment.endswith(last):
        return False
    pos, end = len(first), len(segment) - len(last)
    for chunk in chunks[1:-1]:
        if not chunk:
            continue
        found = segment.find(chunk, pos, end)
        if found < 0:
            return False
        pos = found + len(chunk)
    return True


def path_matches(pattern: str, path: str) -> bool:
    """Does repository path ``path`` ('/'-separated, relative) fall under ``pattern``? ``*`` matches within a
    segment, ``**`` any number of segments; a pattern also covers everything below a directory it names
    (``teams/payments`` and ``teams/payments/`` both cover ``teams/payments/db.yaml``), as in CODEOWNERS.

    Dynamic programming over (pattern segment, path segment): O(P x S) segment comparisons, never exponential."""
    pat = [p for p in pattern.strip("/").split("/") if p not in ("", ".")] + ["**"]
    segs = [s for s in path.split("/") if s not in ("", ".")]
    # reach[j]: the pattern prefix consumed so far matches path prefix segs[:j]
    reach = [True] + [False] * len(segs)
    for p in pat:
        if p == "**":
            nxt, seen = [], False
            for j in range(len(segs) + 1):
                seen = seen or reach[j]
                nxt.append(seen)
        else:
            nxt = [False] + [reach[j] and glob_match(p, segs[j]) for j in range(len(segs))]
        reach = nxt
    return reach[len(segs)]


# ------------------------------------------------------------------------------------------- holders and edges


@dataclass(frozen=True)
class Holders:
    """The namespaces a declared tenancy assigns: namespace -> owner, and who accepts whom."""

    tenancy: Tenancy
    holder: dict[str, str]
    accepts: dict[str, frozenset[str]]
    protected: dict[str, str]
    publishers: dict[str, frozenset[str]] = field(default_factory=dict)  # holder -> owners accepted to publish

    @classmethod
    def of(cls, platform: Platform) -> Holders | None:
        tenancy = platform.spec.tenancy
        if tenancy is None:
            return None
        holder: dict[str, str] = {}
        for owner in tenancy.owners:
            for ns in owner.namespaces:
                holder.setdefault(ns, owner.name)
        accepts = {o.name: frozenset(o.accepts_from) for o in tenancy.owners}
        publishers = {o.name: frozenset(o.accepts_publishing_from) for o in tenancy.owners}
        return cls(tenancy, holder, accepts, protected_namespaces(platform), publishers)

    def may_read(self, owner: str, namespace: str) -> tuple[bool, str]:
        """Whether an intent of ``owner`` may take a Secret's value *out of* ``namespace`` into its own path (a
        publication, an import), and how or why not. ``acceptsFrom`` does not count: it lets a guest write into a
        host's namespace, never carry the host's Secrets away."""
        if owner in self.tenancy.platform_owners:
            return True, "platform owner"
        if namespace in self.protected:
            return False, f"namespace {namespace} is protected ({self.protected[namespace]})"
        held_by = self.holder.get(namespace)
        if held_by == owner:
            return True, "own namespace"
        if held_by is not None and owner in self.publishers.get(held_by, frozenset()):
            return True, f"publishing accepted by {held_by}"
        return False, (f"namespace {namespace} is held by {held_by or 'no owner'}, not {owner}; only the holder "
                       "takes a value out of its namespace, or an owner it lists in acceptsPublishingFrom "
                       "(acceptsFrom lets others write there, not read)")

    def may_write(self, owner: str, namespace: str) -> tuple[bool, str]:
        """Whether an intent of ``owner`` may write into ``namespace``, and how or why not."""
        platform_owner = owner in self.tenancy.platform_owners
        if namespace in self.protected:
            if platform_owner:
                return True, "platform owner"
            return False, (f"namespace {namespace} is protected ({self.protected[namespace]}); only the platform "
                           f"owners ({', '.join(self.tenancy.platform_owners)}) write there")
        held_by = self.holder.get(namespace)
        if held_by is None:
            return False, (f"namespace {namespace} is held by no owner in spec.tenancy; add it to an owner's "
                           "namespaces")
        if held_by == owner:
            return True, "own namespace"
        if owner in self.accepts.get(held_by, frozenset()):
            return True, f"accepted by {held_by}"
        return False, (f"namespace {namespace} is held by {held_by}, which does not list {owner} in acceptsFrom")


EdgeKind = Literal["consumer", "publication", "admin"]


@dataclass(frozen=True, order=True)
class Edge:
    """One cross-owner edge: an intent of ``owner`` reaching into what ``other`` holds."""

    intent: str
    owner: str
    kind: EdgeKind
    other: str
    what: str  # namespace/Secret, or the admin intent's name

    def line(self) -> str:
        verbs = {"consumer": "writes consumer Secret", "publication": "publishes Secret", "admin": "uses admin intent"}
        return f"{self.intent} ({self.owner}) {verbs[self.kind]} {self.what} of {self.other}"


def namespace_owner(platform: Platform, namespace: str) -> str | None:
    tenancy = platform.spec.tenancy
    if tenancy is None:
        return None
    return next((o.name for o in tenancy.owners if namespace in o.namespaces), None)


def cross_owner_edges(platform: Platform, intents: Iterable[SecretIntent]) -> Iterator[Edge]:
    """Every edge from an intent to another owner's namespace or admin intent. Namespace edges need a declared
    tenancy (who holds a namespace is not known otherwise); admin edges compare the intents' owners."""
    intents = list(intents)
    holders = Holders.of(platform)
    owner_of = {i.metadata.name: i.spec.owner for i in intents}
    for intent in intents:
        owner = intent.spec.owner
        if holders is not None:
            for c in intent.spec.consumers:
                other = holders.holder.get(c.namespace)
                if other is not None and other != owner:
                    yield Edge(intent.metadata.name, owner, "consumer", other, f"{c.namespace}/{c.secret_name}")
            pub = intent.spec.source.publication
            if pub is not None:
                other = holders.holder.get(pub.namespace)
                if other is not None and other != owner:
                    yield Edge(intent.metadata.name, owner, "publication", other,
                               f"{pub.namespace}/{pub.secret_name}")
        target = intent.spec.target
        if target is not None:
            admin_owner = owner_of.get(target.postgres.admin_intent)
            if admin_owner is not None and admin_owner != owner:
                yield Edge(intent.metadata.name, owner, "admin", admin_owner, target.postgres.admin_intent)
