"""The fast path for plain YAML documents: rapidyaml parses, its JSON emitter hands the tree over, ``json`` builds it.

PyYAML's C loader still builds every node and resolves every scalar in Python (3 s for 10k intents); rapidyaml
parses in C++ and ``json.loads`` builds the data in C, several times less. rapidyaml is a YAML 1.2 parser, more
lenient than libyaml, and JSON loses how a scalar was written, so this path only answers for documents where that
cannot matter, and *declines* (returns :data:`DECLINED`) everywhere else: the caller then loads the document as
before (:mod:`chamberlain.safeyaml`), so unusual, broken or hostile YAML gets exactly today's data, errors and line
numbers.

Syntax is libyaml's verdict, not rapidyaml's: every document first goes through libyaml's own parser without
building anything (``CParser.raw_parse``, C only, about a tenth of the full load), and any error declines. So a
document PyYAML refuses is never answered here, whatever rapidyaml would make of it.

Declined, before parsing (one regular-expression scan each):

- node properties and the constructs behind them: anchors, aliases, tags, complex keys (``&``, ``*``, ``!``, ``?``
  where a node may start), merge keys (``<<``), directives (``%``), and the reserved indicators ``@`` and `````
  where a node may start (rapidyaml reads them as plain text, PyYAML refuses them), and block scalar headers
  other than ``|``, ``>``, with an optional chomping indicator (rapidyaml accepts trailing text after them);
- characters where the two parsers' rules differ: tabs, carriage returns, NEL and the Unicode line and paragraph
  separators (line breaks in YAML 1.1), a byte-order mark, and every character PyYAML refuses as non-printable;
- indentation deep enough that the depth bound could apply (rapidyaml's emitter refuses nesting past 64 levels
  on its own, and ``json`` raises RecursionError rather than overflow: both decline).

Declined after parsing, from the JSON text:

- rapidyaml refused it (a syntax error: PyYAML reports it, with its line);
- any string (key or value) that YAML 1.1 would resolve to something else were it written plain (``yes``, ``on``,
  ``~``, ``0x1F``, ``1_000``, ``12:30``, ``2026-01-01``, ``.inf``...): JSON cannot say whether it was quoted;
- any float (rapidyaml rewrites ``.5`` as ``0.5``, and YAML 1.1's float grammar is not JSON's) and NaN/Infinity;
- an empty key (``: x`` is a null key to PyYAML) and any duplicate key (PyYAML's path reports CH100).

What is left: mappings, sequences, strings, JSON integers (which YAML 1.1 reads as the same ``int``), ``true``,
``false`` and ``null``, the subset every intent repository is made of. ``tests/unit/test_fastyaml.py`` checks the
fast path against PyYAML on generated documents: equal data (types included) or declined.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from yaml.resolver import Resolver


def _optional(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:  # pragma: no cover - exercised only where a wheel is missing: PyYAML's path for everything
        return None


_libyaml = _optional("yaml._yaml")  # libyaml's parser: the syntax gate (no gate, no fast path)


@functools.cache
def _rapidyaml() -> Any:
    """rapidyaml (a wheel with a C++ extension), imported at the first parse: 2 MiB of resident memory that a
    process parsing no YAML (the controller watching its cluster) does without."""
    return _optional("ryml.ryml")


@functools.cache
def _kinds() -> tuple[int, int, int]:
    """rapidyaml's MAP, SEQ and STREAM node type bits."""
    ryml = _rapidyaml()
    return int(ryml.MAP), int(ryml.SEQ), int(ryml.STREAM)


class _Declined:
    """The fast path does not answer for this document; load it the usual way."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DECLINED"


DECLINED: Final = _Declined()
MAX_FAST_INDENT = 48  # well under safeyaml.MAX_DEPTH (64): deeper documents take the checked path

# A node property or construct where a node can start (line start, after a space or a flow indicator).
_PROPERTIES = re.compile(r"(?:^|[\s\[\]{},])(?:[&*!?@`%]|[|>](?![-+]? *(?:\n|$)))|<<", re.M)
_PROPERTY_CHARS = "&*!?<%@`|>"  # none of them in the text (the common case): _PROPERTIES need not run
# A flow closer or comma where a node starts (PyYAML refuses ``- ]``, rapidyaml reads it as text), and a colon
# where a node starts (``[:``, ``a : b``, an empty key), which rapidyaml reads its own way. Tabs and CRs are
# declined before, so a space or a newline is all that can precede.
_STRAY = (" ]", " }", " ,", "\n]", "\n}", "\n,", " :", "\n:", "[:", "{:", ",:")
# Everything outside what both parsers read alike: PyYAML's printable set less tab, CR, NEL, LS, PS and the BOM.
_ODD_CHARS = re.compile("[^\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")
_INDENT = re.compile(f"^ {{{MAX_FAST_INDENT},}}", re.M)
_STR_TAG = "tag:yaml.org,2002:str"


def _ambiguous_pattern() -> re.Pattern[str]:
    """A JSON string token whose text a plain YAML 1.1 scalar would not read as a string, built from PyYAML's own
    implicit resolvers (so it follows them exactly). Every resolver is tried after any first character the table
    lists (a superset of PyYAML's per-character choice: a few more declines, never a miss). The empty string is
    left out: rapidyaml emits an empty plain value as ``null``, so ``""`` was quoted (an empty *key* is tested
    apart)."""
    parts: set[str] = set()
    for resolvers in Resolver.yaml_implicit_resolvers.values():
        for tag, regexp in resolvers:
            if tag == _STR_TAG:
                continue
            body = regexp.pattern
            body = body.removeprefix("^")
            body = body.removesuffix("$")
            flags = "x" if regexp.flags & re.X else ""
            parts.add(f"(?{flags}:{body})" if flags else f"(?:{body})")
    firsts = "".join(sorted(k for k in Resolver.yaml_implicit_resolvers if k))
    return re.compile('"(?=[' + re.escape(firsts) + '])(?:' + "|".join(sorted(parts)) + ')"')


_AMBIGUOUS = _ambiguous_pattern()


class _Decline(Exception):
    pass


def _no_float(_: str) -> Any:
    raise _Decline


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _Decline  # a duplicate key: PyYAML's path refuses it with the line (CH100)
    return out


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_float=_no_float, parse_constant=_no_float)


def parser_version() -> str:
    """rapidyaml's version ("none" when it is not installed): part of the parse cache's key."""
    version = _optional("ryml.version") if _rapidyaml() is not None else None
    return str(getattr(version, "version", "none"))


def available() -> bool:
    return _libyaml is not None and _rapidyaml() is not None


def prescan_ok(text: str) -> bool:
    """Can the fast path answer for ``text`` at all (a cheap test on the text, before any parser runs)?"""
    if _ODD_CHARS.search(text) is not None or _INDENT.search(text) is not None:
        return False
    if not text.endswith("\n") or text.startswith(("]", "}", ",", ":")) or any(c in text for c in _STRAY):
        return False  # (a last line without its line break: block scalars end differently)
    return not any(c in text for c in _PROPERTY_CHARS) or _PROPERTIES.search(text) is None


def load(text: str) -> Any:
    """The data of the one document in ``text`` (a chunk the loader split off), or :data:`DECLINED`. Call it inside
    :func:`quiet_stderr`: rapidyaml prints its parse errors to file descriptor 2 before raising."""
    if _libyaml is None or _rapidyaml() is None or not prescan_ok(text):
        return DECLINED
    return _load_checked(text)


# A line with content: not blank, not a comment, not a bare document marker (markers with content are declined).
_CONTENT = re.compile(r"^(?![ ]*(?:#|$)|---(?: |$))", re.M)
_MARKER_WITH_CONTENT = re.compile(r"^---[ ]+[^#\s]", re.M)


def load_stream(text: str, spans: list[tuple[int, int]]) -> list[Any] | None:
    """The data of every document of a whole file at once (one parse, one JSON decode instead of one per
    document: the per-document set-up is most of the cost), aligned with the loader's ``spans`` (None for a span
    without content, as PyYAML gives). None when the file as a whole is not plain enough, or the documents do not
    line up one to one with the spans that have content: the caller then tries :func:`load` per document. Call it
    inside :func:`quiet_stderr`."""
    ryml = _rapidyaml()
    if ryml is None or _libyaml is None or not prescan_ok(text):
        return None
    if text.startswith("...") or "\n..." in text or _MARKER_WITH_CONTENT.search(text) is not None:
        return None
    content = [_CONTENT.search(text, start, end) is not None for start, end in spans]
    if not any(content):
        return None
    try:
        _libyaml.CParser(text).raw_parse()
        tree = ryml.parse_in_arena(text.encode("utf-8"))
    except Exception:  # a syntax error somewhere, or rapidyaml refused: document by document
        return None
    root = tree.root_id()
    _, _, stream_kind = _kinds()
    stream = tree.type(root) & stream_kind == stream_kind
    if (tree.num_children(root) if stream else 1) != sum(content):
        return None
    try:
        emitted = ryml.emit_json(tree)
    except Exception:
        return None
    if '"":' in emitted or _AMBIGUOUS.search(emitted) is not None:
        return None
    try:
        decoded = _DECODER.decode(emitted)
    except (_Decline, ValueError, RecursionError):
        return None
    docs = decoded if stream else [decoded]
    if not isinstance(docs, list) or not all(isinstance(d, dict | list) for d in docs):
        return None
    found = iter(docs)
    return [next(found) if has else None for has in content]


def _load_checked(text: str) -> Any:
    ryml = _rapidyaml()
    map_kind, seq_kind, stream_kind = _kinds()
    try:
        _libyaml.CParser(text).raw_parse()  # libyaml's syntax check: the parser the full load uses, its verdict
    except Exception:  # any refusal: PyYAML's path reports it, with its line
        return DECLINED
    try:
        tree = ryml.parse_in_arena(text.encode("utf-8"))
    except Exception:  # rapidyaml refused a document libyaml accepts: PyYAML's path loads it
        return DECLINED
    root = tree.root_id()
    kind = tree.type(root)
    node: int | None = None
    if kind & stream_kind == stream_kind:
        if tree.num_children(root) != 1:
            return DECLINED
        node = tree.first_child(root)
        kind = tree.type(node)
    if not kind & (map_kind | seq_kind):
        return DECLINED  # empty, a lone scalar, or an empty document: rare, and cheap the usual way
    try:
        emitted = ryml.emit_json(tree) if node is None else ryml.emit_json(tree, node)
    except Exception:  # e.g. nesting past the emitter's depth limit
        return DECLINED
    if '"":' in emitted or _AMBIGUOUS.search(emitted) is not None:
        return DECLINED
    try:
        return _DECODER.decode(emitted)
    except (_Decline, ValueError, RecursionError):
        return DECLINED



@contextmanager
def quiet_stderr() -> Iterator[bool]:
    """Point file descriptor 2 at /dev/null while rapidyaml parses (its error callback writes there before it
    raises; the document is then loaded by PyYAML, which reports the error as a finding). Yields False, and
    changes nothing, when descriptor 2 cannot be duplicated: the caller then skips the fast path."""
    try:
        saved = os.dup(2)
    except OSError:
        yield False
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        os.close(saved)
        yield False
        return
    try:
        os.dup2(null, 2)
        yield True
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


__all__ = ["DECLINED", "available", "load", "load_stream", "parser_version", "prescan_ok", "quiet_stderr"]
