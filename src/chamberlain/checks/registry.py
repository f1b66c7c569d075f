"""The registry of checks. Registering the same check twice fails loudly at import time."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator

from chamberlain.findings import RULES, Finding
from chamberlain.intent.loader import Repository, active_cache
from chamberlain.intent.memo import reading

# A finding of these may point at a value in the file: its parse is not cached (see chamberlain.intent.cache).
CREDENTIAL_RULES = frozenset({"CH020", "CH024", "CH102", "CH115", "CH127", "CH128"})

Check = Callable[[Repository], Iterable[Finding]]
CHECKS: dict[str, Check] = {}
# The checks whose findings on an intent file depend on that file and the context alone (see .incremental).
PER_FILE: set[str] = set()

# Modules that register checks; imported lazily by run_checks so the registry has no import cycle.
CHECK_MODULES = (
    "chamberlain.checks.structure",
    "chamberlain.checks.references",
    "chamberlain.checks.authority",
    "chamberlain.checks.secrets",
    "chamberlain.checks.sops",
    "chamberlain.checks.retirement",
    "chamberlain.checks.manifests",
    "chamberlain.checks.tenancy",
    "chamberlain.render.preflight",  # render's own refusals (CH103); imported by name, so no layer is crossed
    "chamberlain.checks.pki",
    "chamberlain.checks.unseal",
    "chamberlain.checks.templates",
    "chamberlain.checks.adoption",
    "chamberlain.checks.distribution",
)


def check(name: str, *, per_file: bool = False) -> Callable[[Check], Check]:
    """Register a check under a unique name. ``per_file``: what it finds about an intent file depends only on that
    file and the files that are not intent files (:mod:`.incremental`), so its findings on an unchanged file are
    reused on a rerun."""

    def register(fn: Check) -> Check:
        if name in CHECKS:
            raise RuntimeError(f"check {name!r} registered twice")
        CHECKS[name] = fn
        if per_file:
            PER_FILE.add(name)
        return fn

    return register


def load_checks() -> dict[str, Check]:
    for module in CHECK_MODULES:
        importlib.import_module(module)
    return CHECKS


def run_checks(repo: Repository) -> list[Finding]:
    """Loading problems plus every registered check, de-duplicated and sorted by file, line and rule. With a parse
    cache, the per-file checks' findings on unchanged intent files are reused (:mod:`.incremental`)."""
    from chamberlain.checks import incremental  # it reads bootstrap references (checks.sops): no import cycle

    checks = load_checks()
    cache = active_cache()
    reuse = incremental.plan(repo, cache)
    reusing = reuse is not None and bool(reuse.cached)
    findings: set[Finding] = set(repo.problems)
    per_file: list[Finding] = []
    with reading(repo):  # the checks only read: indexes they share are built once
        for name, fn in checks.items():
            if name not in PER_FILE:
                findings.update(_checked(fn(repo)))
            elif not reusing:
                per_file.extend(_checked(fn(repo)))
    if reuse is not None and reusing:
        for found in reuse.cached.values():
            findings.update(found)
        part = repo.without(reuse.cached.keys())
        with reading(part):
            for name in checks:
                if name in PER_FILE:
                    per_file.extend(_checked(checks[name](part)))
    findings.update(per_file)
    if cache is not None:  # parses and findings are kept only for files no credential finding points at
        credentials = {f.file for f in findings if f.rule in CREDENTIAL_RULES}
        # A finding may quote another file (a bootstrap Secret's key names in CH019): with a credential anywhere,
        # no findings are kept at all.
        if reuse is not None and not credentials:
            reuse.stage(cache, per_file)
        cache.commit(credentials)
    return sorted(findings, key=Finding.sort_key)


def _checked(found: Iterable[Finding]) -> Iterator[Finding]:
    for f in found:
        if f.rule not in RULES:  # a programming error; fail loudly rather than emit an unknown rule
            raise RuntimeError(f"check emitted unknown rule {f.rule}")
        yield f
