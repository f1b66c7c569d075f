"""Templated consumers (CH115-CH118) and the property-name convention (CH119, a warning).

A template (``spec.consumers[].template``, :mod:`chamberlain.intent.templates`) combines keys of several intents
in one consumer Secret. Each reference must resolve to a declared intent and a key its source has (CH116); every
intent referenced other than the declaring one must itself declare the consumer's namespace (CH117): otherwise a
team could pull another team's value into its own namespace by naming it in a template of its own intent. The
reader role of that namespace then already grants exactly those paths, and nothing else. A referenced intent must
exist wherever the consumer is placed (CH118), and a template's literal text never carries a value (CH115).

Property names (:mod:`chamberlain.intent.properties`): a key that is another spelling of a conventional name is
reported as a warning unless ``spec.propertyNames`` declares it.
"""

from __future__ import annotations

from collections.abc import Iterator

from chamberlain.checks.references import _bootstrap_keys, did_you_mean, intent_keys, source_keys, undeclared
from chamberlain.checks.registry import check
from chamberlain.checks.secrets import scan_text
from chamberlain.findings import Finding
from chamberlain.intent import properties
from chamberlain.intent.loader import Loaded, Repository
from chamberlain.intent.model import Consumer, SecretIntent
from chamberlain.intent.paths import intent_environments
from chamberlain.intent.templates import Literal, TemplateSyntaxError, granted_keys, parse

# What a reference stands for in the credential scan of the literal text: a word no scanner takes for a value,
# so "postgresql://{a.user}:{a.password}@" is scanned as "postgresql://${ref}:${ref}@" and a literal password is
# not (the scanner takes ${...} for a reference).
_PLACEHOLDER = "${ref}"


def _label(item: Loaded[SecretIntent]) -> str:
    return f"SecretIntent/{item.obj.metadata.name}"


def _smuggled(segments: list[object]) -> str | None:
    """The label of the first credential the literal text carries, or None."""
    text = "".join(s.text if isinstance(s, Literal) else _PLACEHOLDER for s in segments)
    hits = scan_text(text, generic=False, rule="CH115")
    return hits[0].label if hits else None


@check("consumer-templates")
def consumer_templates(repo: Repository) -> Iterator[Finding]:
    index = repo.intent_index()
    platform = repo.platform
    bootstrap: dict[int, frozenset[str]] | None = None
    for item in repo.intents:
        intent = item.obj
        label = _label(item)
        for i, consumer in enumerate(intent.spec.consumers):
            if not consumer.template:
                continue
            if bootstrap is None:
                bootstrap = _bootstrap_keys(repo)
            where = f"consumer {consumer.namespace}/{consumer.secret_name}"
            reported: set[tuple[str, str]] = set()  # (rule, intent): CH117/CH118 once per referenced intent
            ephemeral = sorted(e.name for e in intent_environments(platform, intent) if e.ephemeral) \
                if platform is not None else []
            if ephemeral:
                # an instance reads per-namespace copies `env up` writes (lifecycle.ephemeral); parts are not
                # copied there yet, so ESO would find nothing
                yield Finding(item.file, item.line_of("spec", "consumers", i, "template"), "CH118",
                              f"{label}: {where}: templated consumers are not supported in ephemeral environments "
                              f"yet ({', '.join(ephemeral)}); limit this intent's environments",
                              object=label, subject=f"{consumer.namespace}/{consumer.secret_name}")
            for secret_key, text in sorted(consumer.template.items()):
                loc = ("spec", "consumers", i, "template", secret_key)
                subject = f"{consumer.namespace}/{consumer.secret_name}:{secret_key}"
                try:
                    segments = parse(text)
                except TemplateSyntaxError as exc:
                    yield Finding(item.file, item.line_of(*loc), "CH115",
                                  f"{label}: {where}: template of {secret_key} does not parse at column "
                                  f"{exc.column}: {exc}", object=label, subject=subject)
                    continue
                smuggled = _smuggled(list(segments))
                if smuggled is not None:
                    yield Finding(item.file, item.line_of(*loc), "CH115",
                                  f"{label}: {where}: the literal text of {secret_key}'s template looks like "
                                  f"{smuggled}; reference the key that holds it ({{intent.key}}) instead",
                                  object=label, subject=subject)
                for ref in (s for s in segments if not isinstance(s, Literal)):
                    other = index.get(ref.intent)
                    if other is None:
                        missing = undeclared(repo, "SecretIntent", ref.intent,
                                             f"is not declared{did_you_mean(ref.intent, frozenset(index))}")
                        yield Finding(item.file, item.line_of(*loc), "CH116",
                                      f"{label}: {where}: template of {secret_key} references {{{ref}}}, but "
                                      f"SecretIntent {ref.intent!r} {missing}", object=label, subject=subject)
                        continue
                    yield from _key_findings(item, loc, where, secret_key, ref.intent, ref.key, other.obj,
                                             bootstrap, subject)
                    if other.obj is intent:
                        continue
                    granted = granted_keys(other.obj, consumer.namespace)
                    if ("CH117", ref.intent) not in reported and not _declares(other.obj, consumer):
                        reported.add(("CH117", ref.intent))
                        yield Finding(item.file, item.line_of(*loc), "CH117",
                                      f"{label}: {where}: template reads SecretIntent/{ref.intent}, which does not "
                                      f"declare namespace {consumer.namespace} among its consumers; its owner "
                                      f"({other.obj.spec.owner}) must add a consumer there (in "
                                      f"{other.file}) before another intent may combine its keys",
                                      object=label, subject=subject)
                    elif (granted is not None and _declares(other.obj, consumer) and ref.key not in granted
                          and ("CH117", str(ref)) not in reported):
                        reported.add(("CH117", str(ref)))
                        # the grant is the key mapping its owner reviewed: a template never takes another key
                        yield Finding(item.file, item.line_of(*loc), "CH117",
                                      f"{label}: {where}: template reads {{{ref}}}, but SecretIntent/{ref.intent}'s "
                                      f"consumers in namespace {consumer.namespace} hand out only "
                                      f"{', '.join(sorted(granted)) or 'no key'}; its owner "
                                      f"({other.obj.spec.owner}) must map {ref.key} there (in {other.file})",
                                      object=label, subject=subject)
                    if platform is not None and ("CH118", ref.intent) not in reported:
                        mine = {e.name for e in intent_environments(platform, intent)}
                        theirs = {e.name for e in intent_environments(platform, other.obj)}
                        if mine - theirs:
                            reported.add(("CH118", ref.intent))
                            yield Finding(item.file, item.line_of(*loc), "CH118",
                                          f"{label}: {where}: template reads SecretIntent/{ref.intent}, which does "
                                          f"not exist in {', '.join(sorted(mine - theirs))}; limit this intent's "
                                          f"environments or place {ref.intent} there", object=label, subject=subject)


def _declares(intent: SecretIntent, consumer: Consumer) -> bool:
    return any(c.namespace == consumer.namespace for c in intent.spec.consumers)


def _key_findings(item: Loaded[SecretIntent], loc: tuple[str | int, ...], where: str, secret_key: str,
                  name: str, key: str, other: SecretIntent, bootstrap: dict[int, frozenset[str]],
                  subject: str) -> Iterator[Finding]:
    label = _label(item)
    known = source_keys(other, bootstrap)
    if known is None:
        if other.spec.source.publication is not None:
            yield Finding(item.file, item.line_of(*loc), "CH116",
                          f"{label}: {where}: template of {secret_key} references {{{name}.{key}}}, but "
                          f"SecretIntent/{name}'s publication declares no keys; declare source.publication.keys "
                          "so the reference can be checked", object=label, subject=subject)
        return  # a bootstrap file that cannot be read (CH025 says why) or a plug-in rotator: keys unknown
    if key not in known:
        yield Finding(item.file, item.line_of(*loc), "CH116",
                      f"{label}: {where}: template of {secret_key} references {{{name}.{key}}}, a key "
                      f"SecretIntent/{name}'s {other.spec.source.kind} source does not have"
                      f"{did_you_mean(key, known)}; known keys: {', '.join(sorted(known)) or '(none)'}",
                      object=label, subject=subject)


# ------------------------------------------------------------------------------------------------ CH119


def _key_line(item: Loaded[SecretIntent], key: str) -> int:
    source = item.obj.spec.source
    if source.generate is not None and key in source.generate:
        return item.line_of("spec", "source", "generate", key)
    if source.publication is not None and source.publication.keys and key in source.publication.keys:
        return item.line_of("spec", "source", "publication", "keys", source.publication.keys.index(key))
    return item.line_of("spec", "source")


@check("property-names", per_file=True)
def property_names(repo: Repository) -> Iterator[Finding]:
    """CH119 (warning): keys that deviate from the convention, and ``spec.propertyNames`` entries that declare
    nothing (a key the source does not have, or a name that is neither conventional nor the key itself)."""
    for item in repo.intents:
        intent = item.obj
        label = _label(item)
        keys = intent_keys(repo, intent)
        if keys is None:
            continue
        declared = intent.spec.property_names
        for key, name in properties.deviations(keys, declared).items():
            yield Finding(item.file, _key_line(item, key), "CH119",
                          f"{label}: key {key!r} is another spelling of the conventional property name {name!r}; "
                          f"rename it, or declare the deviation: spec.propertyNames: {{{key}: {name}}}",
                          object=label, subject=key)
        for key, name in sorted(declared.items()):
            loc = ("spec", "propertyNames", key)
            if key not in keys:
                yield Finding(item.file, item.line_of(*loc), "CH119",
                              f"{label}: spec.propertyNames declares {key!r}, which its {intent.spec.source.kind} "
                              f"source does not have{did_you_mean(key, keys)}", object=label, subject=key)
            elif name != key and name not in properties.CONVENTIONAL:
                yield Finding(item.file, item.line_of(*loc), "CH119",
                              f"{label}: spec.propertyNames maps {key!r} to {name!r}, which is not a conventional "
                              f"name ({', '.join(sorted(properties.CONVENTIONAL))}); map it to the key itself "
                              "when it is a property of its own", object=label, subject=key)
