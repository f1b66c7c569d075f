"""CH127: files the credential scan could only partly read.

A UTF-16 or UTF-8 file with a byte-order mark and invalid data after it (an odd length, an unpaired surrogate) is
still decoded, with replacement characters, and scanned; what was replaced was not. This check says so, as a
warning, so a damaged file never passes silently as "scanned". Binary files are not reported: scanning them as
bytes is the normal treatment, not a gap.

Boundary: only files the loader did not keep as UTF-8 text are read again (``decode_for_scan``); the scanning
itself is :mod:`chamberlain.checks.secrets`.
"""

from __future__ import annotations

from collections.abc import Iterator

from chamberlain.checks.registry import check
from chamberlain.findings import Finding
from chamberlain.intent.loader import MAX_SCAN_BYTES, Repository
from chamberlain.scan.decode import decode_for_scan, partial_scan_finding


@check("scan-coverage")
def check_scan_coverage(repo: Repository) -> Iterator[Finding]:
    for rf in repo.files:
        if rf.text is not None or rf.size > MAX_SCAN_BYTES:
            continue  # UTF-8 text is read whole; an oversize file already has its CH002
        finding = partial_scan_finding(rf.rel, decode_for_scan(rf))
        if finding is not None:
            yield finding
