"""Findings as text, JSON and SARIF 2.1.0 (what GitHub code scanning reads).

Pure formatting: takes findings, returns strings or dicts. Findings never carry secret values, so neither does
anything here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from chamberlain import __version__
from chamberlain.findings import RULES, Finding, blocking

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFO_URI = "https://chamberlain.dev/rules"


def findings_to_dicts(findings: Sequence[Finding]) -> list[dict[str, Any]]:
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
        }
        for f in findings
    ]


def summary(findings: Sequence[Finding], *, strict: bool = False) -> dict[str, Any]:
    return {
        "ok": not blocking(findings, strict=strict),
        "findings": len(findings),
        "errors": sum(1 for f in findings if f.severity == "error"),
        "warnings": sum(1 for f in findings if f.severity == "warning"),
        "byRule": dict(sorted(Counter(f.rule for f in findings).items())),
    }


def to_text_lines(findings: Sequence[Finding]) -> list[str]:
    """``file:line: CH021 bootstrap-plaintext: message [invariant]`` — one line each, the format editors jump to."""
    lines = []
    for f in findings:
        rule = RULES[f.rule]
        where = f"{f.file}:{f.line}" if f.line else f.file
        lines.append(f"{where}: {f.rule} {rule.slug}: {f.message} [{rule.invariant}]")
    return lines


def to_sarif(findings: Sequence[Finding]) -> dict[str, Any]:
    """A SARIF 2.1.0 log with one run; every rule of the catalogue is listed so rule indexes are stable."""
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
        region: dict[str, Any] = {"startLine": f.line} if f.line else {}
        if f.line and f.column:
            region["startColumn"] = f.column
        location: dict[str, Any] = {"artifactLocation": {"uri": f.file, "uriBaseId": "%SRCROOT%"}}
        if region:
            location["region"] = region
        results.append(
            {
                "ruleId": f.rule,
                "ruleIndex": index[f.rule],
                "level": RULES[f.rule].severity,
                "message": {"text": f.message},
                "locations": [{"physicalLocation": location}],
                # GitHub de-duplicates alerts across runs by this fingerprint.
                "partialFingerprints": {"primaryLocationLineHash": f"{f.rule}:{f.file}:{f.message}"},
            }
        )
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
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }
