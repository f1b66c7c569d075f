"""Text from a repository is shown, never obeyed, by whatever chamberlain prints for people."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rich.table import Table
from rich.text import Text

from chamberlain.terminal import Console, visible
from tests.conftest import EXAMPLES, REPO_ROOT

HOSTILE = "a\x1b[2Kb\x1b]0;title\x07c\rd\x9be\u202eevil\u2066f\x00g\x7fh"


def test_visible_spells_every_control_character_but_tab_and_line_feed() -> None:
    assert visible(HOSTILE) == ("a\\x1b[2Kb\\x1b]0;title\\x07c\\x0dd\\x9be\\u202eevil\\u2066f\\x00g\\x7fh")
    assert visible("plain\ttext\nnext line, é, 日本") == "plain\ttext\nnext line, é, 日本"


@pytest.mark.parametrize("color", [None, "truecolor"], ids=["pipe", "terminal"])
def test_the_console_shows_them_in_every_renderable_and_keeps_its_own_colours(color: str | None) -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, color_system=color, force_terminal=color is not None)
    table = Table()
    table.add_column("NAME")
    table.add_row(HOSTILE)
    console.print(HOSTILE, markup=False)
    console.print(Text(HOSTILE, style="red"))
    console.print(table)
    out = buffer.getvalue()
    for raw in ("\x1b[2K", "\x1b]0;", "\x07", "\x9b", "\u202e", "\u2066", "\x00", "\x7f"):
        assert raw not in out
    assert out.count("\\x1b") == 6, "both escapes of each of the three prints, shown"
    if color is not None:
        assert "\x1b[31m" in out, "Rich's own colour codes still go out"


def test_a_purpose_with_escape_sequences_prints_inert_in_every_inventory_format(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "acme", repo)
    intent = next(p for p in sorted((repo / "intents").glob("*.yaml")) if "\n  purpose: " in p.read_text())
    lines = intent.read_text().split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("  purpose: "))
    lines[at] = '  purpose: "\\e[2K\\e]0;pwned\\a rest"'
    intent.write_text("\n".join(lines))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    code = "import sys; sys.argv[0] = 'chamberlain'; from chamberlain.cli.main import main; main()"
    seen = False
    for fmt in ("text", "wide", "markdown"):
        got = subprocess.run([sys.executable, "-c", code, "inventory", str(repo), "-o", fmt], env=env,
                             capture_output=True, text=True, check=False, timeout=120)
        assert "\x1b" not in got.stdout + got.stderr and "\x07" not in got.stdout + got.stderr
        seen = seen or "\\x1b]0;pwned" in got.stdout
    assert seen, "the purpose is shown, escaped"


def test_a_table_measures_the_spelled_text_and_loses_none_of_it() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=60, color_system=None)
    table = Table()
    table.add_column("PURPOSE", overflow="fold")
    table.add_row("\x1b" * 12 + " keep THIS-TAIL-VISIBLE please")
    console.print(table)
    out = buffer.getvalue()
    assert "THIS-TAIL-VISIBLE" in out and out.count("\\x1b") == 12 and "\x1b" not in out


def test_json_output_escapes_what_a_terminal_would_obey_and_parses_to_the_same_data() -> None:
    from chamberlain.terminal import json_spelled

    data = {"purpose": "a\u202eb\x9bc\x7fd\u061ce\u2066f é 日本", "k\u202e": 1}
    text = json_spelled(json.dumps(data, ensure_ascii=False))
    assert json.loads(text) == data
    assert not any(ch in text for ch in "\u202e\x9b\x7f\u061c\u2066") and "é 日本" in text
