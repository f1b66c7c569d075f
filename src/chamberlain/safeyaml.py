"""YAML that cannot hurt: the one way chamberlain reads YAML it did not write itself.

PyYAML's safe loader constructs only plain data, but it still follows aliases: a document can refer to itself (an
alias cycle, which makes every recursive consumer loop forever) or multiply a small text into gigabytes (the
"billion laughs" shape: every alias is a full copy once rendered or serialised). It also takes the last of two
equal mapping keys without a word, so a reviewer reading the first one is shown something the tool never sees.

Here every document is checked before it is used:

- duplicate keys in a mapping are refused (``<<`` merge keys excepted: overriding a merged key is their point);
- documents with aliases are composed first and their node graph walked once (iteratively, memoised): a cycle is
  refused, and so is a document whose *expanded* form (every alias replaced by a copy) exceeds
  :data:`MAX_EXPANDED_NODES` nodes or :data:`MAX_EXPANDED_CHARS` characters of scalars, or nests deeper than
  :data:`MAX_DEPTH`.

Errors are :class:`YamlLimitError` (a ``ValueError``) with the 1-based line in the text and the rule id that
reports it; syntax errors stay ``yaml.YAMLError``. Pure: text in, data out.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml

try:  # The C parser is an order of magnitude faster; fall back so a pure-Python PyYAML still works.
    from yaml import CSafeLoader as _Base
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Base  # type: ignore[assignment]

MAX_DEPTH = 64
MAX_EXPANDED_NODES = 200_000  # per document, after alias expansion
MAX_EXPANDED_CHARS = 16 * 1024 * 1024  # scalar characters per document, after alias expansion (2x the file limit)
RULE_LIMIT = "CH002"  # resource-limit: cycles, expansion, depth
RULE_DUPLICATE = "CH100"  # duplicate-key
_MERGE = "tag:yaml.org,2002:merge"


class YamlLimitError(yaml.YAMLError, ValueError):
    """A document that parses but must not be used. ``line`` is 1-based in the text given (None: unknown). A
    ``yaml.YAMLError`` too, so every reader that already handles bad YAML handles this."""

    def __init__(self, message: str, line: int | None, rule: str = RULE_LIMIT) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.rule = rule


def duplicate_key(node: yaml.MappingNode) -> yaml.Node | None:
    """The first key node of ``node`` that repeats an earlier scalar key (same tag and value), or None."""
    seen: set[tuple[str, str]] = set()
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE:
            ident = (key.tag, key.value)
            if ident in seen:
                return key
            seen.add(ident)
    return None


class StrictLoader(_Base):
    """The safe loader, refusing duplicate mapping keys while it constructs."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # PyYAML's own loop, with the duplicate test folded in: one dict lookup per key, so loading 10k intents
        # costs what it did. Keys merged in with ``<<`` come first in ``node.value`` once flattened, and the
        # mapping's own keys may override them; only an own key seen twice is a duplicate.
        if not isinstance(node, yaml.MappingNode):
            return super().construct_mapping(node, deep=deep)
        own = node.value
        self.flatten_mapping(node)
        own_start = len(node.value) - len(own)
        own_keys: set[Any] | None = set() if own_start else None
        mapping: dict[Any, Any] = {}
        for index, (key_node, value_node) in enumerate(node.value):
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, "found unhashable key", key_node.start_mark)
            if own_keys is None:
                if key in mapping:
                    raise _duplicate_error(key_node)
            elif index >= own_start:
                if key in own_keys:
                    raise _duplicate_error(key_node)
                own_keys.add(key)
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        # An impossible date (`after: 2026-13-45`) is a bare ValueError in PyYAML: give it the line, like any
        # other construction error, so the finding points at it.
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value!r} is not a valid date or time ({exc})", node.start_mark) from None


StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", StrictLoader.construct_yaml_timestamp)


def _duplicate_error(key: yaml.Node) -> YamlLimitError:
    shown = key.value if isinstance(key.value, str) and len(key.value) <= 80 else "(long key)"
    return YamlLimitError(
        f"duplicate mapping key {shown!r}: YAML keeps only the last one, so what a reviewer reads is not what is "
        "used", int(key.start_mark.line) + 1, RULE_DUPLICATE)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def check_graph(
    root: yaml.Node, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_EXPANDED_NODES,
    max_chars: int = MAX_EXPANDED_CHARS,
) -> None:
    """Refuse alias cycles, alias bombs, deep nesting and duplicate keys in a composed document. One iterative
    depth-first walk over the distinct nodes, memoising each node's expanded size: linear in the text, whatever
    the aliases multiply it to."""
    top = int(root.start_mark.line) + 1  # limits are the document's; a cycle is reported at its anchor
    done: dict[int, tuple[int, int, int]] = {}  # id -> (expanded nodes, expanded scalar chars, height)
    on_path: set[int] = {id(root)}
    stack: list[list[Any]] = [[root, _children(root), 0]]
    while stack:
        frame = stack[-1]
        node, kids, index = frame
        if index < len(kids):
            frame[2] = index + 1
            child = kids[index]
            cid = id(child)
            if cid in done:
                continue
            if cid in on_path:
                raise YamlLimitError("alias cycle: a node contains itself through an alias, so it has no finite "
                                     "value", int(child.start_mark.line) + 1)
            if len(stack) >= max_depth:
                raise YamlLimitError(f"nesting deeper than {max_depth} levels", top)
            on_path.add(cid)
            stack.append([child, _children(child), 0])
            continue
        stack.pop()
        on_path.discard(id(node))
        if isinstance(node, yaml.MappingNode):
            dup = duplicate_key(node)
            if dup is not None:
                raise _duplicate_error(dup)
        nodes, chars, height = 1, len(node.value) if isinstance(node, yaml.ScalarNode) else 0, 0
        for kid in kids:
            n, c, h = done[id(kid)]
            nodes += n
            chars += c
            height = max(height, h)
        height += 1
        if height > max_depth:  # the expanded depth: an alias can put a deep node under a deep path
            raise YamlLimitError(f"nesting deeper than {max_depth} levels", top)
        if nodes > max_nodes or chars > max_chars:
            raise YamlLimitError(
                f"aliases expand this document to more than {max_nodes} nodes or {max_chars} characters (an "
                "alias bomb); write the values out instead", top)
        done[id(node)] = (nodes, chars, height)


def has_aliases(text: str) -> bool:
    """Could ``text`` hold an alias? (An alias needs ``*``; one without its ``&`` anchor does not parse.)"""
    return "*" in text and "&" in text


def load(text: str) -> Any:
    """The one document of ``text`` (None when empty), checked. Raises YamlLimitError or yaml.YAMLError."""
    if not has_aliases(text):
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader
    node = yaml.compose(text, Loader=StrictLoader)
    if node is None:
        return None
    check_graph(node)
    return StrictLoader("").construct_document(node)


def load_all(text: str) -> list[Any]:
    """Every document of ``text``, checked. Raises YamlLimitError or yaml.YAMLError."""
    if not has_aliases(text):
        return list(yaml.load_all(text, Loader=StrictLoader))
    out: list[Any] = []
    for node in yaml.compose_all(text, Loader=StrictLoader):
        if node is None:
            out.append(None)
            continue
        check_graph(node)
        out.append(StrictLoader("").construct_document(node))
    return out


def flow_depth(text: str) -> int:
    """The deepest flow nesting (``[``/``{``) of ``text``, counted in one pass: libyaml composes flow collections
    recursively, so a caller refuses a hostile depth before parsing."""
    depth = best = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            best = max(best, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    return best


def check_text(text: str) -> None:
    """Check ``text`` without keeping its data (for readers that parse it with another library, e.g. ruamel's
    round-trip loader): raises YamlLimitError or yaml.YAMLError."""
    for node in yaml.compose_all(text, Loader=StrictLoader):
        if node is not None:
            check_graph(node)


__all__ = [
    "MAX_DEPTH",
    "MAX_EXPANDED_CHARS",
    "MAX_EXPANDED_NODES",
    "StrictLoader",
    "YamlLimitError",
    "check_graph",
    "check_text",
    "duplicate_key",
    "flow_depth",
    "has_aliases",
    "load",
    "load_all",
]
