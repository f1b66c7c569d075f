"""Deterministic text for rendered files: YAML manifests and JSON documents.

Belongs here: turning plain data (dicts with string keys, lists, strings, integers, booleans, None) into text that
is identical on every run and machine — sorted keys, block style, ``\\n`` line endings, no line folding. Nothing
here knows what a manifest means; callers hand over finished data.

Why not ``yaml.dump``: even with libyaml's emitter, PyYAML builds a representation graph in pure Python, and that
was 90 % of rendering 10k intents (several seconds). Rendered manifests use a tiny subset of YAML, so
:func:`dump_yaml` writes that subset directly. It is checked against PyYAML in the tests (every rendered document
and generated data must load back equal), and it quotes every string a YAML 1.1 reader such as Go's ``yaml.v2``
(used by kubectl, kustomize and Argo CD) could read as anything but that string: ``yes``/``on``/``y``, numbers,
``null``, timestamps, and anything with indicator characters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

# A string is written plain only if it starts with a letter or '/', uses only these characters, and is not one of
# the words a YAML 1.1 reader resolves to a bool or null. Everything else is double-quoted.
_PLAIN = re.compile(r"[A-Za-z/][A-Za-z0-9_./@-]*")
_WORDS_1_1 = frozenset(
    w for base in ("y", "yes", "n", "no", "true", "false", "on", "off", "null", "nan", "inf")
    for w in (base, base.capitalize(), base.upper())
)
_ASCII_SAFE = re.compile(r"[ -~]*")  # printable ASCII: json.dumps escapes exactly what YAML needs escaped
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\x00": "\\0"}

_scalar_cache: dict[str, str] = {}


def _quote(text: str) -> str:
    if _ASCII_SAFE.fullmatch(text):
        return json.dumps(text)
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code < 0x10000:
            # Escaped rather than raw: YAML treats NEL, LS and PS as line breaks inside quoted scalars.
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def _str(text: str) -> str:
    cached = _scalar_cache.get(text)
    if cached is None:
        plain = _PLAIN.fullmatch(text) is not None and text not in _WORDS_1_1
        cached = text if plain else _quote(text)
        if len(_scalar_cache) < 200_000:  # names and labels repeat a lot; values are never secrets here
            _scalar_cache[text] = cached
    return cached


scalar_text = _str
"""A string as :func:`dump_yaml` writes it (plain or double-quoted), for writers of a fixed document shape."""


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return _str(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return json.dumps(value)  # finite floats only; nothing rendered uses them today
    if isinstance(value, dict) and not value:
        return "{}"
    if isinstance(value, list) and not value:
        return "[]"
    raise TypeError(f"cannot render a {type(value).__name__} as YAML")


def _mapping(data: Mapping[str, Any], pad: str, out: list[str]) -> None:
    # The hot loop of rendering (millions of keys for 10k intents): exact type checks and the scalar cache are
    # inlined on purpose; everything unusual falls through to the general path.
    append = out.append
    cache = _scalar_cache
    inner = pad + "  "
    for key in sorted(data):
        value = data[key]
        k = cache.get(key) if type(key) is str else None
        if k is None:
            if not isinstance(key, str):
                raise TypeError(f"mapping keys must be strings, got {type(key).__name__}")
            k = _str(key)
        kind = type(value)
        if kind is str:
            v = cache.get(value)
            append(f"{pad}{k}: {v if v is not None else _str(value)}\n")
        elif kind is dict:
            if value:
                append(f"{pad}{k}:\n")
                _mapping(value, inner, out)
            else:
                append(f"{pad}{k}: {{}}\n")
        elif kind is list:
            if value:
                append(f"{pad}{k}:\n")
                _sequence(value, pad, out)  # kubectl style: items at the key's indentation
            else:
                append(f"{pad}{k}: []\n")
        elif isinstance(value, Mapping) and value:
            append(f"{pad}{k}:\n")
            _mapping(value, inner, out)
        else:
            append(f"{pad}{k}: {_scalar(value)}\n")


def _sequence(items: list[Any], pad: str, out: list[str]) -> None:
    append = out.append
    cache = _scalar_cache
    inner = pad + "  "
    for item in items:
        kind = type(item)
        if kind is str:  # long name lists (RBAC resourceNames, kustomize resources)
            v = cache.get(item)
            append(f"{pad}- {v if v is not None else _str(item)}\n")
        elif (kind is dict or isinstance(item, Mapping)) and item:
            start = len(out)
            _mapping(item, inner, out)
            out[start] = f"{pad}- {out[start][len(inner):]}"
        elif kind is list and item:
            append(f"{pad}-\n")
            _sequence(item, inner, out)
        else:
            append(f"{pad}- {_scalar(item)}\n")


def mapping_text(data: Mapping[str, Any], pad: str) -> str:
    """A mapping's lines as :func:`dump_yaml` writes them nested at indentation ``pad`` (for writers of a fixed
    document shape that splice it in)."""
    out: list[str] = []
    _mapping(data, pad, out)
    return "".join(out)


def dump_yaml(doc: Mapping[str, Any]) -> str:
    """One YAML document (a mapping), keys sorted, ending in a newline, without a ``---`` marker."""
    if not doc:
        return "{}\n"
    out: list[str] = []
    _mapping(doc, "", out)
    return "".join(out)


def join_documents(texts: Iterable[str]) -> str:
    """Join already dumped documents into one multi-document file (``---`` before each)."""
    texts = texts if isinstance(texts, list) else list(texts)
    return "---\n" + "---\n".join(texts) if texts else ""


def dump_yaml_documents(docs: Iterable[Mapping[str, Any]]) -> str:
    """A multi-document YAML file, in the order given."""
    return join_documents(dump_yaml(d) for d in docs)


class _NotPlain(Exception):
    """Data :func:`_json` leaves to :func:`json.dumps` (floats, tuples, subclasses, non-string keys)."""


_json_str = json.encoder.encode_basestring  # the C encoder json.dumps(ensure_ascii=False) uses for strings
json_string = _json_str
"""A string as :func:`dump_json` writes it, for writers of a fixed document shape."""


def _json(value: Any, pad: str) -> str:
    kind = type(value)
    if kind is str:
        return _json_str(value)
    if kind is dict:
        if not value:
            return "{}"
        inner = pad + "  "
        parts = []
        for key in sorted(value):
            if type(key) is not str:
                raise _NotPlain
            parts.append(f"{_json_str(key)}: {_json(value[key], inner)}")
        return "{\n" + inner + (",\n" + inner).join(parts) + "\n" + pad + "}"
    if kind is list:
        if not value:
            return "[]"
        inner = pad + "  "
        return "[\n" + inner + (",\n" + inner).join([_json(v, inner) for v in value]) + "\n" + pad + "]"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if kind is int:
        return int.__repr__(value)
    raise _NotPlain


def dump_json(data: Any) -> str:
    """Pretty JSON with sorted keys and a final newline; what Vault's API and hvac accept as is.

    Byte for byte ``json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False)``: with ``indent`` that runs
    CPython's pure-Python encoder (generators all the way down), so plain data takes a direct path that encodes
    strings with the same C function, and anything else is left to ``json.dumps``."""
    try:
        return _json(data, "") + "\n"
    except _NotPlain:
        return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
