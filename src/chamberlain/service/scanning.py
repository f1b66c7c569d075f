"""Credential-scanning workflow around ``chamberlain validate``: the baseline and the Git history.

Belongs here: scanning the history with the real scanner (:func:`scan_blob` is the one place that wiring lives),
applying a baseline to findings (:func:`apply_baseline`, pure), and the validate use case with both
(:func:`validate`). Not here: the fingerprint and baseline formats (:mod:`chamberlain.scan.fingerprint`,
:mod:`chamberlain.scan.baseline`), walking Git (:mod:`chamberlain.scan.history`), printing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from chamberlain.findings import Finding, blocking

if TYPE_CHECKING:
    from chamberlain.checks.gate import Validation
    from chamberlain.scan.baseline import Baseline
    from chamberlain.scan.history import HistoryStats, ScanHit


def scan_blob(path: str, raw: bytes) -> list[ScanHit]:
    """The credential scanner for one blob of history, with the working tree's rules: text with every rule
    (SealedSecret ciphertext masked, intent documents left to their own checks), anything else as bytes."""
    from chamberlain.checks.secrets import scan_binary, scan_file
    from chamberlain.intent.loader import MAX_SCAN_BYTES, RepoFile, blob_file

    rf = blob_file(path, raw)
    if rf.text is not None:
        return list(scan_file(rf))
    # scan_file reads binary files from disk; a blob is not on disk: its name (key stores) from scan_file, told
    # the file is too large to read, and its bytes here.
    named = scan_file(RepoFile(rf.path, rf.rel, MAX_SCAN_BYTES + 1, None, rf.is_yaml))
    return [*named, *scan_binary(raw)]


def history_findings(path: str | Path, stats: HistoryStats | None = None) -> list[Finding]:
    """CH126 for every credential in the Git history of the intent repository at ``path`` (HEAD's ancestry),
    leaving out what the working tree's ``.chamberlainignore`` leaves out."""
    from chamberlain.intent.walk import IGNORE_FILE, load_ignore_file
    from chamberlain.scan.history import scan_history, to_finding

    own = load_ignore_file(Path(path) / IGNORE_FILE)

    def ignored(rel: str, is_dir: bool) -> bool:
        return own is not None and own.match_file(rel + "/" if is_dir else rel)

    hits = scan_history(path, scan_blob, ignored=ignored if own is not None else None, stats=stats)
    return sorted((to_finding(h) for h in hits), key=Finding.sort_key)


def history_summary(stats: HistoryStats) -> dict[str, int | list[str]]:
    """What a history scan read, for json/yaml output."""
    return {"commits": stats.commits, "blobsScanned": stats.blobs_scanned, "bytesScanned": stats.bytes_scanned,
            "blobsOversize": stats.blobs_oversize, "oversizePaths": sorted(set(stats.oversize_paths)),
            "submodules": stats.submodules, "missingCommits": stats.missing_commits}


def history_notes(stats: HistoryStats) -> list[str]:
    """The history scan in text output: what was read, and what was not (a shallow clone, oversize blobs)."""
    notes = [f"history: {stats.commits} commits, {stats.blobs_scanned} blobs scanned "
             f"({stats.bytes_scanned / 1e6:.1f} MB)"]
    if stats.missing_commits:
        notes.append(f"note: history: {stats.missing_commits} parent commit(s) are not in the repository (a shallow "
                     "clone): older history was not scanned; fetch it all (git fetch --unshallow, or "
                     "fetch-depth: 0 in CI)")
    for path in sorted(set(stats.oversize_paths)):
        from chamberlain.intent.loader import MAX_SCAN_BYTES

        notes.append(f"note: history: {path}: a version larger than {MAX_SCAN_BYTES // (1024 * 1024)} MiB was not "
                     "scanned")
    return notes


@dataclass
class BaselineOutcome:
    """What a baseline did to a run's findings."""

    accepted: list[Finding] = field(default_factory=list)  # credential findings an entry accepts
    stale: list[str] = field(default_factory=list)  # entries no finding matched (a note, never a failure)


def apply_baseline(findings: Sequence[Finding], baseline: Baseline | None, *, history: bool) -> BaselineOutcome:
    """Which findings the baseline accepts and which of its entries matched nothing (history entries only count
    as stale when ``history`` was scanned)."""
    from chamberlain.scan.baseline import stale_entries

    if baseline is None:
        return BaselineOutcome()
    return BaselineOutcome([f for f in findings if baseline.accepts(f)],
                           stale_entries(baseline, findings, history=history))


@dataclass
class ScanValidation:
    """``validate`` with the workflow options: the tree's validation, history findings, the baseline's effect."""

    validation: Validation
    findings: list[Finding]  # the tree's findings, then history's
    outcome: BaselineOutcome
    history: HistoryStats | None = None  # None: history not scanned
    baseline: str | None = None  # the baseline applied: the one given, else the repository's own, else none

    def failing(self, *, strict: bool = False) -> list[Finding]:
        """The blocking findings the baseline does not accept."""
        accepted = {id(f) for f in self.outcome.accepted}
        return [f for f in blocking(self.findings, strict=strict) if id(f) not in accepted]


def load(baseline: str | Path | None) -> Baseline | None:
    from chamberlain.scan.baseline import load_baseline

    return None if baseline is None else load_baseline(baseline)


def validate(path: str | Path, *, baseline: str | Path | None = None, history: bool = False) -> ScanValidation:
    """Every check over the repository at ``path``, the Git history with ``history``, and the baseline at
    ``baseline`` (else the repository's own ``.chamberlain-baseline``) applied to the credential findings. A
    baseline given is read first: a bad one stops before any scanning (usage error, exit 2)."""
    from chamberlain.service import repository

    accepted_by = load(baseline)
    root = repository.repository_root(path)
    stats = None
    if history:  # imported only here: dulwich is not needed to validate the tree
        from chamberlain.scan.history import HistoryStats, open_repository

        open_repository(root)[0].close()  # not a Git repository: a usage error before the tree is scanned
    result = repository.validate(root, accepted_by)  # none given: the gate reads the repository's own
    accepted_by = result.baseline
    findings = list(result.findings)
    if history:
        stats = HistoryStats()
        findings.extend(history_findings(root, stats))
    return ScanValidation(result, findings, apply_baseline(findings, accepted_by, history=history), stats,
                          accepted_by.path if accepted_by is not None else None)
