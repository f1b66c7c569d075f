"""The registry of checks. Registering the same check twice fails loudly at import time."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable

from chamberlain.findings import RULES, Finding
from chamberlain.intent.loader import Repository, active_cache
from chamberlain.intent.memo import reading

# A finding of these may point at a value in the file: its parse is not cached (see chamberlain.intent.cache).
CREDENTIAL_RULES = frozenset({"CH020", "CH024", "CH102", "CH115", "CH127", "CH128"})

Check = Callable[[Repository], Iterable[Finding]]
CHECKS: dict[str, Check] = {}

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


def check(name: str) -> Callable[[Check], Check]:
    """Register a check under a unique name."""

    def register(fn: Check) -> Check:
        if name in CHECKS:
            raise RuntimeError(f"check {name!r} registered twice")
        CHECKS[name] = fn
        return fn

    return register


def load_checks() -> dict[str, Check]:
    for module in CHECK_MODULES:
        importlib.import_module(module)
    return CHECKS


def run_checks(repo: Repository) -> list[Finding]:
    """Loading problems plus every registered check, de-duplicated and sorted by file, line and rule."""
    findings: set[Finding] = set(repo.problems)
    with reading(repo):  # the checks only read: indexes they share are built once
        for fn in load_checks().values():
            for f in fn(repo):
                if f.rule not in RULES:  # a programming error; fail loudly rather than emit an unknown rule
                    raise RuntimeError(f"check emitted unknown rule {f.rule}")
                findings.add(f)
    cache = active_cache()
    if cache is not None:  # parses are kept only for files no credential finding points at
        cache.commit({f.file for f in findings if f.rule in CREDENTIAL_RULES})
    return sorted(findings, key=Finding.sort_key)
