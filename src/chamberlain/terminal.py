"""What chamberlain prints for people: text from a repository shows its control characters, never obeys them.

Names, paths, purposes and messages come from files a team wrote. Printed raw, an escape sequence in one of them
could recolour, hide or rewrite lines of a terminal or a CI log (a finding erased with ``ESC[2K``, a title set,
Trojan-Source reordering). Rich already drops a few control codes but passes ``ESC`` through, so every console
chamberlain prints with is :class:`Console`, which spells such characters as escapes (``\\x1b``) in the text it
renders, before Rich adds its own colours. JSON output escapes them too (:func:`json_spelled`); YAML quotes
control characters but keeps bidirectional ones raw, as does the HTML page's text (left as they are).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from rich.console import Console as RichConsole
from rich.console import ConsoleOptions, RenderableType
from rich.segment import Segment
from rich.text import Text

# DEL, C1 controls, and the bidirectional marks, overrides and isolates: what json.dumps(ensure_ascii=False)
# leaves raw. With the C0 controls but tab and line feed (JSON escapes those itself), what a terminal obeys.
_NOT_C0 = "\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_RAW_IN_JSON = re.compile(f"[{_NOT_C0}]")
_HIDDEN = re.compile(f"[\x00-\x08\x0b-\x1f{_NOT_C0}]")


def _spelled(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def json_spelled(text: str) -> str:
    """JSON text (``json.dumps(..., ensure_ascii=False)``) with DEL, C1 controls and bidirectional controls
    written as ``\\uXXXX`` escapes: the same data to any parser, nothing a terminal or an editor obeys. These
    characters can only stand inside JSON strings, where the escape means the same character."""
    return _RAW_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text) if _RAW_IN_JSON.search(text) else text


def visible(text: str) -> str:
    """``text`` with every control character (tab and line feed aside) and bidirectional override spelled as an
    escape: what a terminal would obey, shown instead."""
    return _HIDDEN.sub(_spelled, text) if _HIDDEN.search(text) else text


class Console(RichConsole):
    """A Rich console whose rendered text shows control characters instead of sending them (:func:`visible`):
    strings are spelled before Rich measures them (so a table keeps their whole width), and whatever reaches the
    output anyway (a :class:`~rich.text.Text` built elsewhere) as it is rendered."""

    def render_str(self, text: str, **options: Any) -> Text:
        return super().render_str(visible(text), **options)

    def render(self, renderable: RenderableType, options: ConsoleOptions | None = None) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control is None and _HIDDEN.search(segment.text):
                yield Segment(visible(segment.text), segment.style)
            else:
                yield segment


__all__ = ["Console", "json_spelled", "visible"]
