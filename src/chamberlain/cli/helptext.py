"""How ``--help`` reads: click's plain help formatter, every command's whole summary, every value's placeholder.

The app sets ``rich_markup_mode=None``, so typer hands help to click's formatter instead of its rich panels. Why:
in typer's "rich" markup mode the line breaks written into a docstring (after its first paragraph, and in the
commands list) show up as ragged lines, and at 80 columns its tables cut option names and long words (a path, a
URL) with "…"; "markdown" mode reflows but drops ``<id>``-like words as HTML. Click rewraps every paragraph to the
terminal, never cuts a word, and shows a flag without a ``<bool>`` placeholder. The one thing it would shorten is
a command's summary in a commands list ("..."): :class:`HelpGroup` gives each command its first paragraph as
``short_help``, which is wrapped instead. Options that take a value declare their placeholder (``metavar``: FILE,
PATH, NAME, URL...); tests/unit/test_cli_help.py checks every command's help at 80 columns.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperGroup


def summary(text: str) -> str:
    """The first paragraph of a help text, on one line."""
    return " ".join(text.strip().split("\n\n")[0].split())


def _whole_summaries(group: Any) -> None:
    for command in getattr(group, "commands", {}).values():
        if not command.short_help and command.help:
            command.short_help = summary(command.help)
        _whole_summaries(command)


class HelpGroup(TyperGroup):
    """The root command group: gives every command below it its whole summary for the commands lists."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _whole_summaries(self)


__all__ = ["HelpGroup", "summary"]
