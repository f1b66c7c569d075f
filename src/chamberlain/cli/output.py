"""Printing: data on stdout, diagnostics on stderr, in the formats users ask for (``-o text|json|yaml|...``), and the
``-o`` and PATH parameters every printing command takes. A command that prints a list or table takes
:data:`ListOutput` (``-o text|json|yaml|wide``); one that prints a single result takes :data:`Output`."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Annotated, Any

import typer
import yaml

from chamberlain.terminal import Console, json_spelled

# Data goes to stdout, diagnostics to stderr, so `-o json | jq` always works.
stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


class DataFormat(StrEnum):
    text = "text"
    json = "json"
    yaml = "yaml"


class ListFormat(StrEnum):
    """A command that prints a list or table: text, json, yaml (the same data as json), or wide (text with more
    columns), as kubectl's ``-o``."""

    text = "text"
    json = "json"
    yaml = "yaml"
    wide = "wide"


class FindingsFormat(StrEnum):
    text = "text"
    json = "json"
    yaml = "yaml"
    wide = "wide"
    sarif = "sarif"


class InventoryFormat(StrEnum):
    text = "text"
    json = "json"
    yaml = "yaml"
    wide = "wide"
    markdown = "markdown"
    html = "html"


Output = Annotated[DataFormat, typer.Option("-o", "--output", help="Output format.")]
ListOutput = Annotated[ListFormat, typer.Option(
    "-o", "--output", help="Output format: text, json, yaml (the same data as json) or wide (more columns).")]
FindingsOutput = Annotated[FindingsFormat, typer.Option("-o", "--output", help="Output format (wide: with "
                                                        "the rule's severity and invariant columns).")]
InventoryOutput = Annotated[InventoryFormat, typer.Option("-o", "--output", help="Output format (wide: with "
                                                          "purpose, source and Vault paths).")]

StrictOption = Annotated[
    bool, typer.Option("--strict", help="Warnings fail the command too (SPEC §10: a new rule starts as a warning).")
]
RepoPath = Annotated[
    str,
    typer.Argument(help="The intent repository (a directory of YAML files).", show_default=False, metavar="PATH"),
]


def line(text: str, *, err: bool = False) -> None:
    """One line of plain text (no markup, no highlighting: names and paths are printed as they are)."""
    (stderr if err else stdout).print(text, markup=False, highlight=False)


def emit_json(data: Any) -> None:
    sys.stdout.write(json_spelled(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)) + "\n")


def emit_yaml(data: Any) -> None:
    """``data`` as YAML, exactly the data ``-o json`` prints (tuples become lists, keys strings): a pipeline may
    switch formats without a difference."""
    sys.stdout.write(yaml.safe_dump(json.loads(json.dumps(data)), sort_keys=True, allow_unicode=True))


def emit_data(data: Any, fmt: StrEnum) -> bool:
    """Print ``data`` as json or yaml (any format enum with those values); return False when the caller should
    print text (or wide text) itself."""
    if fmt == "json":
        emit_json(data)
        return True
    if fmt == "yaml":
        emit_yaml(data)
        return True
    return False


def is_wide(fmt: StrEnum) -> bool:
    return fmt == "wide"
