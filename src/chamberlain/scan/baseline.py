"""The baseline file: credential findings a team has reviewed and accepted, by fingerprint.

One fingerprint (:mod:`chamberlain.scan.fingerprint`) per line; ``#`` starts a comment line; blank lines are
ignored. An entry accepts a finding *at that place* (file, rule, kind, line, and commit for history), never a
value: a baseline holds no value and no hash of one. A malformed line is an error naming the file and the line,
because a baseline that silently accepts less (or more) than its author meant would change what fails.

Reading is linear and bounded: a file above :data:`MAX_BASELINE_BYTES` or with a line above
:data:`MAX_LINE_CHARS` is refused before it is held in memory. Writing is deterministic (sorted, de-duplicated).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from chamberlain.errors import UsageError
from chamberlain.findings import Finding
from chamberlain.scan.fingerprint import Fingerprint, FingerprintError, fingerprint, parse

# 4 MiB holds ~40,000 entries; a baseline that large is no longer reviewed by anyone.
MAX_BASELINE_BYTES = 4 * 1024 * 1024
MAX_LINE_CHARS = 8192

HEADER = """\
# chamberlain baseline: credential findings reviewed and accepted (chamberlain validate --baseline FILE).
# One fingerprint per line: <file>:<rule>:<kind>:<line>, or <commit>:<file>:<rule>:<kind>:<line> for Git history.
# An entry accepts a finding at that place, not a value: review every entry, and remove it once the credential
# is gone or rotated. Written by `chamberlain validate --write-baseline`; see docs/scanning.md.
"""


#: The baseline a repository carries at its intent root: every command that reads the repository (validate,
#: render, the controller and the others behind the validate-before-use gate) applies it, so a finding reviewed once
#: does not stop them one by one. Only this file, at the root: a team that controls one directory cannot add one.
REPOSITORY_BASELINE = ".chamberlain-baseline"


class BaselineError(UsageError):
    """The baseline file cannot be used: missing, too large, or a line that is not a fingerprint (exit 2)."""


@dataclass(frozen=True)
class Baseline:
    """The accepted fingerprints of one baseline file, in file order, and where each was written."""

    path: str
    entries: tuple[Fingerprint, ...] = ()
    lines: dict[str, int] = field(default_factory=dict, compare=False)  # fingerprint text -> its line number

    def accepts(self, finding: Finding) -> bool:
        """Whether an entry accepts this finding (only credential findings have a fingerprint)."""
        text = fingerprint(finding)
        return text is not None and text in self.lines


def parse_lines(lines: Iterable[str], path: str) -> Baseline:
    """A baseline from its lines (``path`` names it in errors)."""
    entries: list[Fingerprint] = []
    index: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        if len(raw) > MAX_LINE_CHARS:
            raise BaselineError(f"{path}:{number}: line longer than {MAX_LINE_CHARS} characters; not a fingerprint")
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        try:
            fp = parse(text)
        except FingerprintError as exc:
            raise BaselineError(f"{path}:{number}: not a fingerprint: {exc}") from None
        key = str(fp)
        if key not in index:
            index[key] = number
            entries.append(fp)
    return Baseline(path, tuple(entries), index)


def load_baseline(path: str | Path) -> Baseline:
    """The baseline at ``path``; :class:`BaselineError` (a usage error, exit 2) when it is missing, not a regular
    file, larger than :data:`MAX_BASELINE_BYTES`, not UTF-8, or holds a malformed line."""
    if path == "":  # Path("") would be ".", the current directory
        raise BaselineError("--baseline: the path is empty; name the baseline file")
    shown = str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise BaselineError(f"{shown}: no such baseline file (write one with --write-baseline)") from None
    except OSError as exc:
        raise BaselineError(f"{shown}: cannot read the baseline file ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise BaselineError(f"{shown}: the baseline is not a regular file")
    too_big = BaselineError(f"{shown}: the baseline file is larger than {MAX_BASELINE_BYTES // (1024 * 1024)} MiB; "
                            "a baseline lists reviewed findings, one short line each — this is not one")
    if st.st_size > MAX_BASELINE_BYTES:
        raise too_big
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BASELINE_BYTES + 1)  # bounded even when the file grows after stat
    except OSError as exc:
        raise BaselineError(f"{shown}: cannot read the baseline file ({exc.strerror})") from None
    if len(raw) > MAX_BASELINE_BYTES:
        raise too_big
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise BaselineError(f"{shown}:{line}: the baseline file is not UTF-8 text") from None
    return parse_lines(text.split("\n"), shown)


def baseline_text(findings: Iterable[Finding]) -> str:
    """The baseline accepting exactly the credential findings among ``findings``: a header, then the sorted,
    de-duplicated fingerprints."""
    prints = sorted({fp for f in findings if (fp := fingerprint(f)) is not None})
    return HEADER + "".join(f"{fp}\n" for fp in prints)


# The temporary file is always a new file: never a link followed, nor an existing file (a hard link) truncated.
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def check_write_target(path: str | Path) -> Path:
    """``path`` as a place :func:`write_baseline` may write: absent (in an existing directory) or a regular file.
    Anything else is a :class:`BaselineError`: the write renames a new file over the path, which would replace a
    symlink, a device such as /dev/null, or a FIFO instead of writing through it."""
    if path == "":  # Path("") would be ".", the current directory
        raise BaselineError("--write-baseline: the path is empty; name the file to write")
    target = Path(path)
    try:
        mode = os.lstat(target).st_mode  # lstat: a symlink is refused, not followed
    except FileNotFoundError:
        if not target.parent.is_dir():
            raise BaselineError(f"{path}: cannot write the baseline file (no such directory: {target.parent})") \
                from None
        return target
    except OSError as exc:
        raise BaselineError(f"{path}: cannot write the baseline file ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "a directory" if stat.S_ISDIR(mode) \
            else "not a regular file (a device, FIFO or socket)"
        raise BaselineError(f"{path}: {kind}; a baseline is written only to a regular file or a new path, which "
                            "it replaces (name another path)")
    return target


def write_baseline(findings: Iterable[Finding], path: str | Path) -> int:
    """Write the baseline of ``findings`` to ``path`` (replacing it atomically); the number of entries. ``path``
    must be a regular file or absent (:func:`check_write_target`)."""
    target = check_write_target(path)
    text = baseline_text(findings)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # a leftover of an interrupted write (unlink never follows a link)
        with os.fdopen(os.open(tmp, _NEW_FILE, 0o666), "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except OSError as exc:
        raise BaselineError(f"{path}: cannot write the baseline file ({exc.strerror})") from None
    return text.count("\n") - HEADER.count("\n")


def stale_entries(baseline: Baseline, findings: Iterable[Finding], *, history: bool) -> list[str]:
    """The entries no finding matched, in file order: the credential is gone (or moved), so the entry only waits
    to accept something new at that place. History entries are stale only when history was scanned."""
    seen = {fp for f in findings if (fp := fingerprint(f)) is not None}
    return [str(e) for e in baseline.entries
            if str(e) not in seen and (history or e.commit is None)]


def repository_baseline(root: Path) -> Baseline | None:
    """The baseline at ``<root>/.chamberlain-baseline``, None when there is none. A symbolic link there is refused
    (the walk never follows one out of the repository); a malformed file is a usage error, as with ``--baseline``."""
    path = root / REPOSITORY_BASELINE
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read the repository's baseline ({exc.strerror})") from None
    if stat.S_ISLNK(st.st_mode):
        raise BaselineError(f"{path}: the repository's baseline is a symbolic link; make it a regular file")
    return load_baseline(path)
