"""Round-trip YAML edits that keep the user's comments, key order, quoting and indentation.

Boundary: text in, text out, one YAML document at a time (ruamel.yaml's round-trip mode). ruamel needs to be told
the file's indentation, so we read it off the text; :func:`faithful` says whether an unmodified round trip gives the
text back byte for byte, so callers know an edit touches nothing but what they changed.
"""

from __future__ import annotations

import io
import re
from typing import Any, TypeVar

import yaml as pyyaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from chamberlain import safeyaml
from chamberlain.errors import UsageError

Node = TypeVar("Node", CommentedMap, CommentedSeq)

_KEY = re.compile(r"^( *)(?![-#\s])[^:#]+:(\s|$)")
_DASH = re.compile(r"^( *)- ")


def guess_indent(text: str) -> tuple[int, int, int]:
    """(mapping indent, sequence indent, dash offset) as ruamel's ``YAML.indent`` takes them."""
    mapping: int | None = None
    offset: int | None = None
    parent_key: int | None = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, dash = _KEY.match(line), _DASH.match(line)
        if dash and parent_key is not None and offset is None:
            offset = len(dash.group(1)) - parent_key
        if key:
            indent = len(key.group(1))
            if indent > 0 and (mapping is None or indent < mapping):
                mapping = indent
            parent_key = indent if line.rstrip().endswith(":") else None
        elif not dash:
            parent_key = None
    off = max(offset or 0, 0)
    return mapping or 2, off + 2, off


def yaml_for(text: str) -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 1 << 16  # never fold long values
    mapping, sequence, offset = guess_indent(text)
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    yaml.explicit_start = text.lstrip("\ufeff").startswith("---")
    return yaml


def load(text: str) -> tuple[YAML, Any]:
    """A round-trip load of ``text``, after the checks every YAML reader of chamberlain applies
    (:mod:`chamberlain.safeyaml`: no duplicate key, alias cycle or alias bomb); those are a usage error naming the
    line. Syntax is left to ruamel, whose YAML 1.2 reading is what the edit must preserve."""
    try:
        safeyaml.check_text(text)
    except safeyaml.YamlLimitError as exc:
        where = f"line {exc.line}: " if exc.line is not None else ""
        raise UsageError(f"{where}{exc.message} [{exc.rule}]") from None
    except pyyaml.YAMLError:
        pass
    yaml = yaml_for(text)
    return yaml, yaml.load(text)


def child(parent: CommentedMap, key: str, kind: type[Node]) -> Node | None:
    """``parent[key]``, created empty when absent; ``None`` when it holds something else (the caller says what)."""
    value = parent.get(key)
    if value is None:
        value = parent[key] = kind()
    return value if isinstance(value, kind) else None


def mapping_at(node: Any, *keys: str) -> CommentedMap | None:
    """The mapping at ``node[k1][k2]...``, or ``None`` when a step is missing or not a mapping (never creates)."""
    for key in keys:
        node = node.get(key) if isinstance(node, CommentedMap) else None
    return node if isinstance(node, CommentedMap) else None


def dump(yaml: YAML, data: Any) -> str:
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()


def faithful(text: str) -> bool:
    yaml, data = load(text)
    return dump(yaml, data) == text
