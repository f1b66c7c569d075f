"""Bad input through the whole check pipeline (``chamberlain.service.repository.validate``, what ``chamberlain
validate`` runs): a 100 MB file, one 10 MB line, binary garbage, invalid UTF-16, and credentials in UTF-16 and
Latin-1 files. Each finishes in time proportional to its size, with a finding or a clear reason, and never raises.

Time bounds are generous (this runs on a loaded 2-core machine); the measured times are in the comments.

Non-UTF-8 files are scanned as :func:`chamberlain.scan.decode.decode_for_scan` decodes them; files over
``MAX_SCAN_BYTES`` window by window (:func:`chamberlain.scan.decode.windows`), so a 100 MB file is scanned, not
skipped.
"""

from __future__ import annotations

import codecs
import random
import string
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chamberlain.checks.gate import Validation
from chamberlain.findings import Finding
from chamberlain.intent.loader import MAX_SCAN_BYTES
from chamberlain.scan.decode import decode, windows
from chamberlain.service.repository import validate

RNG = random.Random(15)
# An AWS access key id: a shape every version of the engine knows. Built here, never a real key.
AWS_KEY = "AKIA" + "".join(RNG.choice(string.ascii_uppercase + "234567") for _ in range(16))
LINE = b"an ordinary line of a large generated log file, nothing secret 0123456789\n"


def _budget(size_bytes: int) -> float:
    """Seconds allowed: a floor for start-up plus 0.3 s per MB (measured: ~0.07 s per MB for one 10 MB line)."""
    return 3.0 + 0.3 * size_bytes / 1e6


def _validate(root: Path, size: int) -> tuple[Validation, float]:
    # CPU seconds, not wall time: CI runs these beside the lab tests on two cores, and linearity is the claim.
    started = time.process_time()
    result = validate(root)
    elapsed = time.process_time() - started
    assert elapsed < _budget(size), f"{elapsed:.1f} s for {size / 1e6:.0f} MB"
    return result, elapsed


def _repo_with(tmp_path: Path, name: str, data: bytes) -> Path:
    root = tmp_path / "repo"
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(data)
    return root


def _of(result: Validation, rule: str, file: str) -> list[Finding]:
    return [f for f in result.findings if f.rule == rule and f.file == file]


def _no_value(result: Validation) -> None:
    assert all(AWS_KEY not in f.message for f in result.findings)


# ------------------------------------------------------------------------------------------------ 100 MB


@pytest.fixture(scope="module")
def hundred_mb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """A 100 MB text file (over MAX_SCAN_BYTES) with one credential on its last line; (repo root, that line)."""
    root = tmp_path_factory.mktemp("big") / "repo"
    root.mkdir()
    count = (100 << 20) // len(LINE)
    (root / "logs").mkdir()
    with (root / "logs" / "app.log").open("wb") as fh:
        block = LINE * 10_000
        for _ in range(count // 10_000):
            fh.write(block)
        fh.write(LINE * (count % 10_000))
        fh.write(f"aws_access_key_id = {AWS_KEY}\n".encode())
    assert (root / "logs" / "app.log").stat().st_size > MAX_SCAN_BYTES
    yield root, count + 1


def test_windows_cover_a_100_mb_file_in_linear_time_and_see_the_credential_once(
        hundred_mb: tuple[Path, int]) -> None:
    """The decode half of the large-file scan: windows find the last line's token exactly once, on its line."""
    root, line = hundred_mb
    started = time.perf_counter()
    found = []
    for w in windows(root / "logs" / "app.log"):
        assert w.text is not None and w.encoding == "utf-8"
        at = w.text.find(AWS_KEY)
        if at >= 0 and w.owns(at):
            found.append(w.start_line + w.text.count("\n", 0, at))
    elapsed = time.perf_counter() - started
    assert found == [line]
    assert elapsed < 30, f"{elapsed:.1f} s"  # measured: ~0.6 s


def test_a_100_mb_file_is_scanned_window_by_window_in_linear_time(hundred_mb: tuple[Path, int]) -> None:
    root, line = hundred_mb
    result, _ = _validate(root, 100 << 20)  # measured: 20-30 s of CPU on this machine
    assert [f.line for f in _of(result, "CH024", "logs/app.log")] == [line]
    _no_value(result)


# ------------------------------------------------------------------------------------------------ one 10 MB line


def test_one_10_mb_line_is_scanned_in_linear_time(tmp_path: Path) -> None:
    data = b"word " * (2 << 20) + f" aws_access_key_id={AWS_KEY}".encode()
    root = _repo_with(tmp_path, "dump.txt", data)
    result, _ = _validate(root, len(data))  # measured: 0.8 s
    hits = _of(result, "CH024", "dump.txt")
    assert [f.line for f in hits] == [1] and hits[0].subject == "aws-access-key-id"
    _no_value(result)


# ------------------------------------------------------------------------------------------------ binary garbage


def test_5_mb_of_binary_garbage_is_scanned_as_bytes_without_a_finding(tmp_path: Path) -> None:
    data = random.Random(0).randbytes(5 << 20)
    root = _repo_with(tmp_path, "blob.bin", data)
    result, _ = _validate(root, len(data))  # measured: 0.13 s
    assert not [f for f in result.findings if f.file == "blob.bin"]
    assert decode(data).note == "binary: NUL bytes and no UTF-16 byte-order mark"  # why it is read as bytes


# ------------------------------------------------------------------------------------------------ UTF-16


def test_invalid_utf16_is_a_ch127_warning_with_its_reason(tmp_path: Path) -> None:
    data = codecs.BOM_UTF16_LE + "build log\r\n".encode("utf-16-le") * 1000 + b"\x00\xdc" + b"!"
    root = _repo_with(tmp_path, "build.log", data)
    result, _ = _validate(root, len(data))
    [warning] = _of(result, "CH127", "build.log")
    assert warning.severity == "warning"
    assert "invalid UTF-16" in warning.message and "replacement characters" in warning.message


def test_a_utf16_mark_on_garbage_is_scanned_as_bytes_without_a_warning(tmp_path: Path) -> None:
    data = codecs.BOM_UTF16_LE + b"\x00\xdc" * (1 << 20)
    root = _repo_with(tmp_path, "odd.dat", data)
    result, _ = _validate(root, len(data))
    assert not [f for f in result.findings if f.file == "odd.dat"]


UTF16_SCRIPT = f"# deploy helper\r\n$region = 'eu-west-1'\r\n$env:AWS_ACCESS_KEY_ID = '{AWS_KEY}'\r\n"


def test_a_utf16_file_with_a_credential_never_raises(tmp_path: Path) -> None:
    data = codecs.BOM_UTF16_LE + UTF16_SCRIPT.encode("utf-16-le")
    root = _repo_with(tmp_path, "deploy.ps1", data)
    result, _ = _validate(root, len(data))
    assert not _of(result, "CH127", "deploy.ps1")
    _no_value(result)


def test_a_utf16_file_with_a_credential_is_found_on_its_line(tmp_path: Path) -> None:
    data = codecs.BOM_UTF16_BE + UTF16_SCRIPT.encode("utf-16-be")
    root = _repo_with(tmp_path, "deploy.ps1", data)
    result, _ = _validate(root, len(data))
    assert [(f.line, f.subject) for f in _of(result, "CH024", "deploy.ps1")] == [(3, "aws-access-key-id")]


# ------------------------------------------------------------------------------------------------ Latin-1

LATIN1_PROPERTIES = f"# Konfiguration für Köln\nregion=eu-central-1\naws.accessKeyId={AWS_KEY}\n".encode("latin-1")


def test_a_latin1_file_with_a_credential_is_found(tmp_path: Path) -> None:
    root = _repo_with(tmp_path, "app.properties", LATIN1_PROPERTIES)
    result, _ = _validate(root, len(LATIN1_PROPERTIES))
    assert [f.subject for f in _of(result, "CH024", "app.properties")] == ["aws-access-key-id"]
    assert decode(LATIN1_PROPERTIES).encoding == "latin-1"
    _no_value(result)


def test_a_latin1_file_with_a_credential_is_found_on_its_line(tmp_path: Path) -> None:
    root = _repo_with(tmp_path, "app.properties", LATIN1_PROPERTIES)
    result, _ = _validate(root, len(LATIN1_PROPERTIES))
    assert [f.line for f in _of(result, "CH024", "app.properties")] == [3]
