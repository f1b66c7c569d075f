"""What a compromise exposes: the secrets to rotate when a namespace, an owner or everything is compromised.

Pure, over the intent graph (SPEC §6 "this namespace is compromised"). Whoever controls a namespace can read:

- every consumer Secret materialized there, and through the namespace's SecretStore identity every Vault path
  rendered for it — the same set (a consumer namespace reads only the paths declared for it);
- every Secret an operator publishes from there (``source.publication``): the producer Secret lives there;
- every bootstrap Secret whose manifest names the namespace: GitOps applies it there until it is retired;
- in a platform namespace (chamberlain's, the authority's, a GitOps controller's, ESO's): everything, because its
  controllers read or decrypt every secret.

A secret is exposed transitively too: whoever holds an admin credential (a ``target.postgres.adminIntent``) can set
the password of every role it administers, so those secrets rotate as well — after their admin credential, so the
new admin login is the one that sets them. An owner's compromise is its intents plus its namespaces (tenancy).

Each result says why (``because``) and whether a rotator can rotate it (``manual`` says what a person must do
instead: an upstream-issued value is reissued upstream and imported, a published one reissued by its operator).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from chamberlain import wellknown as wk
from chamberlain.errors import UsageError
from chamberlain.intent.model import FixedNameGenerator, Platform, SecretIntent
from chamberlain.intent.tenancy import protected_namespaces

ScopeKind = Literal["namespace", "owner", "all"]
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class Scope:
    """What is compromised: one namespace, one owner (a team), or everything."""

    kind: ScopeKind
    name: str = ""

    @classmethod
    def of(cls, *, namespace: str | None, owner: str | None, everything: bool) -> Scope:
        given = [s for s in (namespace is not None, owner is not None, everything) if s]
        if len(given) != 1:
            raise UsageError("pass exactly one of --namespace NS, --owner OWNER or --all")
        for flag, name in (("--namespace", namespace), ("--owner", owner)):
            if name is not None and not _DNS_LABEL.fullmatch(name):
                shown = name if len(name) <= 63 else name[:60] + "..."
                raise UsageError(f"{flag} {shown!r}: not a namespace or owner name (a DNS label: lower-case "
                                 "letters, digits and '-', at most 63 characters)")
        if namespace is not None:
            return cls("namespace", namespace)
        if owner is not None:
            return cls("owner", owner)
        return cls("all")

    def describe(self) -> str:
        return "everything" if self.kind == "all" else f"{self.kind} {self.name}"


@dataclass(frozen=True)
class Affected:
    secret: str
    because: tuple[str, ...]  # why it is exposed, in words that name objects, never values
    manual: str | None = None  # None: a rotator rotates it; else what a person must do instead

    @property
    def automatic(self) -> bool:
        return self.manual is None

    def as_dict(self) -> dict[str, object]:
        return {"secret": self.secret, "because": list(self.because), "automatic": self.automatic,
                "manual": self.manual}


def manual_step(intent: SecretIntent) -> str | None:
    """None when a rotator can draw the secret's new value; otherwise why not and what a person does instead."""
    source = intent.spec.source
    name = intent.metadata.name
    if source.publication is not None:
        return (f"published by an operator from {source.publication.namespace}/{source.publication.secret_name}: "
                "have the operator reissue it; chamberlain copies the new value")
    if intent.metadata.annotations.get(wk.ANNOTATION_ROTATOR):
        return None  # a rotator chosen explicitly (a plug-in may rotate any source)
    if source.bootstrap is not None:
        return (f"upstream-issued (source.bootstrap): have its issuer reissue it, then "
                f"`chamberlain import {name} PATH --from-file F --reason ...`")
    if source.existing_secret is not None:
        return (f"adopted from an existing Secret (source.existingSecret): have its issuer reissue it, then "
                f"`chamberlain import {name} PATH --from-file F --reason ...`, or replace the source by generate so "
                "chamberlain draws the next value")
    generate = source.generate or {}
    if all(isinstance(g, FixedNameGenerator) for g in generate.values()):
        return "only fixed-name keys: nothing to redraw; change the name in Git if it must change"
    return None


def namespace_reasons(platform: Platform, intent: SecretIntent, namespace: str,
                      bootstrap_namespaces: Iterable[str] = ()) -> list[str]:
    """Why a compromise of ``namespace`` exposes ``intent`` (empty: it does not)."""
    platform_ns = protected_namespaces(platform)
    if namespace in platform_ns:
        return [f"{namespace} is {platform_ns[namespace]}: its controllers read every secret"]
    why = [f"consumer Secret {c.namespace}/{c.secret_name}" for c in intent.spec.consumers if c.namespace == namespace]
    published = intent.spec.source.publication
    if published is not None and published.namespace == namespace:
        why.append(f"published from {published.namespace}/{published.secret_name}")
    if namespace in set(bootstrap_namespaces):
        why.append(f"bootstrap Secret applied in {namespace}")
    return why


def affected(platform: Platform, intents: Iterable[SecretIntent], scope: Scope,
             bootstrap_namespaces: Mapping[str, Iterable[str]] | None = None) -> list[Affected]:
    """Every secret ``scope``'s compromise exposes, admin credentials before the secrets they administer, otherwise
    in name order. ``bootstrap_namespaces``: per intent, the namespaces its bootstrap manifest names."""
    by_name = {i.metadata.name: i for i in intents}
    boot = bootstrap_namespaces or {}
    namespaces: list[str] = []
    if scope.kind == "namespace":
        namespaces = [scope.name]
        if scope.name not in _known_namespaces(platform, by_name.values(), boot):
            # a typo would otherwise report "nothing to rotate" and leave the compromised secrets as they are
            raise UsageError(f"namespace {scope.name!r}: no intent, bootstrap Secret, tenancy owner or platform "
                             "component of the repository uses it (a typo?)")
    elif scope.kind == "owner":
        owned = [i for i in by_name.values() if i.spec.owner == scope.name]
        tenancy = platform.spec.tenancy
        team = tenancy.owner(scope.name) if tenancy is not None else None
        if not owned and team is None:
            raise UsageError(f"no intent is owned by {scope.name!r} and the Platform's tenancy names no such owner")
        namespaces = list(team.namespaces) if team is not None else []
    why: dict[str, list[str]] = {}
    for name, intent in sorted(by_name.items()):
        reasons = ["--all"] if scope.kind == "all" else []
        if scope.kind == "owner" and intent.spec.owner == scope.name:
            reasons.append(f"owned by {scope.name}")
        for ns in namespaces:
            reasons += [r for r in namespace_reasons(platform, intent, ns, boot.get(name, ())) if r not in reasons]
        if reasons:
            why[name] = reasons
    _admin_closure(by_name, why)
    order = _admins_first(by_name, sorted(why))
    return [Affected(n, tuple(why[n]), manual_step(by_name[n])) for n in order]


def _known_namespaces(platform: Platform, intents: Iterable[SecretIntent],
                      boot: Mapping[str, Iterable[str]]) -> set[str]:
    known = set(protected_namespaces(platform))
    for intent in intents:
        known.update(c.namespace for c in intent.spec.consumers)
        if intent.spec.source.publication is not None:
            known.add(intent.spec.source.publication.namespace)
    for namespaces in boot.values():
        known.update(namespaces)
    if platform.spec.tenancy is not None:
        known.update(ns for owner in platform.spec.tenancy.owners for ns in owner.namespaces)
    return known


def _admin_of(intent: SecretIntent) -> str | None:
    target = intent.spec.target
    return target.postgres.admin_intent if target is not None else None


def _admin_closure(by_name: Mapping[str, SecretIntent], why: dict[str, list[str]]) -> None:
    """Add every secret whose admin credential is exposed, until nothing changes (admin chains are short)."""
    changed = True
    while changed:
        changed = False
        for name, intent in sorted(by_name.items()):
            admin = _admin_of(intent)
            if admin is not None and admin in why and name not in why:
                why[name] = [f"its admin credential {admin} is exposed: its holder can set this password"]
                changed = True


def _admins_first(by_name: Mapping[str, SecretIntent], names: list[str]) -> list[str]:
    """``names`` with each admin credential before the secrets it administers (stable otherwise)."""
    chosen, done, order = set(names), set[str](), list[str]()

    def visit(name: str, seen: frozenset[str]) -> None:
        if name in done or name in seen:  # a cycle is the checker's to report; do not loop on it
            return
        admin = _admin_of(by_name[name])
        if admin is not None and admin in chosen:
            visit(admin, seen | {name})
        done.add(name)
        order.append(name)

    for n in names:
        visit(n, frozenset())
    return order


__all__ = ["Affected", "Scope", "ScopeKind", "affected", "manual_step", "namespace_reasons"]
