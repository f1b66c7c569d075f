"""Credentials in Git history (``chamberlain validate --history``): committed, and perhaps removed since.

Removing a credential from Git does not un-leak it: every clone and fork keeps the commit. So every credential
ever committed is reported with the commit that introduced it, and the advice is to rotate it.

What is walked: every commit reachable from HEAD (its whole ancestry, merges included; other branches and tags are
not walked), oldest first in topological order (parents before children, ties by commit time), restricted to the
part of the tree below the intent root. Each distinct blob is read and scanned once, whatever the number of
commits and paths it appears under, and a tree already walked at the same path is not walked again, so the work is
linear in the total size of the distinct blobs and trees (plus the commits). A credential is reported once per
path: at the first commit (in that order) whose tree holds a blob with it there; later versions of the file that
keep the same line are not reported again.

Left out: blobs larger than :data:`~chamberlain.intent.loader.MAX_SCAN_BYTES` (as in the working tree), submodules
(commit entries in trees), symbolic links, and paths the caller's ``ignored`` predicate rejects (the wiring passes
the working tree's ``.chamberlainignore``).

The scanner is injected (``scan(path, blob) -> hits``), so this module reads Git and never judges text itself.
Git is read with dulwich (pure Python); nothing is written to the repository. No value leaves this module: a hit
carries a kind and a position, and the line digests that recognise an unchanged line across versions stay in
memory.
"""

from __future__ import annotations

import hashlib
import heapq
import re
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from dulwich.objects import S_ISGITLINK, Commit, ObjectID, Tree
from dulwich.refs import Ref

from chamberlain.errors import UsageError
from chamberlain.findings import Finding
from chamberlain.intent.loader import MAX_SCAN_BYTES
from chamberlain.intent.walk import shown

if TYPE_CHECKING:
    from dulwich.repo import Repo

RULE = "CH126"
SHORT = 12  # characters of a commit id in messages (the fingerprint keeps all 40)


class ScanHit(Protocol):
    """What the injected scanner returns per credential: its kind and 1-based position (None in a binary)."""

    @property
    def kind(self) -> str: ...

    @property
    def line(self) -> int | None: ...

    @property
    def column(self) -> int | None: ...


BlobScanner = Callable[[str, bytes], Sequence[ScanHit]]
Ignored = Callable[[str, bool], bool]  # (path below the intent root, is a directory) -> leave it out


@dataclass(frozen=True)
class HistoryHit:
    """A credential in history: the commit that introduced it at ``path`` (full hex id), the blob, kind, place."""

    commit: str
    path: str
    blob: str
    kind: str
    line: int | None
    column: int | None


@dataclass
class HistoryStats:
    """What a history scan read: for the summary line and for tests that count work."""

    commits: int = 0
    blobs_scanned: int = 0
    bytes_scanned: int = 0
    blobs_oversize: int = 0
    submodules: int = 0
    missing_commits: int = 0  # parents not in the repository: a shallow clone, whose history is cut short
    oversize_paths: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Cached:
    kind: str
    line: int | None
    column: int | None
    digest: bytes  # of the hit's line (text) or the blob id (binary): recognises the same line in a later version


def open_repository(path: str | Path) -> tuple[Repo, str]:
    """The Git repository holding ``path`` and ``path``'s place in its tree (posix, ``""`` at the top); a usage
    error (exit 2) when ``path`` is not inside a Git work tree."""
    from dulwich.errors import NotGitRepository
    from dulwich.repo import Repo

    root = Path(path).resolve()
    try:
        repo = Repo.discover(str(root))
    except NotGitRepository:
        raise UsageError(f"{path}: not inside a Git repository; --history reads the Git history of the intent "
                         "repository") from None
    top = Path(repo.path).resolve()
    rel = root.relative_to(top).as_posix() if root.is_relative_to(top) else ""
    return repo, "" if rel == "." else rel


def commits_oldest_first(repo: Repo, stats: HistoryStats | None = None) -> list[ObjectID]:
    """Every commit reachable from HEAD, parents before children (ties: older commit time, then id); empty for a
    repository without commits. A parent that is not in the repository (a shallow clone) is counted in
    ``stats.missing_commits`` and left out."""
    return _ancestry(repo, stats)[0]


def _ancestry(repo: Repo, stats: HistoryStats | None) -> tuple[list[ObjectID], dict[ObjectID, ObjectID]]:
    """:func:`commits_oldest_first`, and each commit's root tree (read once, while walking the parents)."""
    trees: dict[ObjectID, ObjectID] = {}
    head = _head(repo)
    if head is None:
        return [], trees
    try:
        repo[head]
    except KeyError:  # a shallow clone still has the commit HEAD names: its objects are gone
        raise UsageError(f"{repo.path}: the Git history cannot be read: the commit HEAD names is not in the "
                         "repository (its objects are missing)") from None
    parents: dict[ObjectID, list[ObjectID]] = {}
    times: dict[ObjectID, int] = {}
    missing: set[ObjectID] = set()
    stack = [head]
    while stack:  # iterative: a long history never hits the recursion limit
        sha = stack.pop()
        if sha in parents or sha in missing:
            continue
        try:
            commit = repo[sha]
        except KeyError:
            missing.add(sha)
            continue
        if not isinstance(commit, Commit):
            continue
        parents[sha] = list(commit.parents)
        times[sha] = commit.commit_time
        trees[sha] = commit.tree
        stack.extend(p for p in parents[sha] if p not in parents)
    if stats is not None:
        stats.missing_commits = len(missing)
    parents = {sha: [p for p in ps if p in parents] for sha, ps in parents.items()}
    children: dict[ObjectID, list[ObjectID]] = {sha: [] for sha in parents}
    waiting = {sha: len(set(ps)) for sha, ps in parents.items()}
    for sha, ps in parents.items():
        for p in set(ps):
            children[p].append(sha)
    ready = [(times[sha], sha) for sha, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order: list[ObjectID] = []
    while ready:
        _, sha = heapq.heappop(ready)
        order.append(sha)
        for child in children[sha]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (times[child], child))
    return order, trees


_COMMIT_ID = re.compile(rb"[0-9a-f]{40}|[0-9a-f]{64}")
# What HEAD may name, conservatively (git check-ref-format's rules, roughly): refs/..., no "..", no control
# character, space or ~^:?*[\, no part starting with "." or ending with ".lock".
_REF_NAME = re.compile(rb"refs/(?!.*\.\.)(?!.*(?:^|/)\.)(?!.*\.lock(?:/|$))[^\x00-\x20\x7f~^:?*\[\\]+(?<!/)")


def _head(repo: Repo) -> ObjectID | None:
    """The commit HEAD names; None for a repository without commits (HEAD names a branch not made yet). A usage
    error when HEAD is missing or damaged: a history read as empty would pass as clean."""
    raw = repo.refs.read_ref(Ref(b"HEAD"))
    if raw is None:
        raise UsageError(f"{repo.path}: the Git history cannot be read: no HEAD in {repo.controldir()} (a .git "
                         "file naming a directory that is gone, or a damaged repository)")
    from dulwich.refs import SymrefLoop

    if raw.startswith(b"ref: ") and not _REF_NAME.fullmatch(raw[5:].strip()):
        raise UsageError(f"{repo.path}: the Git history cannot be read: HEAD names no valid branch")
    try:
        head: bytes = repo.refs[Ref(b"HEAD")]
    except SymrefLoop:
        raise UsageError(f"{repo.path}: the Git history cannot be read: HEAD's refs point at each other") from None
    except KeyError:
        if raw.startswith(b"ref: "):
            return None  # a branch not made yet: no commits
        head = b""
    if not _COMMIT_ID.fullmatch(head):
        raise UsageError(f"{repo.path}: the Git history cannot be read: HEAD is neither a commit id nor a ref")
    return ObjectID(head)


def _subtree(repo: Repo, tree: ObjectID, prefix: str) -> ObjectID | None:
    """The id of the tree at ``prefix`` below ``tree`` (None: not there in this commit)."""
    for part in prefix.split("/") if prefix else ():
        entries = repo[tree]
        if not isinstance(entries, Tree):
            return None
        try:
            mode, sha = entries[part.encode("utf-8", "surrogateescape")]
        except KeyError:
            return None
        if not stat.S_ISDIR(mode):
            return None
        tree = sha
    return tree


def _digests(raw: bytes, blob: ObjectID, hits: Sequence[ScanHit]) -> list[_Cached]:
    lines: list[bytes] | None = None
    cached = []
    for hit in hits:
        digest: bytes = blob
        if hit.line is not None:
            if lines is None:
                lines = raw.split(b"\n")
            text = lines[hit.line - 1] if 0 < hit.line <= len(lines) else b""
            digest = hashlib.blake2b(text, digest_size=16).digest()
        cached.append(_Cached(hit.kind, hit.line, hit.column, digest))
    return cached


def scan_history(
    repo_path: str | Path,
    scan: BlobScanner,
    *,
    ignored: Ignored | None = None,
    max_blob_bytes: int = MAX_SCAN_BYTES,
    stats: HistoryStats | None = None,
) -> Iterator[HistoryHit]:
    """Every credential committed below ``repo_path`` in HEAD's ancestry, at the commit that introduced it
    (module docstring). Paths are relative to ``repo_path``, as the working tree's findings are."""
    repo, prefix = open_repository(repo_path)
    stats = stats if stats is not None else HistoryStats()
    try:
        yield from _scan(repo, prefix, scan, ignored, max_blob_bytes, stats)
    finally:
        repo.close()


def _scan(repo: Repo, prefix: str, scan: BlobScanner, ignored: Ignored | None, max_blob_bytes: int,
          stats: HistoryStats) -> Iterator[HistoryHit]:
    # (directory, name, object id) already seen: a blob there is attributed, a subtree there holds nothing new.
    # Keyed on raw bytes so an entry seen before costs one set lookup, whatever the width of its tree.
    seen: set[tuple[bytes, bytes, bytes]] = set()
    results: dict[bytes, list[_Cached]] = {}  # blob id -> its hits: each blob is scanned once
    reported: set[tuple[str, str, bytes]] = set()  # (path, kind, line digest)
    order, trees = _ancestry(repo, stats)
    for commit_id in order:
        stats.commits += 1
        root = _subtree(repo, trees[commit_id], prefix)
        if root is None:
            continue
        commit_hex = commit_id.decode("ascii")
        stack: list[tuple[bytes, ObjectID]] = [(b"", root)]
        while stack:
            base, tree_id = stack.pop()
            tree = repo[tree_id]
            if not isinstance(tree, Tree):
                continue
            for name, mode, sha in tree.iteritems():
                key = (base, name, sha)
                if key in seen:
                    continue
                seen.add(key)
                if S_ISGITLINK(mode):
                    stats.submodules += 1
                    continue
                raw_path = base + b"/" + name if base else name
                path = shown(raw_path.decode("utf-8", "surrogateescape"))
                is_dir = stat.S_ISDIR(mode)
                if ignored is not None and ignored(path, is_dir):
                    continue
                if is_dir:
                    stack.append((raw_path, sha))
                    continue
                if not stat.S_ISREG(mode):
                    continue  # a symbolic link's blob is its target, not content
                cached = results.get(sha)
                if cached is None:
                    cached = results[sha] = _scan_blob(repo, path, sha, scan, max_blob_bytes, stats)
                for hit in cached:
                    found = (path, hit.kind, hit.digest)
                    if found in reported:
                        continue
                    reported.add(found)
                    yield HistoryHit(commit_hex, path, sha.decode("ascii"), hit.kind, hit.line, hit.column)


def _scan_blob(repo: Repo, path: str, blob: ObjectID, scan: BlobScanner, max_blob_bytes: int,
               stats: HistoryStats) -> list[_Cached]:
    _, raw = repo.object_store.get_raw(blob)
    if len(raw) > max_blob_bytes:
        stats.blobs_oversize += 1
        stats.oversize_paths.append(path)
        return []
    stats.blobs_scanned += 1
    stats.bytes_scanned += len(raw)
    hits = scan(path, raw)
    return _digests(raw, blob, hits) if hits else []


def to_finding(hit: HistoryHit) -> Finding:
    """CH126 for a credential in history; the commit's full id is the finding's object (its fingerprint uses it),
    the kind its subject. Never the value."""
    where = f"{hit.path}:{hit.line}" if hit.line else hit.path
    return Finding(
        hit.path, hit.line, RULE,
        f"commit {hit.commit[:SHORT]} added what looks like a credential [{hit.kind}] at {where}; rotate it: "
        f"removing it from Git does not un-leak it (value not shown)",
        column=hit.column, object=hit.commit, subject=hit.kind,
    )
