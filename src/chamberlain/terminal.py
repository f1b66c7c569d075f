"""What chamberlain prints for people: text from a repository shows its control characters, never obeys them.

Names, paths, purposes and messages come from files a team wrote. Printed raw, an escape sequence in one of them
could recolour, hide or rewrite lines of a terminal or a CI log (a finding erased with ``ESC[2K``, a title set,
Trojan-Source reordering). Rich already drops a few control codes but passes ``ESC`` through, so every console
chamberlain prints with is :class:`Console`, which spells such characters as escapes (``\\x1b``) in the text it
renders, before Rich adds its own colours. Data formats need nothing of this: JSON escapes control characters, YAML
quotes them, HTML escapes markup.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rich.console import Console as RichConsole
from rich.console import ConsoleOptions, RenderableType
from rich.segment import Segment

# C0 controls but tab and line feed, DEL, C1 controls, and the bidirectional overrides and isolates.
_HIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _spelled(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with every control character (tab and line feed aside) and bidirectional override spelled as an
    escape: what a terminal would obey, shown instead."""
    return _HIDDEN.sub(_spelled, text) if _HIDDEN.search(text) else text


class Console(RichConsole):
    """A Rich console whose rendered text shows control characters instead of sending them (:func:`visible`)."""

    def render(self, renderable: RenderableType, options: ConsoleOptions | None = None) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control is None and _HIDDEN.search(segment.text):
                yield Segment(visible(segment.text), segment.style)
            else:
                yield segment


__all__ = ["Console", "visible"]
