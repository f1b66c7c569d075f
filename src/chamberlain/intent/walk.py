"""The repository walk: which files of an intent repository are read, and which are left out, and why.

An intent repository often lives inside a monorepo full of other files. The walk honours what the repository
itself says is not part of it, and reports every exclusion (never a silent skip):

- ``.gitignore``: in a Git work tree, ``git ls-files --cached --others --exclude-standard`` lists the files Git
  considers part of the tree (tracked files, and untracked ones no ignore rule matches), so ``.git/info/exclude``
  and ``core.excludesFile`` count too. Outside a work tree (an exported tarball, no ``git``), the ``.gitignore``
  files found below the root are applied with gitignore semantics (deeper files win, the last matching pattern of
  a file wins); so are they when Git ignores the intent root itself (a scratch copy in an ignored directory).
- ``.chamberlainignore`` at the intent root, in gitignore syntax: what chamberlain leaves out on top of Git (it
  cannot re-include what Git ignores).
- chamberlain's own rendered output: a directory holding the marker file ``.chamberlain-render`` (written by
  ``chamberlain render``) is *rendered output*. Its files are scanned for credentials, never read as intent.
- Helm chart templates (``templates/`` next to a ``Chart.yaml``): scanned, not parsed (they are not YAML until
  Helm renders them).
- Nothing is skipped by name but the ``.git`` directory at the root (a nested ``.git`` is a reported exclusion):
  ``node_modules``, ``.venv`` and the like are walked unless an ignore rule leaves them out.
- Symbolic links are never followed (a link could lead out of the repository), special files (FIFOs, devices)
  never opened (a FIFO would block the read), directories deeper than :data:`MAX_DIR_DEPTH` not entered. The same
  holds for ignore files: one that is a symlink or special file is reported, and its patterns do not apply.

The walk is iterative (no recursion limit on deep trees) and linear in the number of directory entries. Pure
apart from reading directories and asking ``git``; what it decides is returned as data.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from chamberlain import wellknown as wk
from chamberlain.errors import UsageError

if TYPE_CHECKING:
    import pathspec

IGNORE_FILE = ".chamberlainignore"
GITIGNORE = ".gitignore"
# The one directory left out without a line in the report: Git's own database at the intent root (read for speed;
# it holds no work-tree file). Anything else (``node_modules``, ``.venv``, a nested ``.git``) is walked unless an
# ignore rule says otherwise, and then the exclusion is reported: a tool folder is exactly where a credential would
# be hidden if it were skipped by name.
SKIP_DIRS = frozenset({".git"})
MAX_DIR_DEPTH = 64
GIT_TIMEOUT = 120.0
CHART_FILE = "Chart.yaml"
CHART_TEMPLATES = "templates"

Role = Literal["source", "rendered", "template"]
Reason = Literal[
    "rendered-output", "rendered-document", "gitignore", "chamberlainignore", "symlink", "special-file",
    "too-deep", "submodule", "template", "kustomize-patch",
]

# What each reason means, for reports (one line each).
REASONS: dict[str, str] = {
    "rendered-output": "output of `chamberlain render` (marker .chamberlain-render): scanned for credentials, "
                       "not read as intent",
    "rendered-document": "a document `chamberlain render` wrote (annotation chamberlain.dev/rendered): not read as "
                         "intent",
    "gitignore": "ignored by Git (.gitignore, .git/info/exclude, core.excludesFile)",
    "chamberlainignore": f"ignored by {IGNORE_FILE}",
    "symlink": "a symbolic link: never followed, so nothing outside the repository is read",
    "special-file": "not a regular file (FIFO, socket or device): never opened",
    "too-deep": f"nested deeper than {MAX_DIR_DEPTH} directories: not entered",
    "submodule": "a Git submodule or nested repository: not part of this work tree",
    "template": "a Helm/Go template: scanned for credentials, not parsed as YAML",
    "kustomize-patch": "a kustomize patch (a partial object): scanned, not read as intent",
}

# An ignore file that is a symlink or special file is never read (see load_ignore_file): say what that means.
IGNORE_NOT_READ = "not read as an ignore file: its patterns do not apply (what it lists is validated)"


@dataclass(frozen=True, order=True)
class Exclusion:
    """A path the loader left out of intent (or read only to scan it), and why. Directories end with ``/``."""

    path: str
    reason: Reason
    line: int | None = None

    @property
    def detail(self) -> str:
        if self.reason in ("symlink", "special-file") and self.path.rsplit("/", 1)[-1] in (IGNORE_FILE, GITIGNORE):
            return f"{REASONS[self.reason]}; {IGNORE_NOT_READ}"
        return REASONS[self.reason]

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "reason": self.reason, "detail": self.detail,
                **({"line": self.line} if self.line is not None else {})}


@dataclass(frozen=True)
class WalkedFile:
    path: Path
    rel: str
    role: Role


@dataclass
class Walk:
    """What the walk found: the files to read (sorted), the exclusions, and the Git work tree it sits in."""

    files: list[WalkedFile] = field(default_factory=list)
    exclusions: list[Exclusion] = field(default_factory=list)
    git_root: Path | None = None  # None: not inside a Git work tree (or git is not installed)


# ------------------------------------------------------------------------------------------------ ignore rules


def load_ignore_file(path: Path) -> pathspec.GitIgnoreSpec | None:
    """The patterns of a gitignore-syntax file, or None when there is none. A file that cannot be read or holds a
    pattern gitignore syntax does not allow is a usage error naming the line: silently ignoring less (or more)
    than the author meant would change what is validated. A symlink or special file (FIFO, device) is not read:
    None, and the walk reports it as excluded."""
    raw = _read_regular(path)
    if raw is None:
        return None
    import pathspec  # only where an ignore file exists: its import (and the engines it probes) is start-up time
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise UsageError(f"{path}: the ignore file is not UTF-8 text") from None
    for number, text in enumerate(lines, start=1):
        try:
            pathspec.GitIgnoreSpec.from_lines([text])
        except (ValueError, TypeError) as exc:
            raise UsageError(f"{path}:{number}: not a gitignore pattern ({exc}); it decides which files "
                             "are validated, so it must be exact") from None
    return pathspec.GitIgnoreSpec.from_lines(lines)


# Never follows a link (a file outside the repository must not decide what is validated), never blocks on a FIFO.
_READ_IGNORE = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0))


def _read_regular(path: Path) -> bytes | None:
    """The bytes of the ignore file at ``path``, or None when there is none to read: absent, a symlink or a special
    file. Those are not read, so their patterns do not apply (more is validated, never less); the walk reports them
    as excluded symlinks or special files."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the ignore file ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise UsageError(f"{path}: cannot read the ignore file ({os.strerror(errno.EISDIR)})")
    if not stat.S_ISREG(mode):
        return None  # not even opened: opening a device can have effects of its own
    try:
        fd = os.open(path, _READ_IGNORE)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            return None  # became a symlink after the lstat: O_NOFOLLOW refused it
        raise UsageError(f"{path}: cannot read the ignore file ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None  # swapped after the lstat: what was opened decides
        try:
            return handle.read()
        except OSError as exc:
            raise UsageError(f"{path}: cannot read the ignore file ({exc.strerror})") from None


def _ignored(specs: Iterable[tuple[str, pathspec.GitIgnoreSpec]], rel: str, is_dir: bool) -> bool:
    """Gitignore precedence over the ``.gitignore`` files on the way to ``rel`` (deepest first): the first file
    with a matching pattern decides, and within it the last matching pattern (``!`` re-includes)."""
    for base, spec in specs:
        sub = rel[len(base) + 1:] if base else rel
        result = spec.check_file(sub + "/" if is_dir else sub)
        if result.include is not None:
            return bool(result.include)
    return False


# ------------------------------------------------------------------------------------------------ git


def _git(root: Path, git: str, *args: str) -> bytes | None:
    try:
        proc = subprocess.run([git, "-C", str(root), *args], capture_output=True, timeout=GIT_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError):
        return None  # no git, or it hung: fall back to reading .gitignore files
    return proc.stdout if proc.returncode == 0 else None


def git_root(root: Path, git: str | None = "git") -> Path | None:
    """The top of the Git work tree ``root`` lies in, or None (not a work tree, no git, ``git=None``)."""
    if git is None:
        return None
    out = _git(root, git, "rev-parse", "--is-inside-work-tree", "--show-toplevel")
    if out is None:
        return None
    lines = os.fsdecode(out).splitlines()
    if len(lines) != 2 or lines[0] != "true":
        return None
    return Path(lines[1]).resolve()


def git_listing(root: Path, git: str) -> set[str] | None:
    """Paths below ``root`` (relative to it) that Git counts as part of the work tree: tracked, or untracked and
    not ignored. Directory entries (submodules, nested repositories) end with ``/``."""
    out = _git(root, git, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", ".")
    if out is None:
        return None
    return {os.fsdecode(p) for p in out.split(b"\0") if p}


# ------------------------------------------------------------------------------------------------ the walk


def walk(root: Path, *, git: str | None = "git") -> Walk:
    """Every file under ``root`` to read, with its role, and every exclusion. ``git`` is the program asked about
    ignore rules (None: never ask, read ``.gitignore`` files instead)."""
    root = root.resolve()
    result = Walk(git_root=git_root(root, git))
    listed = None
    if result.git_root is not None and git is not None:
        # An intent root Git itself ignores (a scratch copy in an ignored directory) is not described by Git's
        # rules at all: read its own .gitignore files instead of leaving everything out.
        if _git(root, git, "check-ignore", "-q", ".") is None:
            listed = git_listing(root, git)
        else:
            result.git_root = None
    listed_dirs: set[str] = set()
    submodules: set[str] = set()
    if listed is not None:
        for listed_path in listed:
            if listed_path.endswith("/"):
                submodules.add(listed_path.rstrip("/"))
            parts = listed_path.rstrip("/").split("/")
            for i in range(1, len(parts)):
                listed_dirs.add("/".join(parts[:i]))
    own = load_ignore_file(root / IGNORE_FILE)

    # (directory, rel, depth, role, .gitignore specs deepest first (fallback mode only))
    stack: list[tuple[Path, str, int, Role, tuple[tuple[str, pathspec.GitIgnoreSpec], ...]]] = [
        (root, "", 0, "source", ())]
    while stack:
        directory, rel_dir, depth, role, specs = stack.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue  # vanished or unreadable directory: nothing in it can be read either
        names = {e.name for e in entries}
        if wk.RENDER_MARKER in names and role != "rendered":
            role = "rendered"
            result.exclusions.append(Exclusion(shown(rel_dir) + "/" if rel_dir else "./", "rendered-output"))
        if listed is None and GITIGNORE in names:
            spec = load_ignore_file(directory / GITIGNORE)
            if spec is not None:
                specs = ((rel_dir, spec), *specs)
        chart = CHART_FILE in names
        subdirs: list[tuple[Path, str, int, Role, tuple[tuple[str, pathspec.GitIgnoreSpec], ...]]] = []
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError:
                continue
            is_dir = stat.S_ISDIR(mode)
            if is_dir and entry.name in SKIP_DIRS:
                if depth == 0:
                    continue
                result.exclusions.append(Exclusion(shown(rel) + "/", "submodule"))  # a nested repository's database
                continue
            reason = _ignore_reason(rel, is_dir, listed, listed_dirs, submodules, specs, own)
            if reason is not None:
                if not (is_dir and reason == "gitignore" and _empty(entry.path)):
                    result.exclusions.append(Exclusion(shown(rel) + "/" if is_dir else shown(rel), reason))
                continue
            if stat.S_ISLNK(mode):
                result.exclusions.append(Exclusion(shown(rel), "symlink"))
            elif is_dir:
                if depth + 1 > MAX_DIR_DEPTH:
                    result.exclusions.append(Exclusion(shown(rel) + "/", "too-deep"))
                    continue
                child_role: Role = "template" if (chart and entry.name == CHART_TEMPLATES and role == "source") \
                    else role
                subdirs.append((Path(entry.path), rel, depth + 1, child_role, specs))
            elif stat.S_ISREG(mode):
                if entry.name == wk.RENDER_MARKER:
                    continue  # the marker itself: reported with its directory
                result.files.append(WalkedFile(Path(entry.path), shown(rel), role))
            else:
                result.exclusions.append(Exclusion(shown(rel), "special-file"))
        stack.extend(reversed(subdirs))  # depth first, in name order
    result.files.sort(key=lambda f: f.rel)
    result.exclusions.sort()
    return result


def _ignore_reason(
    rel: str, is_dir: bool, listed: set[str] | None, listed_dirs: set[str], submodules: set[str],
    specs: tuple[tuple[str, pathspec.GitIgnoreSpec], ...], own: pathspec.GitIgnoreSpec | None,
) -> Reason | None:
    if listed is not None:
        if rel in submodules or (is_dir and rel in listed):
            return "submodule"
        if (is_dir and rel not in listed_dirs) or (not is_dir and rel not in listed):
            return "gitignore"
    elif specs and _ignored(specs, rel, is_dir):
        return "gitignore"
    if own is not None and own.match_file(rel + "/" if is_dir else rel):
        return "chamberlainignore"
    return None


def shown(rel: str) -> str:
    """``rel`` as printable text: a name that is not UTF-8 reaches Python with surrogate escapes, which no strict
    UTF-8 output (a terminal, JSON) can write; its bytes are shown as ``\\xNN`` instead. A control character, a line
    or paragraph separator or a bidirectional override is shown as ``\\xNN``/``\\uNNNN`` too: a file name is text
    the repository's writers choose, and raw it would forge lines in every line-oriented output (findings, logs,
    the rendered CODEOWNERS). Such a name never equals a path declared in YAML, so nothing is matched against it."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        rel = rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if _UNSHOWABLE.search(rel) is None:
        return rel
    return _UNSHOWABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), rel)


# Control characters (Unicode category Cc), the line and paragraph separators (Zl, Zp), the bidirectional marks,
# embeddings, overrides and isolates that reorder what a reviewer sees ("Trojan Source"), and the surrogate escapes
# of bytes that are not UTF-8 (a name shown as \\xNN would name another file in CODEOWNERS). A character class:
# every path is searched, so this stays in C.
_UNSHOWABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069\udc80-\udcff]")


def unshowable(text: str) -> str | None:
    """The first character of ``text`` that cannot be shown as itself on one line (see :func:`shown`), else None."""
    found = _UNSHOWABLE.search(text)
    return found.group() if found else None


def _empty(path: str) -> bool:
    try:
        with os.scandir(path) as it:
            return next(it, None) is None
    except OSError:
        return True


__all__ = [
    "IGNORE_FILE",
    "MAX_DIR_DEPTH",
    "REASONS",
    "SKIP_DIRS",
    "Exclusion",
    "Reason",
    "Role",
    "Walk",
    "WalkedFile",
    "git_listing",
    "git_root",
    "load_ignore_file",
    "shown",
    "unshowable",
    "walk",
]
