"""Retirement of bootstrap files declared in Git (CH026-CH029) and the fingerprint that pins a retired file.

Concept (docs/design/gitops-retirement.md): once an environment's bootstrap Secret has been handed over, Git says
so — ``source.bootstrap.retiredIn`` lists the environment and ``retiredFingerprint`` pins the encrypted file as it
was — so the GitOps controller stops applying it and nothing can resurrect it. A bootstrap file edited after its
retirement would be silently ignored (handover is once per secret), so it is refused: a value issued upstream
after the handover goes through ``chamberlain import NAME`` into the authority, never back through Git.

The fingerprint is ``sha256:`` over the canonical JSON (sorted keys, no whitespace) of the encrypted document with
its ``sops`` block removed. Checked with the real sops 3.13: ``sops updatekeys`` (adding or removing recipients)
rewrites only the ``sops`` block and keeps it; ``sops set`` of a new value, a fresh encryption of the same
plaintext and ``sops rotate`` (a new data key) all change the ciphertext and so the fingerprint; ``sops set`` of
the value already there keeps it.

- ``retirement``: CH026 ``retiredIn`` names an environment the intent does not exist in; CH027 ``retiredIn`` without
  ``retiredFingerprint`` (a later change could not be detected; a warning); CH028 the file's fingerprint differs
  from ``retiredFingerprint``; CH029 ``retiredIn``/``retiredFingerprint`` anywhere but ``spec.source.bootstrap``.

Boundary: pure over the loaded repository; nothing is decrypted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

from chamberlain.checks.registry import check
from chamberlain.checks.sops import BootstrapRef, bootstrap_refs
from chamberlain.findings import Finding
from chamberlain.intent.loader import Repository
from chamberlain.intent.model import API_VERSION
from chamberlain.intent.paths import intent_environments

FINGERPRINT_PREFIX = "sha256:"
RETIREMENT_FIELDS = ("retiredIn", "retiredFingerprint")


def fingerprint(document: Mapping[str, Any]) -> str:
    """The fingerprint of one encrypted bootstrap document (its parsed tree): stable under ``sops updatekeys``,
    changed by any new ciphertext. Pure; the document holds ciphertext only, so hashing it reveals nothing."""
    body = {k: v for k, v in document.items() if k != "sops"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return FINGERPRINT_PREFIX + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def file_fingerprint(repo: Repository, intent: str) -> str | None:
    """The fingerprint of ``intent``'s bootstrap file as it is in the repository (None when it is not one readable
    YAML document: CH025 says why)."""
    for ref in bootstrap_refs(repo):
        if ref.intent.obj.name == intent:
            return ref_fingerprint(ref)
    return None


def ref_fingerprint(ref: BootstrapRef) -> str | None:
    """The fingerprint of the bootstrap file ``ref`` names (None when it is not one readable YAML document)."""
    docs = ref.file.documents if ref.file is not None else []
    if len(docs) == 1 and isinstance(docs[0].data, dict):
        return fingerprint(docs[0].data)
    return None


@check("retirement", per_file=True)
def check_retirement(repo: Repository) -> Iterator[Finding]:
    for ref in bootstrap_refs(repo):
        source = ref.intent.obj.spec.source.bootstrap
        if source is not None and source.retired_in:
            yield from _retired(repo, ref)


def _retired(repo: Repository, ref: BootstrapRef) -> Iterator[Finding]:
    loaded, platform = ref.intent, repo.platform
    intent = loaded.obj
    source = intent.spec.source.bootstrap
    if source is None:  # pragma: no cover - the caller checked
        return
    label = f"SecretIntent/{intent.name}"

    def finding(rule: str, message: str, field: str) -> Finding:
        return Finding(loaded.file, loaded.line_of("spec", "source", "bootstrap", field), rule, f"{label}: {message}",
                       object=label)

    if platform is not None:
        known = {e.name for e in intent_environments(platform, intent)}
        unknown = sorted(set(source.retired_in) - known)
        if unknown:
            yield finding("CH026", f"retiredIn names {', '.join(unknown)}, not one of the intent's environments "
                                   f"({', '.join(sorted(known)) or 'none'})", "retiredIn")
    if source.retired_fingerprint is None:
        yield finding("CH027", "retiredIn without retiredFingerprint: a later change of the bootstrap file cannot "
                               "be detected (chamberlain handover writes both)", "retiredIn")
        return
    current = ref_fingerprint(ref)  # this intent's own file (by name, a namesake's could be read: CH008)
    if current is not None and current != source.retired_fingerprint:
        yield finding("CH028", f"bootstrap file {ref.rel} changed after its retirement in "
                               f"[{', '.join(source.retired_in)}]; an upstream-issued value goes through "
                               f"`chamberlain import {intent.name}`", "retiredFingerprint")


@check("retirement-placement", per_file=True)
def check_retirement_placement(repo: Repository) -> Iterator[Finding]:
    """``retiredIn``/``retiredFingerprint`` at any other place of a SecretIntent: the schema refuses them too
    (CH003), this says where they belong."""
    for rf in repo.files:
        if rf.text is None or "retired" not in rf.text:  # cheap: most files never mention it
            continue
        for doc in rf.documents:
            if doc.kind != "SecretIntent" or doc.api_version != API_VERSION:
                continue
            for loc in _misplaced(doc.data):
                yield Finding(rf.rel, doc.line_of(loc), "CH029",
                              f"{loc[-1]} at {'.'.join(str(p) for p in loc)}: it belongs in spec.source.bootstrap "
                              "(only a bootstrap file is retired)")


def _misplaced(data: Any) -> Iterator[tuple[int | str, ...]]:
    stack: list[tuple[tuple[int | str, ...], Any]] = [((), data)]
    while stack:
        loc, node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                here = (*loc, str(key))
                if key in RETIREMENT_FIELDS and loc != ("spec", "source", "bootstrap"):
                    yield here
                stack.append((here, value))
        elif isinstance(node, list):
            stack.extend(((*loc, i), item) for i, item in enumerate(node))


__all__ = ["FINGERPRINT_PREFIX", "file_fingerprint", "fingerprint"]
