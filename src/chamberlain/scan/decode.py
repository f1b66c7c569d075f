"""Bytes to text for the credential scan: UTF-8, UTF-16 with a byte-order mark, Latin-1, or a reason to scan bytes.

Why: a credential in a UTF-16 file (what Windows tools write) or in a Latin-1 file is as leaked as one in UTF-8,
and only decoded text lets the scanner see assignments and report the right line. What is not text (NUL bytes
outside UTF-16, mostly control characters) stays bytes; the engine scans those for known shapes only.

Rules, in order:

1. A byte-order mark decides: ``utf-8-sig`` (EF BB BF), ``utf-16-le`` (FF FE), ``utf-16-be`` (FE FF). Invalid data
   after it (an odd length, an unpaired surrogate) is decoded with U+FFFD replacement characters, so the rest is
   still scanned, and :attr:`Decoded.note` says what was replaced: the check reports it as CH127.
2. Without a mark, a NUL byte means binary (text never holds one; UTF-16 without a mark is not guessed).
3. Valid UTF-8 is text, unless mostly control characters (then binary).
4. Anything else is Latin-1 when it looks like text (few C0 control characters), else binary.

Offsets and lines are those of the decoded text. Every step is a C-speed pass over the bytes (``in``, ``decode``,
``translate``), so decoding is linear in the size; no regular expression runs here.

Files over the loader's limit (:data:`chamberlain.intent.loader.MAX_SCAN_BYTES`) are never read whole:
:func:`windows` yields overlapping decoded windows, each knowing its first line and which part of it it owns, so
a scanner can cover a file of any size in bounded memory without reporting a hit twice.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import BinaryIO, Literal, TypeVar

from chamberlain.intent.loader import MAX_SCAN_BYTES, RepoFile

Encoding = Literal["utf-8", "utf-8-sig", "utf-16-le", "utf-16-be", "latin-1"]

#: Valid UTF-8 with more control characters than this (fraction of bytes) is binary: "mostly" control characters.
MAX_CONTROL_IN_UTF8 = 0.30
#: Non-UTF-8 data is Latin-1 text only with at most this fraction of C0 control bytes (random bytes have ~11%).
MAX_CONTROL_IN_LATIN1 = 0.02
#: A byte-order mark followed by more replaced units than this (in the first SAMPLE_BYTES) marks binary data.
MAX_REPLACED = 0.05
MIN_REPLACED = 16  # a short damaged file stays text: a few bad units are damage, not a binary format
SAMPLE_BYTES = 1 << 16
#: UTF-16 text is judged on its first characters only (a str has no C-speed byte ``translate``).
UTF16_SAMPLE_CHARS = 1 << 20
#: Windows for files too large to read whole: 8 MiB, overlapping by 4 KiB (longer than any credential format,
#: and than the key before an assigned value), so a token cut by one window is whole in the next.
WINDOW_BYTES = 8 << 20
OVERLAP_BYTES = 4 << 10

_BOMS: tuple[tuple[bytes, Encoding], ...] = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# C0 control characters that never appear in text; tab, line feed, vertical tab, form feed, carriage return and
# escape (ANSI colours in logs) do.
_CONTROL = bytes(b for b in range(0x20) if b not in b"\t\n\x0b\x0c\r\x1b")
_NOT_CONTROL = bytes(b for b in range(256) if b not in _CONTROL)
_CONTROL_CHARS = _CONTROL.decode("ascii")


@dataclass(frozen=True)
class Decoded:
    """What the scanner reads: ``text`` in ``encoding``, or (``text`` None) a ``note`` on why the bytes (``raw``) are
    scanned as bytes. With text, a non-empty ``note`` says what decoding replaced (the text is still scanned): CH127."""

    text: str | None
    encoding: Encoding | None
    note: str = ""
    raw: bytes = field(default=b"", repr=False, compare=False)  # binary only: the bytes to scan for known shapes

    @property
    def binary(self) -> bool:
        return self.text is None

    @property
    def lossy(self) -> bool:
        """Decoded with replacement characters: part of the file could not be scanned as written."""
        return self.text is not None and bool(self.note)


def _bom(raw: bytes) -> tuple[Encoding, int] | None:
    for mark, encoding in _BOMS:
        if raw.startswith(mark):
            return encoding, len(mark)
    return None


def _control_fraction(raw: bytes) -> float:
    return len(raw.translate(None, _NOT_CONTROL)) / len(raw) if raw else 0.0


def _control_fraction_text(text: str) -> float:
    sample = text[:UTF16_SAMPLE_CHARS]
    return sum(sample.count(c) for c in _CONTROL_CHARS) / len(sample) if sample else 0.0


def _invalid(codec: str, cause: str) -> str:
    """What was invalid, for the CH127 message (an offset and the decoder's reason, never the bytes)."""
    what = "UTF-16" if codec.startswith("utf-16") else "UTF-8"
    return f"invalid {what} ({cause}); decoded with replacement characters"


def _cause(codec: str, exc: UnicodeDecodeError, at: int, odd: bool = False) -> str:
    """The decoder's reason in words, with the file offset ``at`` of the first invalid byte."""
    if codec.startswith("utf-16"):
        if odd:
            return "an odd number of bytes"
        if exc.reason in ("illegal encoding", "illegal UTF-16 surrogate"):  # CPython's words for these two
            return f"an unpaired surrogate at byte {at}"
        if exc.reason == "truncated data":
            return f"a character cut off by the end of the file at byte {at}"
    return f"{exc.reason} at byte {at}"


def decode(raw: bytes) -> Decoded:
    """Decode a whole file's bytes for scanning (see the module docstring for the rules); a binary result keeps
    ``raw`` for the byte scan."""
    decoded = _decode(raw)
    if decoded.text is None:
        return Decoded(None, None, decoded.note, raw)
    return decoded


def _decode(raw: bytes) -> Decoded:
    bom = _bom(raw)
    if bom is not None:
        encoding, skip = bom
        data = raw[skip:]
        codec = "utf-8" if encoding == "utf-8-sig" else encoding
        try:
            text = data.decode(codec)
            note = ""
        except UnicodeDecodeError as exc:
            # CPython calls the replace handler once per invalid unit (~8 MB/s on nothing but lone surrogates):
            # judge the density on a sample first, and a mark followed by mostly garbage is not text at all.
            sample = data[:SAMPLE_BYTES].decode(codec, errors="replace")
            replaced = sample.count("\ufffd")
            if replaced > MIN_REPLACED and replaced > MAX_REPLACED * len(sample):
                return Decoded(None, None, f"binary: a {encoding} byte-order mark, but mostly invalid data")
            text = data.decode(codec, errors="replace")
            note = _invalid(codec, _cause(codec, exc, skip + exc.start, odd=len(data) % 2 == 1))
        if _control_fraction_text(text) > MAX_CONTROL_IN_UTF8:
            return Decoded(None, None, f"binary: a {encoding} byte-order mark, but mostly control characters")
        return Decoded(text, encoding, note)
    if b"\x00" in raw:
        return Decoded(None, None, "binary: NUL bytes and no UTF-16 byte-order mark")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        control = _control_fraction(raw)
        if control > MAX_CONTROL_IN_LATIN1:
            return Decoded(None, None, f"binary: not UTF-8, and {control:.0%} control bytes")
        return Decoded(raw.decode("latin-1"), "latin-1")
    if _control_fraction(raw) > MAX_CONTROL_IN_UTF8:
        return Decoded(None, None, "binary: mostly control characters")
    return Decoded(text, "utf-8")


def decode_for_scan(rf: RepoFile) -> Decoded:
    """What the credential scan reads of a loaded file. The loader keeps ``text`` for UTF-8 only (YAML must be
    UTF-8); for any other file this reads its bytes again and decodes them. Files over
    :data:`~chamberlain.intent.loader.MAX_SCAN_BYTES` are not read here: scan them with :func:`windows`."""
    if rf.text is not None:
        return Decoded(rf.text, "utf-8")
    if rf.size > MAX_SCAN_BYTES:
        return Decoded(None, None, f"{rf.size} bytes, over the {MAX_SCAN_BYTES}-byte limit for reading whole; "
                                   "scan it window by window")
    try:
        raw = rf.path.read_bytes()
    except OSError as exc:
        return Decoded(None, None, f"cannot be read ({exc.strerror or 'I/O error'})")
    return decode(raw)


# ------------------------------------------------------------------------------------------------ windows


@dataclass(frozen=True)
class Window:
    """One stretch of a large file: ``text`` (None for binary files: then ``raw`` holds the bytes), whose first
    character is on line ``start_line`` (1-based; 0 for bytes). It repeats the previous window's last ``overlap``
    and reaches ``overlap`` into the next; only matches that *start* in ``[own_start, own_end)`` belong to this
    window (:meth:`owns`), so every match shorter than the overlap is reported exactly once, and whole.
    ``start_byte``: the file offset where the owned part's bytes begin."""

    text: str | None
    raw: bytes
    encoding: Encoding | None
    start_line: int
    start_byte: int
    own_start: int
    own_end: int
    note: str = ""  # set once invalid data was replaced (CH127), on this window and every later one
    own_column: int = 0  # 0-based column in the file of ``text[own_start]`` (windows do not start at a line break)

    def owns(self, index: int) -> bool:
        """Does a match starting at ``index`` of ``text`` (or ``raw``) belong to this window?"""
        return self.own_start <= index < self.own_end

    def owns_at(self, line: int, column: int) -> bool:
        """:meth:`owns` for a match a text scanner reports at 1-based ``line`` and ``column`` of ``text``."""
        return self._own_bounds[0] <= (line, column) < self._own_bounds[1]

    @cached_property
    def _own_bounds(self) -> tuple[tuple[int, int], tuple[int, int]]:
        def at(index: int) -> tuple[int, int]:
            text = self.text or ""
            return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1

        return at(self.own_start), at(self.own_end)

    def file_column(self, line: int, column: int) -> int:
        """The file's 1-based column of an owned match at ``line``/``column`` of ``text``: only the line the owned
        part starts on begins before the window, so only there does the column shift."""
        own_line, own_col = self._own_bounds[0]
        return self.own_column + column - own_col + 1 if line == own_line else column

    def line_of(self, index: int) -> int:
        """The file's 1-based line of ``text[index]`` (0 for binary windows)."""
        return self.start_line + self.text.count("\n", 0, index) if self.text is not None else 0


def _detect(head: bytes, complete: bool) -> tuple[Encoding | None, int, str]:
    """(encoding or None for binary, bytes to skip, binary reason) judged on a file's first window."""
    bom = _bom(head)
    if bom is not None:
        return bom[0], bom[1], ""
    if b"\x00" in head:
        return None, 0, "binary: NUL bytes and no UTF-16 byte-order mark"
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(head, complete)  # a multi-byte character cut at the window's end is not an error
    except UnicodeDecodeError:
        control = _control_fraction(head)
        if control > MAX_CONTROL_IN_LATIN1:
            return None, 0, f"binary: not UTF-8, and {control:.0%} control bytes"
        return "latin-1", 0, ""
    if _control_fraction(head) > MAX_CONTROL_IN_UTF8:
        return None, 0, "binary: mostly control characters"
    return "utf-8", 0, ""


def windows(path: Path, *, size: int = WINDOW_BYTES, overlap: int = OVERLAP_BYTES) -> Iterator[Window]:
    """Overlapping windows of the file at ``path``, decoded with the encoding its first window shows (invalid data
    later on is replaced and noted). Memory stays about three windows whatever the file's size. ``overlap`` is in
    characters for text and bytes for binary files. Raises OSError when the file cannot be read."""
    if overlap <= 0 or size <= 2 * overlap:
        raise ValueError("a window must be more than twice its overlap")
    with path.open("rb") as fh:
        head = fh.read(size)
        encoding, skip, reason = _detect(head, len(head) < size)
        chunks = _raw_chunks(fh, head, size)
        if encoding is None:
            for body, offset, own_start, own_end in _overlapping(((c, o) for c, o in chunks), overlap):
                yield Window(None, body, None, 0, offset, own_start, own_end, reason)
            return
        notes: list[str] = []
        lines, column = 1, 0  # where the next owned part starts in the file
        for text, offset, own_start, own_end in _overlapping(_decoded(chunks, skip, encoding, notes), overlap):
            first_line = lines - text.count("\n", 0, own_start)
            yield Window(text, b"", encoding, first_line, offset, own_start, own_end, notes[0] if notes else "",
                         column)
            lines = first_line + text.count("\n", 0, own_end)
            last_break = text.rfind("\n", own_start, own_end)
            column = own_end - last_break - 1 if last_break >= 0 else column + own_end - own_start


def _raw_chunks(fh: BinaryIO, head: bytes, size: int) -> Iterator[tuple[bytes, int]]:
    """(bytes, offset) of consecutive reads of ``size`` bytes; the first is ``head``, already read."""
    chunk, offset = head, 0
    while chunk:
        yield chunk, offset
        offset += len(chunk)
        chunk = fh.read(size)


def _decoded(chunks: Iterator[tuple[bytes, int]], skip: int, encoding: Encoding, notes: list[str]
             ) -> Iterator[tuple[str, int]]:
    """(text, byte offset) per chunk through one incremental decoder (a character cut between two reads is whole
    in the next), then the decoder's final flush. From the first invalid byte on: replacement characters, and the
    cause appended to ``notes``."""
    codec = "utf-8" if encoding == "utf-8-sig" else encoding
    decoder = codecs.getincrementaldecoder(codec)("strict")
    end = 0

    def step(data: bytes, final: bool, base: int) -> str:
        state = decoder.getstate()
        try:
            return str(decoder.decode(data, final))
        except UnicodeDecodeError as exc:
            decoder.setstate(state)
            decoder.errors = "replace"  # from here on the file keeps being scanned, and CH127 says so
            if not notes:
                notes.append(_invalid(codec, _cause(codec, exc, base - len(state[0]) + exc.start)))
            return str(decoder.decode(data, final))

    for chunk, offset in chunks:
        start = skip if offset == 0 else 0
        yield step(chunk[start:], False, offset + start), offset + start
        end = offset + len(chunk)
    flushed = step(b"", True, end)
    if flushed:
        yield flushed, end


AnyText = TypeVar("AnyText", str, bytes)


def _overlapping(chunks: Iterator[tuple[AnyText, int]], overlap: int) -> Iterator[tuple[AnyText, int, int, int]]:
    """(body, offset of the owned part, own start, own end) per chunk: each chunk is owned by one window, with the
    previous chunk's last ``overlap`` units before it (context) and the next chunk's first ``overlap`` after it
    (so a match that starts in the owned part is whole). A short last chunk (a decoder's flush) is merged."""
    lead: AnyText | None = None
    pending = next(chunks, None)
    while pending is not None:
        current, offset = pending
        following = next(chunks, None)
        if following is not None and len(following[0]) < overlap:
            current = current + following[0]
            following = next(chunks, None)
        before = lead if lead is not None else current[:0]
        tail = following[0][:overlap] if following is not None else current[:0]
        yield before + current + tail, offset, len(before), len(before) + len(current)
        lead = current[-overlap:]
        pending = following
