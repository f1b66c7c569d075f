"""The parse cache: what reading one file's YAML produced, kept outside the repository, keyed by the file's bytes.

A rerun over a repository that barely changed parses only the files that changed; every other file's documents
(data, spans, lines) and its parse findings come from an entry keyed by the SHA-256 of its bytes and a *code key*
(chamberlain's version, the loader's own source, PyYAML's and rapidyaml's versions: a new release, or an edited
loader, never reads an older entry). Only the parse is cached: every document is still validated against its model
and every check, cross-file or not, still runs.

An entry is plain JSON (reading one cannot execute anything, unlike pickle), checked field by field before use;
a corrupt, truncated, foreign (another key) or malformed entry is ignored and overwritten. Entries are written
atomically (a temporary file in the same directory, then ``os.replace``), so concurrent runs never see half an
entry and the last writer of identical content wins. The directory is created private (0700); one not owned by
this user, or writable by others, is not used at all. Its size is bounded (:data:`MAX_BYTES`): after a run that
wrote entries and passed the bound, entries are removed down to three quarters of it, an older code's first, then
the oldest (counted again only when a tally of the bytes written since the last count says so, or the count is a
day old).

Only documents whose data JSON carries exactly are cached (strings, integers, floats, booleans, null, lists and
string-keyed mappings); a file with a date, a set, binary or a non-string key is parsed every time.

A parse is written only after the checks ran and found no credential in the file (:meth:`ParseCache.stage`,
:meth:`ParseCache.commit`): a value pasted into an intent never leaves the repository for the cache.

Beside the parse, an intent file's credential-scan hits are kept (:meth:`ParseCache.get_hits`): they depend only on
the file's bytes and the scanner, so they live under a key of their own that also covers the scanner's sources.
A hit is a kind, a fixed label, a line and a column: never the text it matched.

And the findings the per-file checks made on an intent file (:meth:`ParseCache.get_findings`, see
:mod:`chamberlain.checks.incremental`): keyed by the file's path and bytes and by a *context key* that covers every
other input those checks read, under a code key covering every source file of the package (a per-file check may
call into any of it). Staged and committed like a parse: never for a file a credential finding points at.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import yaml

from chamberlain import __version__
from chamberlain.clock import Clock
from chamberlain.findings import RULES, Finding
from chamberlain.intent import fastyaml

FORMAT = 1
MAX_BYTES = 256 * 1024 * 1024  # the whole cache directory, every code key included
LOW_WATER = 0.75  # a prune leaves a quarter of the bound free: many runs write before the next count
_HEX64 = re.compile(r"[0-9a-f]{64}")
_RECORD_NAME = re.compile(r"[0-9a-f]{32}(?:-delta)?")
_RULE = re.compile(r"CH\d{3}")
_SOURCES = ("intent/loader.py", "intent/fastyaml.py", "intent/cache.py", "safeyaml.py")
# The credential scan of one file (checks/secrets.py scan_file over the parsed documents): every module it reads.
_SCAN_SOURCES = ("checks/secrets.py", "scan", "wellknown.py")
_KIND = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
# The per-file checks' findings: a check may read any module of the package (models, paths, tenancy rules).
_FINDINGS_SOURCES = (".",)
# The tally of the cache's size (see ParseCache.prune): "<bytes> <unix time of the last full count>".
TALLY = "tally"
TALLY_TRUSTED = 24 * 3600
_TALLY_LINE = re.compile(r"(\d{1,15}) (\d{1,12})\n")


@dataclass(frozen=True)
class CachedDoc:
    index: int
    start_line: int
    end_line: int
    start: int
    end: int
    data: Any


@dataclass(frozen=True)
class Entry:
    """One file's parse: its documents, the findings parsing raised (line, rule, message, column) and whether it
    turned out to be a template (parsed with errors and has template actions: no documents, an exclusion)."""

    docs: tuple[CachedDoc, ...]
    problems: tuple[tuple[int | None, str, str, int | None], ...]
    template: bool


def _code_key(extra: tuple[str, ...] = ()) -> str:
    """What the cached result depends on besides the bytes: this code and the parsers it uses (and the modules
    named in ``extra``: a file, or every ``.py`` file under a directory)."""
    h = hashlib.sha256(f"{FORMAT}:{__version__}".encode())
    base = Path(__file__).resolve().parents[1]
    for rel in _SOURCES + extra:
        path = base / rel
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            try:
                h.update(file.relative_to(base).as_posix().encode() + b"\0" + file.read_bytes())
            except (OSError, ValueError):  # pragma: no cover - an installed package always has its sources
                h.update(b"missing:" + rel.encode())
    h.update(f"PyYAML={yaml.__version__};rapidyaml={fastyaml.parser_version()};"
             f"pydantic={pydantic.VERSION};python={sys.version}".encode())
    return h.hexdigest()[:32]


def _replace_file(directory: Path, name: str, data: bytes) -> bool:
    """Write ``directory/name`` atomically (a temporary file beside it, then a rename): concurrent runs never see
    half a file, and the last writer wins. False when it could not be written."""
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, directory / name)
        tmp = None
        return True
    except OSError:
        return False
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


class ParseCache:
    """A directory of entries; every method swallows file-system errors (the cache is an optimisation: when it
    cannot be read or written, files are parsed as without it)."""

    def __init__(self, directory: Path, *, max_bytes: int = MAX_BYTES, clock: Clock | None = None) -> None:
        self.root = directory
        self.max_bytes = max_bytes
        self._clock = clock  # dates the tally (see prune); without one, every prune counts
        self.key = _code_key()
        self.dir = directory / self.key
        self.hits = 0
        self.misses = 0
        self.written = 0
        self.written_bytes = 0
        self._usable: bool | None = None
        self._scan_key: str | None = None
        self._scan_usable: bool | None = None
        self._staged: dict[str, tuple[str, Entry]] = {}
        self._findings_key: str | None = None
        self._findings_usable: bool | None = None
        self._render_usable: bool | None = None
        self._staged_findings: dict[str, tuple[str, str, list[Finding]]] = {}

    @property
    def scan_dir(self) -> Path:
        if self._scan_key is None:
            self._scan_key = "scan-" + _code_key(_SCAN_SOURCES)
        return self.root / self._scan_key

    @property
    def findings_dir(self) -> Path:
        return self.root / ("findings-" + self._package_key())

    @property
    def render_dir(self) -> Path:
        """Where render records are (:mod:`chamberlain.render.incremental`): under a key of the whole package."""
        return self.root / ("render-" + self._package_key())

    def _package_key(self) -> str:
        if self._findings_key is None:  # hashing the package's sources costs ~10 ms: only when findings are used
            self._findings_key = _code_key(_FINDINGS_SOURCES)
        return self._findings_key

    # ---------------------------------------------------------------------------------------------- reading

    def get(self, sha: str, text_length: int) -> Entry | None:
        """The entry for a file with these bytes (``sha``), or None (absent, unusable, or not valid)."""
        if not self._ready(create=False):
            self.misses += 1
            return None
        try:
            with open(self.dir / f"{sha}.json", "rb") as fh:
                raw = json.loads(fh.read())
            entry = _entry(raw, sha, self.key, text_length)
        except (OSError, ValueError, RecursionError, TypeError, KeyError):
            entry = None
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def get_hits(self, sha: str) -> list[tuple[str, str, int | None, int | None]] | None:
        """The credential-scan hits (kind, label, line, column) of an intent file with these bytes, or None."""
        if not _HEX64.fullmatch(sha) or not self._scan_ready(create=False):
            return None
        raw = _read_json(self.scan_dir / f"{sha}.json")
        return None if raw is None else _hits(raw, sha, self.scan_dir.name)

    def get_findings(self, rel: str, sha: str, context: str) -> list[Finding] | None:
        """The per-file checks' findings on file ``rel`` with these bytes in this context, or None."""
        if not (_HEX64.fullmatch(sha) and _HEX64.fullmatch(context)) or not self._sub_ready(create=False):
            return None
        raw = _read_json(self.findings_dir / f"{_findings_name(rel, sha, context)}.json")
        return None if raw is None else _findings(raw, rel, sha, context, self.findings_dir.name)

    def get_record(self, name: str) -> Any:
        """A render record's JSON (``name``: :data:`_HEX64` short form), or None; its caller checks its shape."""
        if not _RECORD_NAME.fullmatch(name) or not self._render_ready(create=False):
            return None
        return _read_json(self.render_dir / f"{name}.json")

    def has_record(self, name: str) -> bool:
        if not _RECORD_NAME.fullmatch(name) or not self._render_ready(create=False):
            return False
        return (self.render_dir / f"{name}.json").is_file()

    def put_record(self, name: str, text: str) -> None:
        if _RECORD_NAME.fullmatch(name) and self._render_ready(create=True):
            self._write(self.render_dir, name, text)

    def drop_record(self, name: str) -> None:
        if _RECORD_NAME.fullmatch(name) and self._render_ready(create=False):
            with contextlib.suppress(OSError):
                (self.render_dir / f"{name}.json").unlink()

    # ---------------------------------------------------------------------------------------------- writing

    def stage(self, rel: str, sha: str, entry: Entry) -> None:
        """Keep the entry of file ``rel`` until :meth:`commit`: it is written only once the checks found no
        credential in that file (a value pasted into an intent must not be copied outside the repository)."""
        self._staged[rel] = (sha, entry)

    def stage_findings(self, rel: str, sha: str, context: str, findings: list[Finding]) -> None:
        """Keep the per-file checks' findings on file ``rel`` until :meth:`commit` (as :meth:`stage`)."""
        self._staged_findings[rel] = (sha, context, findings)

    def commit(self, refused: set[str]) -> None:
        """Write the staged entries, except those of the files in ``refused`` (a credential finding is on them)."""
        staged, self._staged = self._staged, {}
        for rel, (sha, entry) in staged.items():
            if rel not in refused:
                self.put(sha, entry)
        staged_findings, self._staged_findings = self._staged_findings, {}
        for rel, (sha, context, findings) in staged_findings.items():
            if rel not in refused:
                self._put_findings(rel, sha, context, findings)

    def _put_findings(self, rel: str, sha: str, context: str, findings: list[Finding]) -> None:
        directory = self.findings_dir
        body = {"format": FORMAT, "key": directory.name, "file": rel, "sha256": sha, "context": context,
                "findings": [[f.line, f.rule, f.message, f.column, f.object, f.subject] for f in findings]}
        if any(f.file != rel for f in findings) or _findings(body, rel, sha, context, directory.name) is None:
            return  # not the shape get_findings accepts: never write what would be refused
        if not (_HEX64.fullmatch(sha) and _HEX64.fullmatch(context)) or not self._sub_ready(create=True):
            return
        self._write(directory, _findings_name(rel, sha, context),
                    json.dumps(body, ensure_ascii=False, separators=(",", ":")))

    def put_hits(self, sha: str, hits: list[tuple[str, str, int | None, int | None]]) -> None:
        directory = self.scan_dir
        body = {"format": FORMAT, "key": directory.name, "sha256": sha, "hits": [list(h) for h in hits]}
        if _hits(body, sha, directory.name) is None or not self._scan_ready(create=True):
            return  # not the shape get_hits accepts (never write what would be refused), or no usable directory
        self._write(directory, sha, json.dumps(body, ensure_ascii=False, separators=(",", ":")))

    def put(self, sha: str, entry: Entry) -> None:
        if not self._ready(create=True):
            return
        body = {"format": FORMAT, "key": self.key, "sha256": sha, "template": entry.template,
                "problems": [list(p) for p in entry.problems],
                "docs": [[d.index, d.start_line, d.end_line, d.start, d.end, d.data] for d in entry.docs]}
        try:
            text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=True)
        except (TypeError, ValueError, RecursionError):
            return  # not plain data after all: parse this file every time
        self._write(self.dir, sha, text)

    def _write(self, directory: Path, sha: str, text: str) -> None:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (from a name that was not UTF-8): not cached
            return
        if _replace_file(directory, f"{sha}.json", data):
            self.written += 1
            self.written_bytes += len(data)

    def prune(self) -> None:
        """Remove the oldest entries (every code key) past :attr:`max_bytes`; only after a run that wrote some.

        Counting means a stat of every entry (0.2 s at 16k entries, a fifth of a rerun over 10k intents), so a
        *tally* decides when to count: the bytes found at the last count plus what every run wrote since. Runs at
        the same moment can each miss the other's bytes, so a tally is trusted for a day at most
        (:data:`TALLY_TRUSTED`) and every entry is counted again once it says the bound is passed. A count that
        finds the bound passed removes down to :data:`LOW_WATER` of it: removing just enough would leave the cache
        full, and every later run that writes would count again."""
        if not self.written or not self._ready(create=False):
            return
        now = self._clock.now().timestamp() if self._clock is not None else None
        tally = self._tally(now) if now is not None else None
        if tally is not None and tally[0] + self.written_bytes <= self.max_bytes:
            self._set_tally(tally[0] + self.written_bytes, tally[1])
            return
        total = self._remove_oldest()
        if total is not None and now is not None:
            self._set_tally(total, now)

    def _remove_oldest(self) -> int | None:
        """Count every entry and, past the bound, remove entries down to :data:`LOW_WATER` of it: first those of
        other code keys (an older chamberlain's, or another install's sharing this cache), then this code's oldest.
        The bytes left (None: could not count)."""
        current = {self.dir.name, self.scan_dir.name, self.findings_dir.name, self.render_dir.name}
        files: list[tuple[bool, float, int, Path]] = []
        try:
            for sub in os.scandir(self.root):
                if not sub.is_dir(follow_symlinks=False):
                    continue
                mine = sub.name in current
                for item in os.scandir(sub.path):
                    if item.is_file(follow_symlinks=False):
                        st = item.stat(follow_symlinks=False)
                        files.append((mine, st.st_mtime, st.st_size, Path(item.path)))
        except OSError:
            return None
        total = sum(f[2] for f in files)
        if total <= self.max_bytes:
            return total
        target = int(self.max_bytes * LOW_WATER)
        for _, _, size, path in sorted(files, key=lambda f: (f[0], f[1])):
            if total <= target:
                break
            try:
                path.unlink()
            except FileNotFoundError:  # another run's prune took it: gone all the same
                pass
            except OSError:
                continue
            total -= size
        return total

    def _tally(self, now: float) -> tuple[int, float] | None:
        """The tally (bytes, when last counted), or None when there is none to trust: missing, not a plain file,
        malformed, or counted more than a day ago (or in the future)."""
        path = self.root / TALLY
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    return None
                raw = os.read(fd, 64)
            finally:
                os.close(fd)
        except OSError:
            return None
        found = _TALLY_LINE.fullmatch(raw.decode("ascii", "replace"))
        if found is None:
            return None
        counted = int(found[2])
        if not 0 <= now - counted <= TALLY_TRUSTED:
            return None
        return int(found[1]), float(counted)

    def _set_tally(self, total: int, counted: float) -> None:
        _replace_file(self.root, TALLY, f"{max(total, 0)} {int(counted)}\n".encode("ascii"))

    # ---------------------------------------------------------------------------------------------- safety

    def _scan_ready(self, *, create: bool) -> bool:
        """:meth:`_ready`, and the scan hits' own directory private too (created 0700 on the first write)."""
        if self._scan_usable is not None and (self._scan_usable or not create):
            return self._scan_usable
        self._scan_usable = self._private_subdirectory(self.scan_dir, create=create)
        return self._scan_usable

    def _sub_ready(self, *, create: bool) -> bool:
        """:meth:`_scan_ready` for the findings' directory."""
        if self._findings_usable is not None and (self._findings_usable or not create):
            return self._findings_usable
        self._findings_usable = self._private_subdirectory(self.findings_dir, create=create)
        return self._findings_usable

    def _render_ready(self, *, create: bool) -> bool:
        """:meth:`_scan_ready` for the render records' directory."""
        if self._render_usable is not None and (self._render_usable or not create):
            return self._render_usable
        self._render_usable = self._private_subdirectory(self.render_dir, create=create)
        return self._render_usable

    def _private_subdirectory(self, directory: Path, *, create: bool) -> bool:
        if not self._ready(create=create):
            return False
        try:
            if create:
                directory.mkdir(mode=0o700, exist_ok=True)
            return _private(directory)
        except OSError:
            return False

    def _ready(self, *, create: bool) -> bool:
        """Is the directory this user's own and private? Created (0700) on the first write."""
        if self._usable is not None and (self._usable or not create):
            return self._usable
        try:
            if create:
                self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            if _private(self.root) and create:
                self.dir.mkdir(mode=0o700, exist_ok=True)
            self._usable = _private(self.root) and _private(self.dir) and _fixed_ancestry(self.root)
        except OSError:
            self._usable = False
        return self._usable


def _read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when it cannot be read or parsed (an entry is then recomputed)."""
    try:
        with open(path, "rb") as fh:
            return json.loads(fh.read())
    except (OSError, ValueError, RecursionError):
        return None


def _private(path: Path) -> bool:
    st = path.lstat()  # a symbolic link is not followed: an entry's directory must be a real one
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _fixed_ancestry(path: Path) -> bool:
    """No one else can swap the cache for a directory of theirs: every ancestor is owned by this user or root, and
    one that others may write to has the sticky bit (like /tmp), so only its owner can rename what is in it. A
    parent another user controls could otherwise replace the checked directory with a link to forged entries
    between the check and the reads."""
    uid = os.getuid()
    for parent in path.absolute().parents:
        st = parent.stat()
        if st.st_uid not in (uid, 0):
            return False
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
            return False
    return True


def _entry(raw: Any, sha: str, key: str, text_length: int) -> Entry | None:
    """``raw`` as an Entry when every field has the shape put() writes and fits a text of ``text_length``."""
    if not (isinstance(raw, dict) and raw.get("format") == FORMAT and raw.get("key") == key
            and raw.get("sha256") == sha and _HEX64.fullmatch(sha) and isinstance(raw.get("template"), bool)
            and isinstance(raw.get("problems"), list) and isinstance(raw.get("docs"), list)):
        return None
    problems: list[tuple[int | None, str, str, int | None]] = []
    for p in raw["problems"]:
        if not (isinstance(p, list) and len(p) == 4 and (p[0] is None or _int(p[0]))
                and isinstance(p[1], str) and _RULE.fullmatch(p[1]) and isinstance(p[2], str)
                and (p[3] is None or _int(p[3]))):
            return None
        problems.append((p[0], p[1], p[2], p[3]))
    docs: list[CachedDoc] = []
    for d in raw["docs"]:  # 10k documents at a time: exact type tests (json gives int, never bool, for 1)
        if not (type(d) is list and len(d) == 6):
            return None
        index, start_line, end_line, start, end, data = d
        if not (type(index) is int and type(start_line) is int and type(end_line) is int and type(start) is int
                and type(end) is int):
            return None
        if not (0 <= start <= end <= text_length and 1 <= start_line <= end_line and index >= 0):
            return None
        docs.append(CachedDoc(index, start_line, end_line, start, end, data))
    return Entry(tuple(docs), tuple(problems), raw["template"])


def _hits(raw: Any, sha: str, key: str) -> list[tuple[str, str, int | None, int | None]] | None:
    """``raw`` as scan hits when it has the shape put_hits() writes: a kind (a short slug), a label, and a line and
    column that are positive integers or null."""
    if not (isinstance(raw, dict) and raw.get("format") == FORMAT and raw.get("key") == key
            and raw.get("sha256") == sha and isinstance(raw.get("hits"), list)):
        return None
    hits: list[tuple[str, str, int | None, int | None]] = []
    for h in raw["hits"]:
        if not (isinstance(h, list) and len(h) == 4 and isinstance(h[0], str) and _KIND.fullmatch(h[0])
                and isinstance(h[1], str) and all(v is None or (_int(v) and v >= 0) for v in h[2:])):
            return None
        hits.append((h[0], h[1], h[2], h[3]))
    return hits


def _findings_name(rel: str, sha: str, context: str) -> str:
    return hashlib.sha256(f"{rel}\0{sha}\0{context}".encode()).hexdigest()


def _findings(raw: Any, rel: str, sha: str, context: str, key: str) -> list[Finding] | None:
    """``raw`` as findings on file ``rel`` when it has the shape _put_findings() writes: a line and column that are
    non-negative integers or null, a known rule, a message, and an object and subject that are strings or null."""
    if not (isinstance(raw, dict) and raw.get("format") == FORMAT and raw.get("key") == key
            and raw.get("file") == rel and raw.get("sha256") == sha and raw.get("context") == context
            and isinstance(raw.get("findings"), list)):
        return None
    found: list[Finding] = []
    for f in raw["findings"]:
        if not (isinstance(f, list) and len(f) == 6 and isinstance(f[1], str) and f[1] in RULES
                and isinstance(f[2], str) and all(v is None or (_int(v) and v >= 0) for v in (f[0], f[3]))
                and all(v is None or isinstance(v, str) for v in f[4:])):
            return None
        found.append(Finding(rel, f[0], f[1], f[2], column=f[3], object=f[4], subject=f[5]))
    return found


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def json_plain(data: Any) -> bool:
    """Does JSON carry ``data`` exactly (no date, set, bytes, tuple or non-string key)?"""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if not all(type(k) is str for k in item):
                return False
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif not (item is None or type(item) in (str, int, float, bool)):
            return False
    return True


__all__ = ["CachedDoc", "Entry", "ParseCache", "digest", "json_plain"]
