"""Rules of ``source.existingSecret``: a value already in a cluster Secret, imported once into the authority.

- ``existing-secret-keys`` (CH120, error): ``keys`` lists what leaves the Secret, so it is required and not empty;
  one Secret is imported by one intent only (its ``chamberlain.dev/adopt`` marker names exactly one).
- ``existing-secret-tenancy`` (CH121, error): never from a protected or bootstrap namespace, a platform component's
  or a bootstrap Secret, or a Secret another intent writes (a consumer) or publishes;
  with ``spec.tenancy`` the owner must hold the namespace (or be a platform owner), as an import reads a value
  into the owner's own path (``acceptsFrom`` lets an owner *write* into a namespace, never read from it).
- ``existing-secret-regenerated`` (CH122, error): an imported value is never regenerated, so the effective rotation
  policy must be ``static`` (replace the source by ``generate`` to let chamberlain draw the next value).

Pure over the loaded repository, one pass.
"""

from __future__ import annotations

from collections.abc import Iterator

from chamberlain.checks.registry import check
from chamberlain.checks.sops import bootstrap_secrets
from chamberlain.checks.tenancy import repository_owned
from chamberlain.findings import Finding
from chamberlain.intent.loader import Loaded, Repository
from chamberlain.intent.model import SecretIntent
from chamberlain.intent.paths import effective_policy
from chamberlain.intent.tenancy import Holders, always_protected, platform_secret


def _label(item: Loaded[SecretIntent]) -> str:
    return f"SecretIntent/{item.obj.metadata.name}"


def _imports(repo: Repository) -> Iterator[Loaded[SecretIntent]]:
    return (item for item in repo.intents if item.obj.spec.source.existing_secret is not None)


@check("existing-secret-keys")
def existing_secret_keys(repo: Repository) -> Iterator[Finding]:
    seen: dict[tuple[str, str], str] = {}
    for item in _imports(repo):
        src = item.obj.spec.source.existing_secret
        assert src is not None
        where = ("spec", "source", "existingSecret")
        if not src.keys:
            yield Finding(item.file, item.line_of(*where), "CH120",
                          f"{_label(item)}: existingSecret {src.namespace}/{src.secret_name} declares no keys; list "
                          "the keys to import (only those leave the Secret)", object=_label(item))
        ident = (src.namespace, src.secret_name)
        first = seen.setdefault(ident, item.obj.metadata.name)
        if first != item.obj.metadata.name:
            yield Finding(item.file, item.line_of(*where), "CH120",
                          f"{_label(item)}: Secret {src.namespace}/{src.secret_name} is already imported by "
                          f"SecretIntent/{first}; its adopt marker (chamberlain.dev/adopt) names one intent",
                          object=_label(item), subject=f"{src.namespace}/{src.secret_name}")


@check("existing-secret-tenancy")
def existing_secret_tenancy(repo: Repository) -> Iterator[Finding]:
    imports = list(_imports(repo))
    if not imports:  # every finding is about an import: the index below would serve nothing
        return
    platform = repo.platform
    protected = always_protected(platform)
    holders = Holders.of(platform) if platform is not None else None
    # Secrets other intents write (consumers: another owner's grant to one namespace) or publish: importing one
    # would relay a value its owner handed to that namespace only into this owner's path, from where it goes
    # wherever this owner declares.
    written: dict[tuple[str, str], str] = {}
    for other in repo.intents:
        imported = other.obj.spec.source.existing_secret
        for c in other.obj.spec.consumers:
            if imported is not None and (imported.namespace, imported.secret_name) == (c.namespace, c.secret_name):
                continue  # an importer taking its own Secret over; a second importer of it is CH120
            written.setdefault((c.namespace, c.secret_name), other.obj.metadata.name)
        pub = other.obj.spec.source.publication
        if pub is not None:
            written.setdefault((pub.namespace, pub.secret_name), other.obj.metadata.name)
    for secret in bootstrap_secrets(repo):  # read by handover only, for its own intent
        written.setdefault((secret.namespace or "default", secret.name), secret.ref.intent.obj.name)
    bootstrap_namespaces = repository_owned(repo)[2]
    for item in imports:
        src = item.obj.spec.source.existing_secret
        assert src is not None
        where = item.line_of("spec", "source", "existingSecret", "namespace")
        subject = f"{src.namespace}/{src.secret_name}"
        why = (f"namespace {src.namespace} is protected ({protected[src.namespace]})" if src.namespace in protected
               else platform_secret(src.namespace, src.secret_name))
        if why is None and src.namespace in bootstrap_namespaces:
            why = (f"namespace {src.namespace} is a bootstrap namespace (label chamberlain.dev/class: bootstrap): only "
                   "handover reads from it")
        writer = written.get((src.namespace, src.secret_name))
        if why is None and writer is not None and writer != item.obj.metadata.name:
            why = (f"it is the Secret SecretIntent/{writer} writes, publishes or bootstraps there; import a value "
                   "only from a Secret no intent manages (that intent's owner decides where its value goes)")
        if why is None and holders is not None:
            ok, reason = holders.may_read(item.obj.spec.owner, src.namespace)
            why = None if ok else reason
        if why is not None:
            yield Finding(item.file, where, "CH121", f"{_label(item)}: existingSecret {subject}: {why}",
                          object=_label(item), subject=subject)


@check("existing-secret-regenerated", per_file=True)
def existing_secret_regenerated(repo: Repository) -> Iterator[Finding]:
    platform = repo.platform
    if platform is None:
        return
    policies = {p.obj.metadata.name: p.obj for p in repo.policies}
    for item in _imports(repo):
        resolved = effective_policy(platform, policies, item.obj)
        if resolved is None or resolved[1].type == "static":
            continue
        name, spec = resolved
        yield Finding(item.file, item.line_of("spec", "rotation") if item.obj.spec.rotation else item.line_of("spec"),
                      "CH122",
                      f"{_label(item)}: an imported value is never regenerated, but its rotation policy "
                      f"{name!r} is {spec.type}; declare rotation: {{type: static}} (to rotate it later, replace "
                      "source.existingSecret by source.generate once it is imported)", object=_label(item))
