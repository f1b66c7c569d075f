"""Every command's ``--help`` at 80 columns reads as prose: docstring paragraphs rewrapped (no line broken where
the source broke it), nothing cut short ("…", or a summary ending in "..."), no line wider than the terminal, a
flag without a ``<bool>`` placeholder and every option that takes a value with a named one (FILE, PATH, NAME...),
never ``<str>`` or ``<path>``."""

from __future__ import annotations

import itertools
import re
from typing import Any, cast

import pytest
import typer

from chamberlain.cli.helptext import summary
from chamberlain.cli.main import app
from tests.conftest import run_cli

WIDTH = 80


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found += _commands(sub, (*path, name))
    return found


COMMANDS = _commands(typer.main.get_command(cast(typer.Typer, app)))
NOT_YET: dict[tuple[str, ...], list[str]] = {}  # options allowed a lower-case placeholder (none left)


def _help(command: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    result = run_cli(*command, "--help")
    assert result.code == 0, result.err
    return result.out


def _description(text: str) -> list[list[str]]:
    """The paragraphs between the usage line and the first section (Arguments, Options, Commands)."""
    lines = text.splitlines()
    end = next((i for i, line in enumerate(lines) if re.fullmatch(r"[A-Z][a-z]+:", line)), len(lines))
    paragraphs: list[list[str]] = [[]]
    for line in lines[1:end]:
        if line.strip():
            paragraphs[-1].append(line.strip())
        elif paragraphs[-1]:
            paragraphs.append([])
    return [p for p in paragraphs if p]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "chamberlain")
def test_help_fits_80_columns_and_cuts_nothing(command: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    text = _help(command, monkeypatch)
    assert "…" not in text
    assert not [line for line in text.splitlines() if len(line) > WIDTH]
    section = ""
    for line in text.splitlines():
        section = line if re.fullmatch(r"[A-Z][a-z]+:", line) else section
        if section == "Commands:":
            assert not line.endswith("..."), line  # a summary cut short


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "chamberlain")
def test_docstring_paragraphs_are_rewrapped(command: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    """Each line of a paragraph is as full as it can be: the next line's first word would not have fitted."""
    for paragraph in _description(_help(command, monkeypatch)):
        for line, following in itertools.pairwise(paragraph):
            assert 2 + len(line) + 1 + len(following.split()[0]) > WIDTH - 2, (line, following)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "chamberlain")
def test_placeholders_name_the_value(command: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    text = _help(command, monkeypatch)
    options = [line.strip().split("  ")[0] for line in text.splitlines() if line.startswith("  -")]
    vague = [o for o in options if re.search(r"<(bool|str|path|list\[str\]|list\[Path\])>", o)]
    assert vague == [o for o in NOT_YET.get(command, []) if o in options], vague
    usage = text.splitlines()[0]
    assert not re.search(r"[{\[][a-z_]+[}\]]", usage), usage  # an argument named in lower case: {file}, {cluster}


def test_the_lab_and_the_demo_say_what_they_do(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "build, up, down, status, env, tools." in " ".join(_help(("lab",), monkeypatch).split())
    demo = " ".join(_help(("demo",), monkeypatch).split())
    assert "stand-in" not in demo and "applied by Flux" in demo


def test_a_summary_is_the_first_paragraph_on_one_line() -> None:
    assert summary("Do a thing\nin two lines.\n\nMore.") == "Do a thing in two lines."
