"""Trust-boundary rules (issue 11): what an intent may reach, and with whose credentials.

Always errors (each stops a demonstrated exploit, no declaration needed):

- ``protected-targets`` (CH070, CH071): consumers, bootstrap Secrets and publications never touch a protected
  namespace (chamberlain's, kube-*, the authority's, ESO's, namespaces labelled as bootstrap namespaces), a Secret a
  platform component owns (:data:`chamberlain.intent.tenancy.PLATFORM_SECRETS`, Secrets that Flux sources and
  Argo CD credentials in the repository name) or another intent's bootstrap Secret.
- ``target-roles`` (CH072, CH073, CH078): the rotated role is never a superuser, the admin or another admin;
  one role per (host, port) has one intent; TLS off is reported.
- ``authority-address`` (CH076), ``ttl-floor`` (CH077, CH079).

Enforced once ``spec.tenancy`` is declared (before that, warnings where Git says enough: CH085):

- ``owner-paths`` (CH080), ``namespace-holders`` (CH081), ``tenancy-declaration`` (CH082),
  ``admin-grants`` (CH083, CH084; also enforced whenever the admin intent declares ``spec.admin``).

Boundary: pure over the loaded repository; every rule indexes by key in one pass (linear in repository size).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from chamberlain import wellknown as wk
from chamberlain.checks.registry import check
from chamberlain.checks.sops import BootstrapSecret, bootstrap_secrets
from chamberlain.findings import Finding
from chamberlain.intent.durations import format_duration
from chamberlain.intent.loader import Loaded, Repository
from chamberlain.intent.model import FixedNameGenerator, Platform, RotationPolicySpec, SecretIntent
from chamberlain.intent.tenancy import (
    SUPERUSER_KEYS,
    Holders,
    always_protected,
    glob_match,
    insecure_authority,
    is_loopback,
    path_matches,
    platform_secret,
    protected_namespaces,
    superuser_role,
)

Loc = tuple[int | str, ...]
ALT_SUFFIX = "_alt"  # the second user of the alternating strategy (chamberlain.rotation.rotators.postgres)
TTL_ERROR_FLOOR = timedelta(minutes=1)  # without limits.minimumTtl: below this, every rotation restarts workloads
TTL_WARN_FLOOR = timedelta(hours=1)
TTL_ABSOLUTE_FLOOR = timedelta(seconds=10)  # even a lab's declared floor: the controller ticks about once a second


def _label(item: Loaded[SecretIntent]) -> str:
    return f"SecretIntent/{item.obj.metadata.name}"


# ------------------------------------------------------------------------------------------------ CH070 / CH071

# Flux objects whose secretRef names a credential of the GitOps controller (sources, decryption, remote clusters).
_FLUX_SECRET_REFS: tuple[tuple[str, Loc], ...] = (
    ("GitRepository", ("spec", "secretRef", "name")),
    ("HelmRepository", ("spec", "secretRef", "name")),
    ("OCIRepository", ("spec", "secretRef", "name")),
    ("Bucket", ("spec", "secretRef", "name")),
    ("Kustomization", ("spec", "decryption", "secretRef", "name")),
    ("Kustomization", ("spec", "kubeConfig", "secretRef", "name")),
    ("HelmRelease", ("spec", "kubeConfig", "secretRef", "name")),
    ("Receiver", ("spec", "secretRef", "name")),
    ("Provider", ("spec", "secretRef", "name")),
)


def _get(node: object, loc: Loc) -> object:
    for part in loc:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


@dataclass(frozen=True)
class _Owned:
    why: str


def _declared_secret(kind: str, api: str, data: dict[str, Any], name: str | None) -> str | None:
    """The name of the Secret a manifest declares or materializes, for the kinds that do (else None)."""
    if kind == "Secret" and api == "v1":
        return name
    if kind == "SealedSecret" and api.startswith("bitnami.com/"):
        templated = _get(data, ("spec", "template", "metadata", "name"))
        return templated if isinstance(templated, str) else name
    if kind == "Certificate" and api.startswith("cert-manager.io/"):
        # cert-manager writes the key and certificate there: a consumer over it would serve another key (and, fed
        # from a publication, one its author knows) wherever the certificate is used.
        secret = _get(data, ("spec", "secretName"))
        return secret if isinstance(secret, str) else None
    # An ExternalSecret in the repository writing the same Secret may be chamberlain's own output committed by hand;
    # plan tells them apart in the cluster (conflict foreign-external-secret).
    return None


def repository_owned(repo: Repository) -> tuple[dict[tuple[str | None, str], _Owned],
                                                  dict[tuple[str | None, str], _Owned], set[str]]:
    """What the repository itself shows as owned: platform Secrets ((namespace or None, name) -> why), Secrets Git
    manages by other means (refused as consumer Secrets only: a publication may read its owner's own), and the
    namespaces labelled ``chamberlain.dev/class: bootstrap``. One pass over the manifests."""
    owned: dict[tuple[str | None, str], _Owned] = {}
    consumer_owned: dict[tuple[str | None, str], _Owned] = {}
    bootstrap_namespaces: set[str] = set()
    for doc in repo.manifests:
        kind, data = doc.kind, doc.data
        if not isinstance(kind, str) or not isinstance(data, dict):
            continue
        where = f"{doc.file}:{doc.line}"
        if kind == "Namespace" and doc.name is not None:
            labels = _get(data, ("metadata", "labels"))
            if isinstance(labels, dict) and labels.get(wk.LABEL_CLASS) == "bootstrap":
                bootstrap_namespaces.add(doc.name)
        elif kind == "Secret" and doc.name is not None:
            labels = _get(data, ("metadata", "labels"))
            annotations = _get(data, ("metadata", "annotations"))
            if data.get("type") == "kubernetes.io/service-account-token" or (
                    isinstance(annotations, dict) and "kubernetes.io/service-account.name" in annotations):
                owned[(doc.namespace, doc.name)] = _Owned(f"a ServiceAccount token Secret ({where})")
            elif isinstance(labels, dict) and "argocd.argoproj.io/secret-type" in labels:
                owned[(doc.namespace, doc.name)] = _Owned(f"an Argo CD credential Secret ({where})")
        api = doc.api_version or ""
        declared = _declared_secret(kind, api, data, doc.name)
        if declared is not None:
            # A Secret Git already manages by other means (a manifest, a SealedSecret): a consumer writing it would
            # fight that owner, or take it over.
            declared_ns = _get(data, ("spec", "template", "metadata", "namespace")) if kind == "SealedSecret" else None
            key = (declared_ns if isinstance(declared_ns, str) else doc.namespace, declared)
            consumer_owned.setdefault(key, _Owned(f"declared by {kind}/{doc.name or declared} ({where})"))
        if api.split("/", 1)[0].endswith("toolkit.fluxcd.io"):
            for flux_kind, loc in _FLUX_SECRET_REFS:
                name = _get(data, loc)
                if kind == flux_kind and isinstance(name, str):
                    owned[(doc.namespace, name)] = _Owned(f"the credential of Flux {kind}/{doc.name} ({where})")
    return owned, consumer_owned, bootstrap_namespaces


@dataclass
class _Guard:
    protected: dict[str, str]
    owned: dict[tuple[str | None, str], _Owned]
    consumer_owned: dict[tuple[str | None, str], _Owned]
    bootstrap: dict[tuple[str | None, str], str]  # bootstrap Secret -> intent declaring it

    def why(self, namespace: str, name: str, *, own_bootstrap: str | None = None,
            consumer: bool = False) -> str | None:
        if namespace in self.protected:
            return f"namespace {namespace} is protected ({self.protected[namespace]})"
        whose = platform_secret(namespace, name)
        if whose is not None:
            return f"Secret {namespace}/{name} belongs to a platform component ({whose})"
        found = self.owned.get((namespace, name)) or self.owned.get((None, name))
        if found is not None:
            return f"Secret {namespace}/{name} is {found.why}"
        # Exact namespace only: a manifest without one lands wherever kustomize puts it, which Git does not say.
        declared = self.consumer_owned.get((namespace, name)) if consumer else None
        if declared is not None:
            return f"Secret {namespace}/{name} is already {declared.why}"
        intent = self.bootstrap.get((namespace, name)) or self.bootstrap.get((None, name))
        if intent is not None and intent != own_bootstrap:
            return (f"Secret {namespace}/{name} is the bootstrap Secret of SecretIntent/{intent}; it is read by "
                    "handover only")
        return None


def _guard(repo: Repository) -> tuple[_Guard, _Guard, list[BootstrapSecret]]:
    """The guard of consumers and publications, the guard of bootstrap Secrets (a bootstrap namespace is theirs),
    and the bootstrap Secrets."""
    owned, consumer_owned, bootstrap_namespaces = repository_owned(repo)
    protected = always_protected(repo.platform)
    secrets = bootstrap_secrets(repo)
    bootstrap = {(s.namespace, s.name): s.ref.intent.obj.name for s in secrets}
    for_bootstrap = _Guard(dict(protected), owned, consumer_owned, bootstrap)
    for ns in bootstrap_namespaces:
        protected.setdefault(ns, "a bootstrap namespace (label chamberlain.dev/class: bootstrap): only handover "
                                 "reads from it")
    return _Guard(protected, owned, consumer_owned, bootstrap), for_bootstrap, secrets


@check("protected-targets")
def protected_targets(repo: Repository) -> Iterator[Finding]:
    if not repo.intents:
        return
    guard, bootstrap_guard, secrets = _guard(repo)
    for item in repo.intents:
        intent = item.obj
        for i, c in enumerate(intent.spec.consumers):
            why = guard.why(c.namespace, c.secret_name, consumer=True)
            if why is not None:
                yield Finding(
                    item.file, item.line_of("spec", "consumers", i), "CH070",
                    f"{_label(item)}: consumer {c.namespace}/{c.secret_name}: {why}; an intent never writes "
                    "there (ESO would take the Secret over)",
                    object=_label(item), subject=f"{c.namespace}/{c.secret_name}",
                )
        pub = intent.spec.source.publication
        if pub is not None:
            why = guard.why(pub.namespace, pub.secret_name)
            if why is None:
                bad_keys = sorted(k for k in pub.keys or () if k.lower() in SUPERUSER_KEYS)
                if bad_keys:
                    why = f"keys {', '.join(bad_keys)} hold a database superuser's password"
            if why is not None:
                yield Finding(
                    item.file, item.line_of("spec", "source", "publication"), "CH071",
                    f"{_label(item)}: publication of {pub.namespace}/{pub.secret_name}: {why}; publishing it "
                    "would hand it to whoever consumes this intent",
                    object=_label(item), subject=f"{pub.namespace}/{pub.secret_name}",
                )
    # Bootstrap Secrets: GitOps applies them wherever their file says, so never over a Secret another intent
    # materializes (a consumer) or publishes (its value would be the bootstrap file author's).
    if not secrets:
        return
    # The first writer of each Secret, described only when a bootstrap Secret meets it.
    written: dict[tuple[str, str], tuple[str, Loaded[SecretIntent]]] = {}
    for item in repo.intents:
        for c in item.obj.spec.consumers:
            written.setdefault((c.namespace, c.secret_name), ("the consumer Secret of", item))
        pub = item.obj.spec.source.publication
        if pub is not None:
            written.setdefault((pub.namespace, pub.secret_name), ("the publication source of", item))
    for secret in secrets:
        namespace, name, ref = secret.namespace, secret.name, secret.ref
        intent_name = ref.intent.obj.name
        why = bootstrap_guard.why(namespace or "default", name, own_bootstrap=intent_name)
        writer = written.get((namespace or "default", name))
        other = f"{writer[0]} {_label(writer[1])}" if writer is not None else None
        if why is None and other is not None and not other.endswith(f" SecretIntent/{intent_name}"):
            why = f"Secret {namespace}/{name} is {other}"
        if why is None:
            continue
        yield Finding(
            ref.intent.file, ref.line, "CH070",
            f"SecretIntent/{intent_name}: bootstrap file {ref.declared} declares Secret "
            f"{namespace or '(no namespace)'}/{name}: {why}; GitOps would overwrite it",
            object=f"SecretIntent/{intent_name}", subject=f"{namespace}/{name}",
        )


# ------------------------------------------------------------------------------------------------ CH072 / CH073 / CH078


def _fixed_username(intent: SecretIntent) -> str | None:
    for key in ("username", "user"):
        gen = (intent.spec.source.generate or {}).get(key)
        if isinstance(gen, FixedNameGenerator):
            return gen.name
    names = [g.name for g in (intent.spec.source.generate or {}).values() if isinstance(g, FixedNameGenerator)]
    return names[0] if len(names) == 1 else None


@check("target-roles")
def target_roles(repo: Repository) -> Iterator[Finding]:
    index = repo.intent_index()
    with_target = [item for item in repo.intents if item.obj.spec.target is not None]
    if not with_target:
        return
    # The users of every intent used as an admin: none of them is ever a rotation target.
    admins: dict[str, str] = {}
    for item in with_target:
        assert item.obj.spec.target is not None
        admin = index.get(item.obj.spec.target.postgres.admin_intent)
        if admin is not None:
            user = _fixed_username(admin.obj)
            if user is not None:
                admins.setdefault(user.lower(), admin.obj.name)
            admins.setdefault(admin.obj.name.replace("-", "_").lower(), admin.obj.name)
    seen: dict[tuple[str, int, str], Loaded[SecretIntent]] = {}
    for item in with_target:
        target = item.obj.spec.target
        assert target is not None
        pg = target.postgres
        loc = ("spec", "target", "postgres", "role")
        users = [pg.role] + ([pg.role + ALT_SUFFIX] if pg.strategy == "alternating" else [])
        for user in users:
            why = superuser_role(user)
            if why is None and user.lower() in admins:
                why = f"the user of admin intent {admins[user.lower()]}"
            if why is not None:
                yield Finding(
                    item.file, item.line_of(*loc), "CH072",
                    f"{_label(item)}: target role {user!r} is {why}; rotating it would take the database (or its "
                    "admin credential) over — a rotation target is an application role",
                    object=_label(item), subject=user,
                )
            key = (pg.host.lower().rstrip("."), pg.port, user.lower())
            first = seen.setdefault(key, item)
            if first is not item:
                for this, other in ((item, first), (first, item)):  # both sides: Git history knows the newcomer
                    yield Finding(
                        this.file, this.line_of(*loc), "CH078",
                        f"{_label(this)}: role {user!r} on {pg.host}:{pg.port} is also rotated by {_label(other)} "
                        f"({other.file}:{other.line}); two authorities for one database credential",
                        object=_label(this), subject=user,
                    )
        if pg.tls.mode == "disable" and not is_loopback(pg.host):  # loopback never crosses a network: the lab
            yield Finding(
                item.file, item.line_of("spec", "target", "postgres", "tls", "mode"), "CH073",
                f"{_label(item)}: target.postgres.tls.mode is disable: the admin and the new password cross the "
                f"network to {pg.host} in clear and the server is not authenticated; for the lab only "
                "(use verify-full with caBundle)",
                object=_label(item),
            )


# ------------------------------------------------------------------------------------------------ CH076


@check("authority-address", per_file=True)
def authority_address(repo: Repository) -> Iterator[Finding]:
    for item in repo.platforms:
        why = insecure_authority(item.obj.spec.authority.address)
        if why is not None:
            yield Finding(
                item.file, item.line_of("spec", "authority", "address"), "CH076",
                f"Platform/{item.obj.metadata.name}: authority address: {why}",
                object=f"Platform/{item.obj.metadata.name}",
            )


# ------------------------------------------------------------------------------------------------ CH077 / CH079


def _ttl_findings(item: Loaded[Any], loc: Loc, label: str, spec: RotationPolicySpec,
                  floor: timedelta | None) -> Iterator[Finding]:
    if spec.ttl is None:
        return
    period = spec.ttl - spec.rotate_before if spec.rotate_before is not None and spec.rotate_before < spec.ttl \
        else spec.ttl
    shortest = min(spec.ttl, period)
    what = (f"ttl {format_duration(spec.ttl)}" if shortest == spec.ttl else
            f"ttl {format_duration(spec.ttl)} - rotateBefore {format_duration(spec.rotate_before or timedelta())} "
            f"= a rotation every {format_duration(period)}")
    if shortest < TTL_ABSOLUTE_FLOOR:
        yield Finding(item.file, item.line_of(*loc, "ttl"), "CH077",
                      f"{label}: {what} is below the absolute floor {format_duration(TTL_ABSOLUTE_FLOOR)}, "
                      "whatever the Platform declares", object=label)
    elif floor is not None:
        if shortest < floor:
            yield Finding(item.file, item.line_of(*loc, "ttl"), "CH077",
                          f"{label}: {what} is below the Platform's limits.minimumTtl {format_duration(floor)}",
                          object=label)
    elif shortest < TTL_ERROR_FLOOR:
        yield Finding(item.file, item.line_of(*loc, "ttl"), "CH077",
                      f"{label}: {what} is below 1m: every rotation restarts the consumers' workloads and loads the "
                      "authority and the target; the Platform may allow it (spec.limits.minimumTtl, e.g. in a lab)",
                      object=label)
    elif spec.ttl < TTL_WARN_FLOOR:
        yield Finding(item.file, item.line_of(*loc, "ttl"), "CH079",
                      f"{label}: {what} is below 1h and the Platform declares no spec.limits.minimumTtl",
                      object=label)


@check("ttl-floor", per_file=True)
def ttl_floor(repo: Repository) -> Iterator[Finding]:
    platform = repo.platform
    floor = platform.spec.limits.minimum_ttl if platform is not None else None
    for p in repo.policies:
        yield from _ttl_findings(p, ("spec",), f"RotationPolicy/{p.obj.metadata.name}", p.obj.spec, floor)
    for item in repo.intents:
        rotation = item.obj.spec.rotation
        if isinstance(rotation, RotationPolicySpec):
            yield from _ttl_findings(item, ("spec", "rotation"), _label(item), rotation, floor)


# ------------------------------------------------------------------------------------------------ CH080 / CH081 / CH082


def _platform_item(repo: Repository) -> Loaded[Platform] | None:
    return repo.platforms[0] if len(repo.platforms) == 1 else None


@check("tenancy-declaration", per_file=True)
def tenancy_declaration(repo: Repository) -> Iterator[Finding]:
    item = _platform_item(repo)
    tenancy = item.obj.spec.tenancy if item is not None else None
    if item is None or tenancy is None:
        return
    label = f"Platform/{item.obj.metadata.name}"
    names: dict[str, int] = {}
    for i, owner in enumerate(tenancy.owners):
        if owner.name in names:
            yield Finding(item.file, item.line_of("spec", "tenancy", "owners", i), "CH082",
                          f"{label}: owner {owner.name} is declared twice", object=label)
        names.setdefault(owner.name, i)
    for i, name in enumerate(tenancy.platform_owners):
        if name not in names:
            yield Finding(item.file, item.line_of("spec", "tenancy", "platformOwners", i), "CH082",
                          f"{label}: platform owner {name} is not a declared owner", object=label)
    builtin = protected_namespaces(item.obj)
    held: dict[str, str] = {}
    for i, owner in enumerate(tenancy.owners):
        for j, ns in enumerate(owner.namespaces):
            loc = ("spec", "tenancy", "owners", i, "namespaces", j)
            if ns in held and held[ns] != owner.name:
                yield Finding(item.file, item.line_of(*loc), "CH082",
                              f"{label}: namespace {ns} is held by {held[ns]} and {owner.name}; a namespace has one "
                              "holder", object=label, subject=ns)
            held.setdefault(ns, owner.name)
            if ns in builtin and owner.name not in tenancy.platform_owners:
                yield Finding(item.file, item.line_of(*loc), "CH082",
                              f"{label}: owner {owner.name} holds {ns}, which is {builtin[ns]}; only platform owners "
                              "may", object=label, subject=ns)
        for field_name, accepted in (("acceptsFrom", owner.accepts_from),
                                     ("acceptsPublishingFrom", owner.accepts_publishing_from)):
            for j, other in enumerate(accepted):
                if other not in names:
                    yield Finding(item.file, item.line_of("spec", "tenancy", "owners", i, field_name, j), "CH082",
                                  f"{label}: owner {owner.name} accepts unknown owner {other} ({field_name})",
                                  object=label)


@check("owner-paths", per_file=True)
def owner_paths(repo: Repository) -> Iterator[Finding]:
    platform = repo.platform
    tenancy = platform.spec.tenancy if platform is not None else None
    if tenancy is None:
        return
    owners = {o.name: o for o in tenancy.owners}
    for item in repo.intents:
        owner = owners.get(item.obj.spec.owner)
        if owner is None:
            yield Finding(item.file, item.line_of("spec", "owner"), "CH080",
                          f"{_label(item)}: owner {item.obj.spec.owner} is not declared in spec.tenancy.owners",
                          object=_label(item))
        elif not any(path_matches(p, item.file) for p in owner.paths):
            allowed = ", ".join(owner.paths) or "(none declared)"
            yield Finding(item.file, item.line_of("spec", "owner"), "CH080",
                          f"{_label(item)}: {item.file} is outside the paths of owner {owner.name} ({allowed}); "
                          "spec.owner is checked against where the file is, which Git review protects",
                          object=_label(item))


def owners_declared(repo: Repository) -> Iterator[Finding]:
    """CH080 for objects read from a cluster, which have no file: the owner must be declared. Not registered (
    ``validate`` runs :func:`owner_paths`, which says this and checks the path); the controller runs it in its place,
    and the admission policy (only the GitOps identity writes intents) stands in for the path, which Git review
    protected before CI let the intent through."""
    platform = repo.platform
    tenancy = platform.spec.tenancy if platform is not None else None
    if tenancy is None:
        return
    owners = {o.name for o in tenancy.owners}
    for item in repo.intents:
        if item.obj.spec.owner not in owners:
            yield Finding(item.file, item.line_of("spec", "owner"), "CH080",
                          f"{_label(item)}: owner {item.obj.spec.owner} is not declared in spec.tenancy.owners",
                          object=_label(item))


@check("namespace-holders", per_file=True)
def namespace_holders(repo: Repository) -> Iterator[Finding]:
    platform = repo.platform
    holders = Holders.of(platform) if platform is not None else None
    if holders is None:
        return
    for item in repo.intents:
        owner = item.obj.spec.owner
        if owner not in holders.accepts:
            continue  # CH080 says so
        for i, c in enumerate(item.obj.spec.consumers):
            ok, why = holders.may_write(owner, c.namespace)
            if not ok:
                what = "consumer" + (" and its restarts" if c.restart else "")
                yield Finding(item.file, item.line_of("spec", "consumers", i, "namespace"), "CH081",
                              f"{_label(item)}: {what} {c.namespace}/{c.secret_name}: {why}",
                              object=_label(item), subject=f"{c.namespace}/{c.secret_name}")
        pub = item.obj.spec.source.publication
        if pub is not None:
            where = item.line_of("spec", "source", "publication", "namespace")
            subject = f"{pub.namespace}/{pub.secret_name}"
            ok, why = holders.may_read(owner, pub.namespace)
            if not ok and holders.may_write(owner, pub.namespace)[0]:
                # Accepted for writes only: repositories valid before acceptsPublishingFrom existed stay valid,
                # warned (a guest accepted to deliver a consumer Secret could carry any of the host's Secrets away).
                yield Finding(item.file, where, "CH125",
                              f"{_label(item)}: publication {subject}: the holder of {pub.namespace} accepts "
                              f"{owner} in acceptsFrom (writes) but not in acceptsPublishingFrom; declare it there",
                              object=_label(item), subject=subject)
            elif not ok:
                yield Finding(item.file, where, "CH081", f"{_label(item)}: publication {subject}: {why}",
                              object=_label(item), subject=subject)
    for secret in bootstrap_secrets(repo):
        namespace = secret.namespace or "default"
        owner = secret.ref.intent.obj.spec.owner
        if owner not in holders.accepts:
            continue
        ok, why = holders.may_write(owner, namespace)
        if not ok:
            label = _label(secret.ref.intent)
            yield Finding(secret.ref.intent.file, secret.ref.line, "CH081",
                          f"{label}: bootstrap Secret {namespace}/{secret.name} ({secret.ref.declared}): {why}",
                          object=label, subject=f"{namespace}/{secret.name}")


# ------------------------------------------------------------------------------------------------ CH083 / CH084 / CH085


@check("admin-grants")
def admin_grants(repo: Repository) -> Iterator[Finding]:
    platform = repo.platform
    tenancy = platform.spec.tenancy if platform is not None else None
    index = repo.intent_index()
    for item in repo.intents:
        target = item.obj.spec.target
        if target is None:
            continue
        pg = target.postgres
        admin_item = index.get(pg.admin_intent)
        if admin_item is None or admin_item is item:
            continue  # CH014
        admin = admin_item.obj
        declared = admin.spec.admin
        enforce = tenancy is not None or declared is not None
        loc = ("spec", "target", "postgres", "adminIntent")
        owner, admin_owner = item.obj.spec.owner, admin.spec.owner
        if owner != admin_owner and (declared is None or owner not in declared.granted_to):
            message = (f"{_label(item)} (owner {owner}) uses admin intent {admin.name} of {admin_owner}, which does "
                       f"not grant it (spec.admin.grantedTo of {admin.name}, {admin_item.file})")
            if admin.spec.consumers:
                # Always an error: a credential another team's workloads consume is never this team's admin (it
                # would be sent to a host of this intent's choosing).
                yield Finding(item.file, item.line_of(*loc), "CH083",
                              message + f"; {admin.name} is an application credential (it has consumers), never "
                              "another owner's admin", object=_label(item))
            elif enforce:
                yield Finding(item.file, item.line_of(*loc), "CH083", message, object=_label(item))
            else:
                yield Finding(item.file, item.line_of(*loc), "CH085",
                              message + "; enforced once spec.tenancy or spec.admin is declared",
                              object=_label(item))
        targets = declared.targets if declared is not None else []
        if not targets:
            message = (f"{_label(item)}: admin intent {admin.name} declares no spec.admin.targets, so its credential "
                       f"may be sent to any host ({pg.host}:{pg.port} here)")
            if enforce:
                yield Finding(item.file, item.line_of(*loc), "CH084", message, object=_label(item))
            else:
                yield Finding(item.file, item.line_of(*loc), "CH085",
                              message + "; enforced once spec.tenancy or spec.admin is declared", object=_label(item))
            continue
        users = [pg.role] + ([pg.role + ALT_SUFFIX] if pg.strategy == "alternating" else [])
        host = pg.host.lower().rstrip(".")
        ok = any(
            glob_match(t.host.lower().rstrip("."), host) and t.port == pg.port
            and all(any(glob_match(r, u) for r in t.roles) for u in users)
            for t in targets
        )
        if not ok:
            declared_text = "; ".join(f"{t.host}:{t.port} roles {', '.join(t.roles)}" for t in targets)
            yield Finding(
                item.file, item.line_of("spec", "target", "postgres", "host"), "CH084",
                f"{_label(item)}: {', '.join(users)} on {pg.host}:{pg.port} is not among the targets admin intent "
                f"{admin.name} may be sent to ({declared_text}); the admin credential stays home",
                object=_label(item),
            )


@check("policy-paths")
def policy_paths(repo: Repository) -> Iterator[Finding]:
    """CH132 (a warning: a new rule): with ``spec.tenancy``, a RotationPolicy written in the paths of an owner that
    is not a platform owner. Every intent may name any policy, and the platform owners review the policies; in a
    team's directory the first review of a new one is that team's (the rendered CODEOWNERS routes only the policy
    files it knew of to the platform). The platform's ``limits`` still bound what any policy may say."""
    platform = repo.platform
    tenancy = platform.spec.tenancy if platform is not None else None
    if tenancy is None:
        return
    teams = [o for o in tenancy.owners if o.name not in tenancy.platform_owners]
    for item in repo.policies:
        holder = next((o for o in teams if any(path_matches(p, item.file) for p in o.paths)), None)
        if holder is not None:
            name = item.obj.metadata.name
            yield Finding(item.file, item.line, "CH132",
                          f"RotationPolicy {name}: {item.file} is in the paths of owner {holder.name}, who is not a "
                          "platform owner; the platform owners review the policies every intent may name, so keep "
                          "it where their review applies (e.g. policies/)", object=f"RotationPolicy/{name}")
