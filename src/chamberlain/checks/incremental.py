"""Reusing the per-file checks' findings on intent files that did not change (a rerun after one edit).

A check registered ``per_file`` promises: what it finds about an *intent file* (every document in it a
SecretIntent) depends only on that file and on the repository's *context*, meaning every other file, together
with the repository's place (root, Git work tree, exclusions); and what it finds about a context file does not
depend on intent files at all. So on a rerun, its findings on an unchanged intent file in an unchanged context are
those of the last run: they come from the parse cache (:meth:`ParseCache.get_findings`), and the per-file checks
run only on the context plus the intent files that changed (:meth:`Repository.without`). Every cross-file check
still runs on the whole repository, every time.

A file an intent names as its bootstrap file is context even when it holds only SecretIntents (a mistake CH025
reports, but the checks of the naming intent read it). A run with a credential finding anywhere keeps no findings:
a finding may quote another file (CH019 lists a bootstrap Secret's key names).

``tests/unit/test_checks_incremental.py`` holds every per-file check to its promise: on each repository it is
given, the union of its runs on the context plus one intent file at a time equals its run on the whole.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from chamberlain.checks.sops import bootstrap_refs
from chamberlain.findings import Finding
from chamberlain.intent.cache import ParseCache
from chamberlain.intent.loader import Repository

INTENT_KIND = "SecretIntent"


@dataclass
class Reuse:
    """The intent files whose per-file findings the cache holds (:attr:`cached`), and the rest (:attr:`fresh`),
    whose findings are computed and staged for the next run."""

    context: str
    cached: dict[str, list[Finding]] = field(default_factory=dict)
    fresh: dict[str, str] = field(default_factory=dict)  # path -> SHA-256 of the file's bytes

    def stage(self, cache: ParseCache, findings: list[Finding]) -> None:
        """Keep the findings the per-file checks made on the fresh intent files (none is a finding too)."""
        by_file: dict[str, list[Finding]] = {rel: [] for rel in self.fresh}
        for f in findings:
            if f.file in by_file:
                by_file[f.file].append(f)
        for rel, found in by_file.items():
            cache.stage_findings(rel, self.fresh[rel], self.context, found)


def intent_files(repo: Repository) -> dict[str, str]:
    """The files read through the parse cache whose every document is a SecretIntent: path -> SHA-256. A file some
    intent names as its bootstrap file is context, whatever it holds: the checks of that intent read it."""
    named = {ref.rel for ref in bootstrap_refs(repo) if ref.rel is not None}
    return {f.rel: f.digest for f in repo.files
            if f.digest is not None and f.rel not in named and f.documents
            and all(d.kind == INTENT_KIND for d in f.documents)}


def context_key(repo: Repository, intents: dict[str, str]) -> str:
    """A digest of everything a per-file check may read besides one intent file: every other file (its path,
    role and bytes), the exclusions and where the repository lies."""
    h = hashlib.sha256(f"{repo.root}\0{repo.git_root}\0".encode())
    for e in repo.exclusions:
        h.update(f"x\0{e.path}\0{e.reason}\0".encode())
    for f in repo.files:
        if f.rel in intents:
            continue
        h.update(f"f\0{f.rel}\0{f.role}\0{f.size}\0{f.is_yaml}\0".encode())
        if f.digest is not None:
            h.update(f.digest.encode())
        elif f.text is not None:
            h.update(hashlib.sha256(f.text.encode("utf-8", "surrogatepass")).digest())
        else:
            h.update(b"\0binary")
    return h.hexdigest()


def plan(repo: Repository, cache: ParseCache | None) -> Reuse | None:
    """What this run can reuse, or None (no cache, or no intent file read through it)."""
    if cache is None:
        return None
    intents = intent_files(repo)
    if not intents:
        return None
    reuse = Reuse(context_key(repo, intents))
    for rel, sha in intents.items():
        found = cache.get_findings(rel, sha, reuse.context)
        if found is None:
            reuse.fresh[rel] = sha
        else:
            reuse.cached[rel] = found
    return reuse


__all__ = ["Reuse", "context_key", "intent_files", "plan"]
