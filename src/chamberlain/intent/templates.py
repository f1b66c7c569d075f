"""Templated consumer Secrets (``spec.consumers[].template``): the small language and its parser. Pure.

A template value is literal text with references ``{intent.key}`` — a key of the named SecretIntent's value
(``{orders-db-app.password}``). ``{{`` and ``}}`` stand for a literal brace. Nothing else is interpreted: there are
no functions, pipelines or conditionals, so a template cannot read data it does not name, and render emits every
literal segment as a quoted Go string constant (never as template text), so ESO's Go template engine never sees a
user-written action.

Why a language of its own rather than ESO's Go templates: a Go template can call functions (``index``, ``get``,
sprig) over everything the ExternalSecret fetched, including the version-marker metadata; checking what such a
template reads means interpreting Go templates. References are checked against the repository instead (validate
CH115-CH118) and render derives the fetches from them, so the ExternalSecret fetches exactly what is referenced.

Intent names are DNS labels (no ``.``), so the first ``.`` of a reference splits intent from key; keys may hold
dots themselves (``{kafka-user.ca.crt}``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from chamberlain.intent.model import DNS_LABEL_PATTERN, SECRET_KEY_PATTERN, Consumer, Platform, SecretIntent
from chamberlain.intent.paths import intent_environments

_INTENT = re.compile(DNS_LABEL_PATTERN)
_KEY = re.compile(SECRET_KEY_PATTERN)
MAX_TEMPLATE_LENGTH = 4096


class TemplateSyntaxError(ValueError):
    """A template that does not parse; ``column`` is 1-based inside the template value."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.column = column


@dataclass(frozen=True)
class Literal:
    text: str


@dataclass(frozen=True)
class Reference:
    intent: str
    key: str

    def __str__(self) -> str:
        return f"{self.intent}.{self.key}"


Segment = Literal | Reference


def parse(template: str) -> list[Segment]:
    """The segments of ``template``, adjacent literal text merged. Raises :class:`TemplateSyntaxError`."""
    if len(template) > MAX_TEMPLATE_LENGTH:
        raise TemplateSyntaxError(f"longer than {MAX_TEMPLATE_LENGTH} characters", MAX_TEMPLATE_LENGTH + 1)
    out: list[Segment] = []
    text: list[str] = []
    i = 0
    while i < len(template):
        ch = template[i]
        if not ch.isprintable():
            # a control character (a newline included) in a Secret value built from intent is a mistake
            # or an attempt to split a value; Go template text is also line-sensitive.
            raise TemplateSyntaxError(f"control character U+{ord(ch):04X} is not allowed", i + 1)
        if template.startswith("{{", i) or template.startswith("}}", i):
            text.append(ch)
            i += 2
            continue
        if ch == "}":
            raise TemplateSyntaxError("unmatched '}' (write '}}' for a literal brace)", i + 1)
        if ch != "{":
            text.append(ch)
            i += 1
            continue
        end = template.find("}", i + 1)
        if end < 0:
            raise TemplateSyntaxError("unclosed '{' (write '{{' for a literal brace)", i + 1)
        ref = _reference(template[i + 1:end], i + 2)
        if text:
            out.append(Literal("".join(text)))
            text = []
        out.append(ref)
        i = end + 1
    if text:
        out.append(Literal("".join(text)))
    return out


def _reference(body: str, column: int) -> Reference:
    intent, dot, key = body.strip().partition(".")
    if not dot or not intent or not key:
        raise TemplateSyntaxError(f"{{{body}}} is not a reference {{intent.key}}", column - 1)
    if _INTENT.fullmatch(intent) is None or len(intent) > 63:
        raise TemplateSyntaxError(f"{intent!r} is not an intent name (a DNS-1123 label)", column)
    if _KEY.fullmatch(key) is None or len(key) > 253:
        raise TemplateSyntaxError(f"{key!r} is not a Secret key ([-._a-zA-Z0-9]+)", column + len(intent) + 1)
    return Reference(intent, key)


def references(template: str) -> list[Reference]:
    """The references of a template, in order of appearance (repeats kept). Raises like :func:`parse`."""
    return [s for s in parse(template) if isinstance(s, Reference)]


def literal_text(template: str) -> str:
    """The literal text of a template (references left out), for the credential scan. Raises like :func:`parse`."""
    return "".join(s.text for s in parse(template) if isinstance(s, Literal))



def granted_keys(intent: SecretIntent, namespace: str) -> frozenset[str] | None:
    """The keys of ``intent`` its own consumers in ``namespace`` hand out (its owner's grant to templates there):
    None for all of them (a consumer without ``keys``), an empty set when it declares no consumer there. A
    consumer's key mapping is what the owner reviewed, so a template in that namespace reads no other key. Pure."""
    keys: set[str] = set()
    for consumer in intent.spec.consumers:
        if consumer.namespace != namespace:
            continue
        if consumer.template:
            try:
                keys.update(r.key for text in consumer.template.values() for r in references(text)
                            if r.intent == intent.metadata.name)
            except TemplateSyntaxError:
                continue
        elif not consumer.keys:  # no mapping (or an empty one): render materializes every key
            return None
        else:
            keys.update(consumer.keys.values())
    return frozenset(keys)


def templated_readers(platform: Platform, intents: Iterable[SecretIntent], name: str,
                      environment: str) -> list[tuple[SecretIntent, Consumer]]:
    """The templated consumers of *other* intents, placed in ``environment``, whose template references intent
    ``name``: a change of ``name`` must reach them too. Templates that do not parse are skipped (validate refuses
    them, CH115). Pure."""
    found: list[tuple[SecretIntent, Consumer]] = []
    for intent in sorted(intents, key=lambda i: i.metadata.name):
        if intent.metadata.name == name or not any(c.template for c in intent.spec.consumers):
            continue
        if environment not in {e.name for e in intent_environments(platform, intent)}:
            continue
        for consumer in intent.spec.consumers:
            try:
                named = {r.intent for text in (consumer.template or {}).values() for r in references(text)}
            except TemplateSyntaxError:
                continue
            if name in named:
                found.append((intent, consumer))
    return found


__all__ = ["MAX_TEMPLATE_LENGTH", "Literal", "Reference", "Segment", "TemplateSyntaxError", "granted_keys",
           "literal_text", "parse", "references", "templated_readers"]
