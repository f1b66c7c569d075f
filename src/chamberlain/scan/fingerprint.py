"""The fingerprint of a credential finding: where it is, never what it is.

One documented format, as ``.gitleaksignore`` entries are (docs/scanning.md, "Fingerprints")::

    <file>:<rule>:<kind>:<line>              a finding in the working tree (CH024, CH020)
    <commit>:<file>:<rule>:<kind>:<line>     a finding in Git history (CH126); <commit> is the full 40-hex id

``<file>`` is the path below the intent root, ``<rule>`` the rule id, ``<kind>`` the credential kind the finding
names (``github-pat``; a finding that names no kind, such as a plaintext Secret manifest, uses its rule's slug),
``<line>`` the 1-based line, 0 for a binary file.

A fingerprint is never built from the value, not even from a hash of it: a hash of a short or structured secret
can be guessed offline by trying candidates, and a baseline file is committed for everyone to read. So a
fingerprint accepts *a finding at that place*; a different credential put on the same line later is accepted too,
which is why a reviewer checks every entry of a baseline.

Parsing: a file name may contain ``:``, so the fixed fields are split from the right (line, kind, rule; kinds and
rule ids never contain ``:``) and whatever is left is the file; a history fingerprint (rule CH126) then takes its
first field as the commit. In ``<file>``, ``%``, control characters (a line break would end the entry), a leading
``#`` (a comment) and leading or trailing spaces (stripped when read) are written as ``%XX``.

Pure: strings in, strings out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from chamberlain.findings import RULES, Finding

HISTORY_RULE = "CH126"
# The rules whose findings a baseline may accept: credentials in the tree, in intent, in history.
CREDENTIAL_RULES = frozenset({"CH024", "CH020", HISTORY_RULE})

_RULE = re.compile(r"CH\d{3}")
_KIND = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_LINE = re.compile(r"0|[1-9][0-9]{0,9}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_ESCAPE = re.compile(r"[%\x00-\x1f\x7f]|^[# ]| $")


class FingerprintError(ValueError):
    """A fingerprint does not have the documented format; the message says which part is wrong."""


@dataclass(frozen=True, order=True)
class Fingerprint:
    """The parts of a fingerprint; ``str()`` gives the documented text."""

    file: str
    rule: str
    kind: str
    line: int
    commit: str | None = None  # history findings only

    def __str__(self) -> str:
        place = f"{_escape(self.file)}:{self.rule}:{self.kind}:{self.line}"
        return f"{self.commit}:{place}" if self.commit else place


def _escape(path: str) -> str:
    return _ESCAPE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8")), path)


def credential_kind(finding: Finding) -> str:
    """The kind a finding names (its subject), or its rule's slug when it names none."""
    if finding.subject and _KIND.fullmatch(finding.subject):
        return finding.subject
    return RULES[finding.rule].slug


def of_finding(finding: Finding) -> Fingerprint | None:
    """The fingerprint of a credential finding (CH024, CH020, CH126); None for any other rule.

    A CH126 finding carries its commit (the full id) as its ``object`` (:mod:`chamberlain.scan.history`)."""
    if finding.rule not in CREDENTIAL_RULES:
        return None
    commit = None
    if finding.rule == HISTORY_RULE:
        if finding.object is None or not _COMMIT.fullmatch(finding.object):
            return None  # pragma: no cover - history findings are built with their commit
        commit = finding.object
    return Fingerprint(finding.file, finding.rule, credential_kind(finding), finding.line or 0, commit)


def fingerprint(finding: Finding) -> str | None:
    """The documented text of :func:`of_finding`, or None for a finding that is not about a credential."""
    fp = of_finding(finding)
    return None if fp is None else str(fp)


def parse(text: str) -> Fingerprint:
    """A fingerprint from its text; :class:`FingerprintError` naming the wrong part otherwise."""
    parts = text.rsplit(":", 3)
    if len(parts) != 4:
        raise FingerprintError("expected <file>:<rule>:<kind>:<line> (or <commit>:<file>:<rule>:<kind>:<line>)")
    place, rule, kind, line = parts
    if not _LINE.fullmatch(line):
        raise FingerprintError(f"the line must be a number (0 for a binary file), not {line[:20]!r}")
    if not _KIND.fullmatch(kind):
        raise FingerprintError(f"{kind[:40]!r} is not a credential kind (letters, digits, '.', '_', '-')")
    if not _RULE.fullmatch(rule):
        raise FingerprintError(f"{rule[:20]!r} is not a rule id (CH followed by three digits)")
    if rule not in CREDENTIAL_RULES:
        raise FingerprintError(f"{rule} is not a credential rule; a baseline accepts only "
                               f"{', '.join(sorted(CREDENTIAL_RULES))}")
    commit = None
    if rule == HISTORY_RULE:
        commit, sep, place = place.partition(":")
        if not sep or not _COMMIT.fullmatch(commit):
            raise FingerprintError(f"a {HISTORY_RULE} fingerprint starts with the full 40-hex commit id")
    if not place:
        raise FingerprintError("the file is empty")
    return Fingerprint(unquote(place), rule, kind, int(line), commit)
