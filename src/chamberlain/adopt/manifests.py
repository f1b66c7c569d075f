"""Read an estate from a directory of manifests (what ``kubectl get -o yaml`` or a GitOps repository holds).

Every ``*.yaml``, ``*.yml`` and ``*.json`` file under the directory, each document through the safe YAML loader
(:mod:`chamberlain.safeyaml`: no alias bombs, no duplicate keys); a ``kind: List`` (or ``SecretList``...) is read
item by item. Bounded: file count, file size and total bytes have limits, and a file over them is reported, not
read. Documents are split at their ``---`` lines first, so each object is reported with its file and line and one
bad document does not hide the others. Linear in the input.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import yaml

from chamberlain import safeyaml
from chamberlain.adopt.estate import Estate, Origin, Problem, reduce
from chamberlain.intent.loader import MAX_FILE_BYTES

MAX_FILES = 20_000
MAX_TOTAL_BYTES = 512 * 1024 * 1024
MAX_FLOW_DEPTH = safeyaml.MAX_DEPTH
SUFFIXES = (".yaml", ".yml", ".json")
RULE_YAML = "CH001"  # malformed YAML, as validate reports it

_DOC_START = re.compile(r"^---(?:[ \t].*)?$", re.MULTILINE)


def documents(text: str) -> Iterator[tuple[int, str]]:
    """(1-based first line, text) of each ``---``-separated document of ``text``, in one pass."""
    start, line = 0, 1
    for match in _DOC_START.finditer(text):
        yield line, text[start:match.start()]
        line += text.count("\n", start, match.end())
        start = match.end()
    yield line, text[start:]


def read_text(text: str, where: str, estate: Estate) -> None:
    """Add the objects of one file's text to ``estate`` (problems too)."""
    for first, doc in documents(text):
        if not doc.strip():
            continue
        if safeyaml.flow_depth(doc) > MAX_FLOW_DEPTH:
            estate.add(Problem(f"{where}:{first}", f"nesting deeper than {MAX_FLOW_DEPTH} levels", "CH002"))
            continue
        try:
            data = safeyaml.load(doc)
        except safeyaml.YamlLimitError as exc:
            line = first + (exc.line or 1) - 1
            estate.add(Problem(f"{where}:{line}", exc.message, exc.rule))
            continue
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = first + (int(mark.line) if mark is not None else 0)
            problem = getattr(exc, "problem", None) or "not valid YAML"
            estate.add(Problem(f"{where}:{line}", f"malformed YAML: {problem}", RULE_YAML))
            continue
        items = data.get("items") if isinstance(data, dict) and str(data.get("kind", "")).endswith("List") else None
        for obj in (items if isinstance(items, list) else [data]):
            estate.add(reduce(obj, Origin(f"{where}:{first}")))


def read_directory(root: Path) -> Estate:
    """The estate the manifests under ``root`` describe (a single file works too)."""
    estate = Estate()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.suffix in SUFFIXES and p.is_file()
                                                  and not any(part.startswith(".") for part in
                                                              p.relative_to(root).parts))
    total = 0
    for index, path in enumerate(files):
        shown = str(path.relative_to(root)) if path != root else path.name
        if index >= MAX_FILES:
            estate.add(Problem(shown, f"more than {MAX_FILES} files: the rest is not read", "CH002"))
            break
        size = path.stat().st_size
        if size > MAX_FILE_BYTES or total + size > MAX_TOTAL_BYTES:
            estate.add(Problem(shown, f"file over {MAX_FILE_BYTES} bytes (or the {MAX_TOTAL_BYTES}-byte total): "
                                      "not read", "CH002"))
            continue
        total += size
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            estate.add(Problem(shown, f"cannot read ({exc.strerror or type(exc).__name__})", RULE_YAML))
            continue
        except UnicodeDecodeError:
            estate.add(Problem(shown, "not UTF-8 text: not read", RULE_YAML))
            continue
        read_text(text, shown, estate)
    return estate


__all__ = ["documents", "read_directory", "read_text"]
