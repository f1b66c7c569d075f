"""Decoding for the credential scan (chamberlain.scan.decode): which bytes become text in which encoding, which stay
bytes and why, what a damaged file says (CH127), and the overlapping windows that cover files of any size."""

from __future__ import annotations

import codecs
import random
import time
from pathlib import Path

import pytest

from chamberlain.intent.loader import MAX_SCAN_BYTES, RepoFile
from chamberlain.scan.decode import Decoded, decode, decode_for_scan, windows

TEXT = "apiVersion: v1\nkind: ConfigMap\n# café, naïve, Ærø\ndata: {a: b}\n"


@pytest.mark.parametrize(("raw", "encoding"), [
    (TEXT.encode("utf-8"), "utf-8"),
    (codecs.BOM_UTF8 + TEXT.encode("utf-8"), "utf-8-sig"),
    (codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"), "utf-16-le"),
    (codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"), "utf-16-be"),
    (TEXT.encode("latin-1"), "latin-1"),
])
def test_text_is_decoded_in_its_encoding_without_the_byte_order_mark(raw: bytes, encoding: str) -> None:
    assert decode(raw) == Decoded(TEXT, encoding)  # type: ignore[arg-type]


def test_empty_and_plain_ascii_are_utf8() -> None:
    assert decode(b"") == Decoded("", "utf-8")
    assert decode(b"token: abc\n").encoding == "utf-8"


def test_utf8_is_preferred_over_latin1() -> None:
    assert decode("é".encode()).text == "é"  # as Latin-1 it would read "Ã©"


def test_utf16_keeps_surrogate_pairs() -> None:
    text = "emoji 🔑 key\n"
    assert decode(codecs.BOM_UTF16_LE + text.encode("utf-16-le")).text == text


@pytest.mark.parametrize(("raw", "why"), [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "NUL bytes"),
    ("plain words\n".encode("utf-16-le"), "NUL bytes"),  # UTF-16 without a mark is not guessed
    (b"\x01\x02\x03\x04\x05\x06 ab", "mostly control characters"),
    (bytes(b for b in random.Random(1).randbytes(4096) if b), "control bytes"),  # not UTF-8, no NUL, not text
    (codecs.BOM_UTF16_LE + b"\x01\x00" * 100, "mostly control characters"),
    (codecs.BOM_UTF16_LE + b"\x00\xdc" * 100, "mostly invalid data"),  # a mark, then lone surrogates
])
def test_binary_stays_bytes_with_a_reason(raw: bytes, why: str) -> None:
    decoded = decode(raw)
    assert decoded.binary and decoded.text is None and decoded.encoding is None
    assert decoded.note.startswith("binary: ") and why in decoded.note
    assert not decoded.lossy and decoded.raw == raw  # kept for the byte scan


def test_latin1_text_with_a_few_controls_is_still_text() -> None:
    raw = ("Grüße aus Köln\n" * 20 + "\x07").encode("latin-1") + b"\x1b[0m\t\x0c"
    assert decode(raw).encoding == "latin-1"


def test_odd_length_utf16_is_decoded_with_replacement_and_says_so() -> None:
    raw = codecs.BOM_UTF16_LE + "password: hunter2-Xk9#\n".encode("utf-16-le") + b"\x41"
    decoded = decode(raw)
    assert decoded.lossy and decoded.encoding == "utf-16-le"
    assert decoded.text is not None and decoded.text.startswith("password: hunter2-Xk9#\n")
    assert "invalid UTF-16" in decoded.note and "odd number of bytes" in decoded.note
    assert "replacement" in decoded.note


def test_unpaired_surrogate_names_its_byte_and_the_rest_is_still_decoded() -> None:
    raw = codecs.BOM_UTF16_BE + "a\n".encode("utf-16-be") + b"\xdc\x00" + "after\n".encode("utf-16-be")
    decoded = decode(raw)
    assert decoded.text == "a\n\ufffdafter\n"
    assert "unpaired surrogate at byte 6" in decoded.note


def test_invalid_utf8_after_its_byte_order_mark_is_replaced_not_reinterpreted() -> None:
    decoded = decode(codecs.BOM_UTF8 + b"ok\n\xff\xfeend\n")
    assert decoded.encoding == "utf-8-sig" and decoded.lossy
    assert decoded.text is not None and decoded.text.endswith("end\n") and "invalid UTF-8" in decoded.note


def test_notes_never_quote_the_content() -> None:
    secret = "AKIAZZZZZZZZZZZZZZZZ"
    for raw in (codecs.BOM_UTF16_LE + secret.encode("utf-16-le") + b"\x00\xdc",
                codecs.BOM_UTF8 + secret.encode() + b"\xff", secret.encode() + b"\x00"):
        assert secret not in decode(raw).note


@pytest.mark.parametrize("make", [
    lambda n: b"\xc3" * n,  # every byte starts a UTF-8 sequence that never completes: Latin-1
    lambda n: codecs.BOM_UTF16_LE + b"\x00\xd8" * (n // 2),  # nothing but lone high surrogates
    # valid at first (so judged text), then lone surrogates: the slow replace path, still linear
    lambda n: codecs.BOM_UTF16_LE + b"a\x00" * (1 << 16) + b"\x00\xd8" * (n // 2),
    lambda n: codecs.BOM_UTF8 + b"\xe2\x82" * (n // 2),  # truncated three-byte sequences after a mark
    lambda n: b"a" * n,  # one 10 MB line
    lambda n: random.Random(0).randbytes(n),
])
def test_decoding_10_mb_of_adversarial_input_is_linear(make: object) -> None:
    raw = make(10 << 20)  # type: ignore[operator]
    started = time.perf_counter()
    decode(raw)
    assert time.perf_counter() - started < 5  # ~0.05-0.5 s measured; generous for a loaded 2-core machine


def _rf(path: Path, text: str | None) -> RepoFile:
    return RepoFile(path, path.name, path.stat().st_size if path.exists() else 0, text, False)


def test_decode_for_scan_uses_the_loaders_text_or_reads_the_bytes(tmp_path: Path) -> None:
    utf16 = tmp_path / "w.txt"
    utf16.write_bytes(codecs.BOM_UTF16_LE + "k = v\n".encode("utf-16-le"))
    assert decode_for_scan(_rf(utf16, None)) == Decoded("k = v\n", "utf-16-le")
    utf8 = tmp_path / "u.txt"
    utf8.write_text("k = v\n")
    assert decode_for_scan(_rf(utf8, "k = v\n")) == Decoded("k = v\n", "utf-8")


def test_decode_for_scan_never_reads_an_oversize_file_and_never_raises(tmp_path: Path) -> None:
    big = RepoFile(tmp_path / "nope.bin", "nope.bin", MAX_SCAN_BYTES + 1, None, False)
    decoded = decode_for_scan(big)
    assert decoded.binary and "window by window" in decoded.note
    gone = RepoFile(tmp_path / "gone.txt", "gone.txt", 10, None, False)
    assert "cannot be read" in decode_for_scan(gone).note


# ------------------------------------------------------------------------------------------------ windows


def _owned(path: Path, size: int, overlap: int) -> list[str]:
    return [w.text[w.own_start:w.own_end] for w in windows(path, size=size, overlap=overlap) if w.text is not None]


@pytest.mark.parametrize(("encoding", "bom"), [
    ("utf-8", b""), ("utf-8", codecs.BOM_UTF8), ("utf-16-le", codecs.BOM_UTF16_LE),
    ("utf-16-be", codecs.BOM_UTF16_BE), ("latin-1", b""),
])
def test_windows_own_every_character_exactly_once(tmp_path: Path, encoding: str, bom: bytes) -> None:
    text = "".join(f"line {i}: Grüße ü\n" for i in range(3000))
    if encoding != "latin-1":
        text += "🔑" * 50 + "\n"  # four UTF-8 bytes, a UTF-16 surrogate pair: cut somewhere by an odd window size
    path = tmp_path / "f.txt"
    path.write_bytes(bom + text.encode(encoding))
    assert "".join(_owned(path, 1001, 97)) == text


def test_windows_know_their_first_line(tmp_path: Path) -> None:
    lines = [f"line {i} {'x' * (i % 37)}" for i in range(5000)]
    path = tmp_path / "f.txt"
    path.write_text("\n".join(lines) + "\n")
    for w in windows(path, size=4096, overlap=300):
        assert w.text is not None
        before = w.text[:w.own_start]
        line_of_own_start = w.start_line + before.count("\n")
        owned_line_text = w.text[w.own_start - len(before.rsplit("\n", 1)[-1]):].split("\n", 1)[0]
        assert lines[line_of_own_start - 1] == owned_line_text


def test_a_token_across_a_window_boundary_is_found_once_and_whole(tmp_path: Path) -> None:
    token = "ghp_" + "A1b2C3d4" * 4 + "zz9Y"
    body = ("filler line\n" * 700) + f"token = {token}\n" + ("more filler\n" * 700)
    path = tmp_path / "f.txt"
    path.write_text(body)
    cut = body.index(token) + 10
    size = cut - cut % 2  # a window boundary inside the token
    found = []
    for w in windows(path, size=size, overlap=200):
        assert w.text is not None
        at = w.text.find(token)
        while at >= 0:
            if w.owns(at):
                found.append((w.line_of(at), w.text[at:at + len(token)]))
            line = w.text.count("\n", 0, at) + 1
            assert w.owns_at(line, at - (w.text.rfind("\n", 0, at) + 1) + 1) == w.owns(at)
            at = w.text.find(token, at + 1)
    assert found == [(701, token)]


def test_binary_windows_cover_the_bytes_once(tmp_path: Path) -> None:
    raw = random.Random(0).randbytes(50_000)
    path = tmp_path / "b.bin"
    path.write_bytes(raw)
    ws = list(windows(path, size=8192, overlap=512))
    assert all(w.text is None and w.start_line == 0 and w.note.startswith("binary") for w in ws)
    assert b"".join(w.raw[w.own_start:w.own_end] for w in ws) == raw
    assert [w.start_byte for w in ws] == list(range(0, 50_000, 8192))


def test_invalid_data_after_the_first_window_is_replaced_and_noted(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"good line\n" * 1000 + b"\xff\xfe bad\n" + b"tail\n" * 10)
    ws = list(windows(path, size=4000, overlap=100))
    assert not ws[0].note and ws[-1].note.startswith("invalid UTF-8")
    assert "at byte 10000" in ws[-1].note
    assert "".join(w.text[w.own_start:w.own_end] for w in ws if w.text).endswith("\ufffd\ufffd bad\n" + "tail\n" * 10)


def test_odd_utf16_in_windows_is_flushed_and_noted(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(codecs.BOM_UTF16_LE + "ab\n".encode("utf-16-le") * 1000 + b"x")
    ws = list(windows(path, size=2002, overlap=100))
    assert "".join(w.text[w.own_start:w.own_end] for w in ws if w.text) == "ab\n" * 1000 + "\ufffd"
    assert "invalid UTF-16" in ws[-1].note


def test_window_sizes_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("x")
    with pytest.raises(ValueError, match="twice its overlap"):
        list(windows(path, size=100, overlap=50))
    assert [w.text for w in windows(path, size=100, overlap=10)] == ["x"]
    empty = tmp_path / "e.txt"
    empty.write_bytes(b"")
    assert list(windows(empty)) == []


def test_columns_of_matches_on_a_line_that_began_in_an_earlier_window(tmp_path: Path) -> None:
    token = "glpat-" + "Q" * 20
    prefix = "x" * 2500 + " "
    path = tmp_path / "one-line.txt"
    path.write_text("first\n" + prefix + "key=" + token + " tail " * 500 + "\n")
    expected_column = len(prefix) + len("key=") + 1
    found = []
    for w in windows(path, size=1000, overlap=100):
        assert w.text is not None
        at = w.text.find(token)
        if at >= 0 and w.owns(at):
            line = w.text.count("\n", 0, at) + 1
            column = at - (w.text.rfind("\n", 0, at) + 1) + 1
            assert w.owns_at(line, column)
            found.append((w.start_line + line - 1, w.file_column(line, column)))
    assert found == [(2, expected_column)]
