"""Reference rules: environments (CH010), policies (CH011, CH013), other intents (CH014), the agreement of
classification with source (CH015) and consumer keys that name a key of their source (CH019, CH009). Each lookup
goes through a dict, so the rules stay linear in repo size."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any

from chamberlain import wellknown as wk
from chamberlain.checks.registry import check
from chamberlain.checks.sops import bootstrap_refs
from chamberlain.checks.structure import meant_for_chamberlain
from chamberlain.findings import Finding
from chamberlain.intent.durations import format_duration
from chamberlain.intent.loader import Loaded, Repository
from chamberlain.intent.memo import memo
from chamberlain.intent.model import KEYPAIR_GENERATORS, RotationPolicySpec, SecretIntent

_SOURCE_FOR_CLASS = {
    "bootstrap": "bootstrap",
    "runtime": "generate",
    "derived": "publication",
    "config": "publication",
}


def _label(item: Loaded[SecretIntent]) -> str:
    return f"SecretIntent/{item.obj.metadata.name}"


def undeclared(repo: Repository, kind: str, name: str, missing: str) -> str:
    """What to say of a reference to ``kind`` ``name`` that did not resolve: ``missing``, unless the object is
    declared but failed to load, or is declared under an apiVersion that is not chamberlain's (CH130). Then the
    reference is a follow-on of that declaration's own finding, and "not declared" would send the author looking
    for a declaration that is there."""
    doc = repo.invalid_object(kind, name)
    if doc is not None:
        return f"is declared in {doc.file}:{doc.line} but invalid (see the findings there)"
    stray = memo(repo, "not_read_as_intent", lambda: {
        (d.kind, d.name): d for d in reversed(repo.manifests) if meant_for_chamberlain(d)}).get((kind, name))
    if stray is not None:
        return (f"is declared in {stray.file}:{stray.line} with apiVersion {stray.api_version!r}, so it is not read "
                "as intent (CH130)")
    return missing


@check("unknown-environments", per_file=True)
def unknown_environments(repo: Repository) -> Iterator[Finding]:
    platform = repo.platform
    if platform is None:
        return
    known = {e.name for e in platform.spec.environments}
    for item in repo.intents:
        for i, env in enumerate(item.obj.spec.environments or []):
            if env not in known:
                yield Finding(
                    item.file, item.line_of("spec", "environments", i), "CH010",
                    f"{_label(item)}: environment {env!r} is not declared by the Platform "
                    f"(known: {', '.join(sorted(known))})",
                    object=_label(item),
                )


def _rotate_before_findings(
    item: Loaded[Any], loc: tuple[str, ...], label: str, spec: RotationPolicySpec
) -> Iterator[Finding]:
    """CH013 at ``loc`` in ``item``'s document. The line is computed only for a finding: ``line_of`` composes
    and caches the document's node tree, which a clean repository should not pay for."""
    if spec.ttl is not None and spec.rotate_before is not None and spec.rotate_before >= spec.ttl:
        yield Finding(
            item.file, item.line_of(*loc), "CH013",
            f"{label}: rotateBefore {format_duration(spec.rotate_before)} is not shorter than ttl "
            f"{format_duration(spec.ttl)}; the secret would always be due",
            object=label,
        )


@check("policies", per_file=True)
def policies(repo: Repository) -> Iterator[Finding]:
    index = repo.policy_index()
    for p in repo.policies:
        label = f"RotationPolicy/{p.obj.metadata.name}"
        yield from _rotate_before_findings(p, ("spec", "rotateBefore"), label, p.obj.spec)
    platform_item = repo.platforms[0] if len(repo.platforms) == 1 else None
    default = platform_item.obj.spec.defaults.rotation_policy if platform_item else None
    if platform_item is not None and default is not None and default not in index:
        yield Finding(
            platform_item.file, platform_item.line_of("spec", "defaults", "rotationPolicy"), "CH011",
            f"Platform default rotation policy {default!r} "
            f"{undeclared(repo, 'RotationPolicy', default, 'is not declared')}",
            object=f"Platform/{platform_item.obj.metadata.name}",
        )
    for item in repo.intents:
        rotation = item.obj.spec.rotation
        if isinstance(rotation, RotationPolicySpec):
            yield from _rotate_before_findings(item, ("spec", "rotation", "rotateBefore"), _label(item), rotation)
        elif rotation is not None and rotation.policy not in index:
            yield Finding(
                item.file, item.line_of("spec", "rotation", "policy"), "CH011",
                f"{_label(item)}: rotation policy {rotation.policy!r} "
                f"{undeclared(repo, 'RotationPolicy', rotation.policy, 'is not declared')}",
                object=_label(item),
            )
        elif rotation is None and default is None and platform_item is not None:
            yield Finding(
                item.file, item.line_of("spec"), "CH011",
                f"{_label(item)}: no rotation policy and the Platform declares no default",
                object=_label(item),
            )


@check("intent-references")
def intent_references(repo: Repository) -> Iterator[Finding]:
    index = repo.intent_index()
    for item in repo.intents:
        target = item.obj.spec.target
        if target is None:
            continue
        admin = target.postgres.admin_intent
        # The line is computed only for a finding: it composes (and caches) the document's YAML node tree,
        # which a clean repository must not pay for every intent with a target.
        if admin == item.obj.metadata.name:
            yield Finding(item.file, item.line_of("spec", "target", "postgres", "adminIntent"), "CH014",
                          f"{_label(item)}: adminIntent names the intent itself", object=_label(item))
        elif admin not in index:
            yield Finding(item.file, item.line_of("spec", "target", "postgres", "adminIntent"), "CH014",
                          f"{_label(item)}: adminIntent {admin!r} "
                          f"{undeclared(repo, 'SecretIntent', admin, 'is not a declared SecretIntent')}",
                          object=_label(item))


@check("classification-source", per_file=True)
def classification_source(repo: Repository) -> Iterator[Finding]:
    for item in repo.intents:
        spec = item.obj.spec
        wanted = _SOURCE_FOR_CLASS[spec.classification]
        if spec.source.kind != wanted and not (spec.source.kind == "existingSecret" and wanted == "generate"):
            yield Finding(
                item.file, item.line_of("spec", "source"), "CH015",
                f"{_label(item)}: classification {spec.classification!r} needs source.{wanted}, "
                f"not source.{spec.source.kind}",
                object=_label(item),
            )


# ------------------------------------------------------------------------------------------------ CH019 / CH009

# Keys a certificate rotator adds next to each keypair key K (see chamberlain.rotation.rotators.x509): K's
# certificate under <stem>.crt (tls.key -> tls.crt), and for the CA-issued variant the CA bundle.
_X509_ROTATORS = {"x509": (), "x509-vault-pki": ("ca.crt",)}
_BUILTIN_ROTATORS = {"random", "keypair", "generated", "postgres"}


def _certificate_key(key: str) -> str:
    return f"{key[: -len('.key')]}.crt" if key.endswith(".key") and len(key) > len(".key") else f"{key}.crt"


def source_keys(intent: SecretIntent, bootstrap_keys: Mapping[int, frozenset[str]]) -> frozenset[str] | None:
    """The keys the intent's value has in the authority, or None when Git cannot say (a publication without
    ``keys``, a bootstrap file that is missing, a plug-in rotator). Pure.

    Generated: every declared key, plus ``<key>.pub`` for keypairs (and the certificates of the x509 rotators).
    Bootstrap: the keys of the Secret in the bootstrap file (SOPS leaves key names in clear). Publication: the
    declared ``keys``. ``bootstrap_keys``: by ``id()`` of the intent (:func:`_bootstrap_keys`)."""
    source = intent.spec.source
    if source.generate is not None:
        rotator = intent.metadata.annotations.get(wk.ANNOTATION_ROTATOR)
        if rotator and rotator not in _BUILTIN_ROTATORS and rotator not in _X509_ROTATORS:
            return None  # a plug-in may add keys of its own
        keys = set(source.generate)
        for key, gen in source.generate.items():
            if isinstance(gen, KEYPAIR_GENERATORS):
                keys.add(f"{key}.pub")
                if rotator in _X509_ROTATORS:
                    keys.add(_certificate_key(key))
        if rotator in _X509_ROTATORS:
            keys.update(_X509_ROTATORS[rotator])
        return frozenset(keys)
    if source.bootstrap is not None:
        return bootstrap_keys.get(id(intent))
    if source.existing_secret is not None:
        return frozenset(source.existing_secret.keys) if source.existing_secret.keys is not None else None
    assert source.publication is not None
    return frozenset(source.publication.keys) if source.publication.keys is not None else None


def intent_keys(repo: Repository, intent: SecretIntent) -> frozenset[str] | None:
    """:func:`source_keys` of an intent of ``repo``, computed once per intent within :func:`memo.reading` (two
    checks ask it of every intent)."""
    table: dict[int, tuple[SecretIntent, frozenset[str] | None]] = memo(repo, "source_keys", dict)
    entry = table.get(id(intent))
    if entry is not None and entry[0] is intent:  # the entry holds the intent, so its id cannot be reused
        return entry[1]
    keys = source_keys(intent, _bootstrap_keys(repo))
    table[id(intent)] = (intent, keys)
    return keys


def _bootstrap_keys(repo: Repository) -> dict[int, frozenset[str]]:
    """The keys of each bootstrap intent's file, by ``id()`` of the intent object (the repository keeps it alive):
    by name, two intents that share one (CH008) would read each other's file, and an intent's findings would
    depend on another file (the per-file checks' promise, :mod:`chamberlain.checks.incremental`)."""
    return memo(repo, "bootstrap_keys", lambda: _bootstrap_keys_of(repo))


def _bootstrap_keys_of(repo: Repository) -> dict[int, frozenset[str]]:
    out: dict[int, frozenset[str]] = {}
    for ref in bootstrap_refs(repo):
        docs = ref.file.documents if ref.file is not None else []
        if len(docs) != 1 or not isinstance(docs[0].data, dict):
            continue  # CH025 reports the file; its keys are unknown
        keys: set[str] = set()
        for section in ("data", "stringData"):
            values = docs[0].data.get(section)
            if isinstance(values, dict):
                keys.update(str(k) for k in values)
        out[id(ref.intent.obj)] = frozenset(keys)
    return out


def did_you_mean(name: str, known: frozenset[str]) -> str:
    """`` (did you mean 'password'?)`` for the closest known name, or ''."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@check("consumer-keys", per_file=True)
def consumer_keys(repo: Repository) -> Iterator[Finding]:
    """CH019: a consumer maps a Secret key to an intent key the source does not have (ESO would fail the whole
    ExternalSecret, so the consumer would never receive any key). CH009 (warning): the source is a publication that
    declares no keys, so the mapping cannot be checked until it does."""
    for item in repo.intents:
        intent = item.obj
        mapped = [(i, c) for i, c in enumerate(intent.spec.consumers) if c.keys]
        if not mapped:
            continue
        known = intent_keys(repo, intent)
        if known is None:
            if intent.spec.source.publication is not None:
                i, consumer = mapped[0]
                yield Finding(
                    item.file, item.line_of("spec", "source", "publication"), "CH009",
                    f"{_label(item)}: consumer {consumer.namespace}/{consumer.secret_name} maps keys "
                    f"({', '.join(sorted(set((consumer.keys or {}).values())))}) of a publication that declares "
                    "none; declare source.publication.keys so a mistyped key is caught before it fails in ESO",
                    object=_label(item),
                )
            continue
        for i, consumer in mapped:
            for secret_key, intent_key in sorted((consumer.keys or {}).items()):
                if intent_key in known:
                    continue
                yield Finding(
                    item.file, item.line_of("spec", "consumers", i, "keys", secret_key), "CH019",
                    f"{_label(item)}: consumer {consumer.namespace}/{consumer.secret_name} maps {secret_key} to "
                    f"{intent_key!r}, which its {intent.spec.source.kind} source does not have"
                    f"{did_you_mean(intent_key, known)}; known keys: {', '.join(sorted(known)) or '(none)'}",
                    object=_label(item), subject=f"{consumer.namespace}/{consumer.secret_name}:{secret_key}",
                )
