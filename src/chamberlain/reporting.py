"""Findings as text, JSON and SARIF 2.1.0 (what GitHub code scanning reads), and the paths the loader left out.

Pure formatting: takes findings and exclusions, returns strings or dicts. Findings never carry secret values, so
neither does anything here.

SARIF paths are relative to the Git work tree's root (``prefix``: where the intent root sits in it), so code
scanning places them in a monorepo. Each result's ``partialFingerprints`` is derived from the rule, the location
and the finding's object and subject, never from its message: rewording a message does not reopen an alert.
Credential findings also carry their documented fingerprint (:mod:`chamberlain.scan.fingerprint`): in
``results[].fingerprint``, in SARIF ``partialFingerprints`` under :data:`CREDENTIAL_FINGERPRINT_KEY`, and in wide
text. Findings a baseline accepts are marked (``accepted``; SARIF ``suppressions`` of kind ``external``).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any
from urllib.parse import quote

from chamberlain import __version__
from chamberlain.findings import RULES, Finding, blocking
from chamberlain.intent.walk import Exclusion
from chamberlain.scan.fingerprint import fingerprint as credential_fingerprint

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFO_URI = "https://chamberlain.dev/rules"
FINGERPRINT_KEY = "chamberlain/v1"
CREDENTIAL_FINGERPRINT_KEY = "chamberlainCredential/v1"  # the documented <file>:<rule>:<kind>:<line> text
# Exclusions that are one line each in text output; the rest (ignored files, templates) are counted past this.
TEXT_EXCLUSIONS = 10


def findings_to_dicts(findings: Sequence[Finding], accepted: Collection[Finding] = ()) -> list[dict[str, Any]]:
    """One dict per finding; a credential finding has its ``fingerprint``, one the baseline accepts ``accepted``."""
    return [
        {
            "rule": f.rule,
            "slug": RULES[f.rule].slug,
            "severity": RULES[f.rule].severity,
            "file": f.file,
            "line": f.line,
            "message": f.message,
            "invariant": RULES[f.rule].invariant,
            **({"object": f.object} if f.object else {}),
            **({"fingerprint": fp} if (fp := credential_fingerprint(f)) else {}),
            **({"accepted": "baseline"} if f in accepted else {}),
        }
        for f in findings
    ]


def summary(findings: Sequence[Finding], *, strict: bool = False,
            exclusions: Sequence[Exclusion] = (), accepted: Collection[Finding] = ()) -> dict[str, Any]:
    """Counts over ``findings``. ``errors`` and ``warnings`` leave out the findings a baseline accepts
    (``accepted``, counted on their own), as ``ok`` does; ``findings`` and ``byRule`` count them all."""
    return {
        "ok": not [f for f in blocking(findings, strict=strict) if f not in accepted],
        "findings": len(findings),
        "errors": sum(1 for f in findings if f.severity == "error" and f not in accepted),
        "warnings": sum(1 for f in findings if f.severity == "warning" and f not in accepted),
        "byRule": dict(sorted(Counter(f.rule for f in findings).items())),
        "excluded": dict(sorted(Counter(e.reason for e in exclusions).items())),
        **({"accepted": sum(1 for f in findings if f in accepted)} if accepted else {}),
    }


def exclusions_to_dicts(exclusions: Sequence[Exclusion]) -> list[dict[str, Any]]:
    return [e.as_dict() for e in exclusions]


def exclusion_lines(exclusions: Sequence[Exclusion], limit: int = TEXT_EXCLUSIONS) -> list[str]:
    """``excluded: path[:line]: detail``, rendered output first (the exclusion a user most needs to see); at most
    ``limit`` lines per reason, then a count."""
    by_reason: dict[str, list[Exclusion]] = {}
    for e in exclusions:
        by_reason.setdefault(e.reason, []).append(e)
    order = sorted(by_reason, key=lambda r: (not r.startswith("rendered"), r))
    lines: list[str] = []
    for reason in order:
        items = by_reason[reason]
        for e in items[:limit]:
            where = f"{e.path}:{e.line}" if e.line else e.path
            lines.append(f"excluded: {where}: {e.detail}")
        if len(items) > limit:
            lines.append(f"excluded: ... and {len(items) - limit} more ({items[0].detail})")
    return lines


def exclusion_summary(exclusions: Sequence[Exclusion]) -> str:
    """``3 excluded (1 rendered-output, 2 gitignore)``, or '' when nothing was left out."""
    if not exclusions:
        return ""
    counts = Counter(e.reason for e in exclusions)
    return f"{len(exclusions)} excluded ({', '.join(f'{n} {r}' for r, n in sorted(counts.items()))})"


def to_text_lines(findings: Sequence[Finding], *, wide: bool = False,
                  accepted: Collection[Finding] = ()) -> list[str]:
    """``file:line: CH021 bootstrap-plaintext: message [invariant]`` — one line each, the format editors jump to.
    ``wide`` adds the column, the severity, the object (and subject) the finding is about and a credential's
    fingerprint. A finding the baseline accepts ends with ``(accepted by the baseline)``."""
    lines = []
    for f in findings:
        rule = RULES[f.rule]
        where = f"{f.file}:{f.line}" if f.line else f.file
        mark = " (accepted by the baseline)" if f in accepted else ""
        if not wide:
            lines.append(f"{where}: {f.rule} {rule.slug}: {f.message} [{rule.invariant}]{mark}")
            continue
        if f.line and f.column:
            where += f":{f.column}"
        about = f.object or "-"
        if f.subject:
            about += f" ({f.subject})"
        fp = credential_fingerprint(f)
        lines.append(f"{where}: {rule.severity} {f.rule} {rule.slug}: {f.message} [{rule.invariant}] "
                     f"object={about}" + (f" fingerprint={fp}" if fp else "") + mark)
    return lines


def fingerprint(f: Finding, uri: str) -> str:
    """A stable identity of a finding across runs: rule, location and subject, never the message text."""
    key = "\0".join((f.rule, uri, str(f.line or 0), f.object or "", f.subject or ""))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _uri(prefix: str, file: str) -> str:
    """A relative URI reference: the path below the Git root, percent-encoded (a file name may hold spaces, or
    bytes that are not UTF-8, which the file system hands over as surrogate escapes)."""
    if not prefix or prefix == ".":
        path = file
    elif file in ("", "."):
        path = prefix
    else:
        path = f"{prefix.rstrip('/')}/{file}"
    return quote(os.fsencode(path), safe="/")


def to_sarif(findings: Sequence[Finding], *, prefix: str = "",
             exclusions: Sequence[Exclusion] = (), accepted: Collection[Finding] = (),
             baseline: str = "") -> dict[str, Any]:
    """A SARIF 2.1.0 log with one run; every rule of the catalogue is listed so rule indexes are stable.

    ``prefix``: the intent root's path relative to the Git root (``""`` when it is the Git root or not in Git),
    prepended to every artifact URI. Exclusions are tool notifications of the run's invocation. Findings in
    ``accepted`` get a ``suppressions`` entry of kind ``external`` naming the ``baseline`` file."""
    rule_ids = sorted(RULES)
    index = {rid: i for i, rid in enumerate(rule_ids)}
    rules = [
        {
            "id": rid,
            "name": RULES[rid].slug,
            "shortDescription": {"text": RULES[rid].description},
            "fullDescription": {"text": f"{RULES[rid].description} Protects: {RULES[rid].invariant}."},
            "helpUri": f"{INFO_URI}#{rid.lower()}",
            "defaultConfiguration": {"level": RULES[rid].severity},
            "properties": {"tags": ["security", "secrets"], "invariant": RULES[rid].invariant},
        }
        for rid in rule_ids
    ]
    results = []
    for f in findings:
        uri = _uri(prefix, f.file)
        region: dict[str, Any] = {"startLine": f.line} if f.line else {}
        if f.line and f.column:
            region["startColumn"] = f.column
        location: dict[str, Any] = {"artifactLocation": {"uri": uri, "uriBaseId": "%SRCROOT%"}}
        if region:
            location["region"] = region
        prints = {FINGERPRINT_KEY: fingerprint(f, uri)}
        if (credential := credential_fingerprint(f)) is not None:
            prints[CREDENTIAL_FINGERPRINT_KEY] = credential
        result: dict[str, Any] = {
            "ruleId": f.rule,
            "ruleIndex": index[f.rule],
            "level": RULES[f.rule].severity,
            "message": {"text": f.message},
            "locations": [{"physicalLocation": location}],
            # GitHub de-duplicates alerts across runs by this fingerprint.
            "partialFingerprints": prints,
        }
        if f in accepted:
            result["suppressions"] = [{"kind": "external", "status": "accepted",
                                       "justification": f"accepted by the baseline {baseline}".rstrip()}]
        results.append(result)
    notifications = [
        {
            "level": "note",
            "message": {"text": f"excluded ({e.reason}): {e.detail}"},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": _uri(prefix, e.path.rstrip("/") if e.path != "./" else ""),
                                     "uriBaseId": "%SRCROOT%"},
                **({"region": {"startLine": e.line}} if e.line else {}),
            }}],
            "properties": {"reason": e.reason},
        }
        for e in exclusions
    ]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "chamberlain",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "informationUri": INFO_URI,
                        "rules": rules,
                    }
                },
                "invocations": [{"executionSuccessful": True, "toolExecutionNotifications": notifications}],
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }
