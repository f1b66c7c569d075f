"""Deterministic GitOps output of an intent repository (``chamberlain render``).

Belongs here: turning a repository that validated clean into the files a GitOps controller applies — the CRDs
and intents as custom resources, the ESO objects that materialize (ExternalSecret) and publish (PushSecret)
secrets, their ServiceAccounts and SecretStores, Argo CD sync waves — and the Vault configuration bundle
(mounts, policies, Kubernetes auth roles) a later ``authority configure`` applies, and the decryption layer
(bootstrap Secrets still SOPS-encrypted, a KSOPS generator, Flux Kustomizations; :mod:`.bootstrap`). Not here:
validation (:mod:`chamberlain.checks`), talking to Vault or Kubernetes, and decrypting anything.

The output is byte-identical across runs and machines: every collection is sorted, keys are sorted, there are no
timestamps, no absolute paths and only ``\\n`` line endings. :func:`render_repository` is pure;
:func:`write_tree` is the only function that touches the disk. The directory layout and sync-wave order are
documented in :mod:`chamberlain.render.layout`.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from chamberlain import wellknown as wk
from chamberlain.errors import UsageError
from chamberlain.intent.loader import Repository, gc_paused
from chamberlain.render.topology import RenderError, build_topology

if TYPE_CHECKING:
    from collections.abc import Callable

    from chamberlain.render.layout import ChildShare, ClaimKey, Piece, Reuse
    from chamberlain.render.staging import Stage, Staged
    from chamberlain.render.topology import PieceName, Topology

__all__ = [
    "MARKER",
    "RenderAhead",
    "RenderError",
    "RenderedTree",
    "Staleness",
    "WriteResult",
    "compare_output",
    "read_output",
    "render_repository",
    "stale_paths",
    "start_render",
    "write_tree",
]

MARKER = wk.RENDER_MARKER
_MARKER_HEADER = (
    "# This directory is written by `chamberlain render`; it removes the files listed below when they are no\n"
    "# longer rendered. Do not edit files here: change the intent repository and render again.\n"
)


@dataclass(frozen=True)
class RenderedTree:
    """The rendered files: posix path relative to the output directory -> text. A render also says which files
    make up which piece (:class:`.layout.Piece`), every object claimed and the topology it was built from (what
    :mod:`.incremental` records)."""

    files: Mapping[str, str]
    pieces: Mapping[PieceName, Piece] = field(default_factory=dict)
    claims: Mapping[ClaimKey, str] = field(default_factory=dict)
    topology: Topology | None = None

    def paths(self) -> list[str]:
        return sorted(self.files)

    def __getitem__(self, path: str) -> str:
        return self.files[path]

    def __contains__(self, path: object) -> bool:
        return path in self.files

    def __len__(self) -> int:
        return len(self.files)


@dataclass(frozen=True)
class WriteResult:
    written: int
    unchanged: int
    removed: int


# Below this many intents a render takes a few tenths of a second at most: a child process would not pay off.
PARALLEL_MIN_INTENTS = 1000


def render_repository(repo: Repository, *, parallel: bool = False, ahead: RenderAhead | None = None,
                      reuse: Callable[[Topology], Reuse] | None = None) -> RenderedTree:
    """Render a repository that validated clean. Raises :class:`RenderError` when it cannot be rendered.

    ``parallel``: a large repository's clusters' files and Vault bundle are built in a forked child process
    meanwhile, when :func:`chamberlain.render.forked.usable` says forking is safe (a command-line process; the
    output is the same either way). ``ahead``: that share already started by :func:`start_render` (closed here).
    ``reuse``: given the topology, the pieces not to build (:mod:`.incremental`; their claims are not checked
    either); the tree then lacks their files."""
    platform = repo.platform
    if platform is None:
        if ahead is not None:
            ahead.close()
        raise RenderError(
            f"cannot render: the repository needs exactly one Platform (found {len(repo.platforms)})"
        )
    # Imported here: ``validate`` imports this package for render's own refusals (render.preflight) and never
    # needs the writers (a tenth of a second of start-up).
    from chamberlain.render.bootstrap import collect as collect_bootstrap
    from chamberlain.render.codeowners import FILENAME as CODEOWNERS_FILE
    from chamberlain.render.codeowners import codeowners
    from chamberlain.render.forked import usable
    from chamberlain.render.layout import Reuse, build

    policies = [p.obj for p in repo.policy_index().values()]
    intents = [i.obj for i in repo.intent_index().values()]
    with gc_paused():  # a bulk build of acyclic objects; see chamberlain.intent.loader.gc_paused
        topo = build_topology(platform, policies, intents)
        fork = ahead is None and reuse is None and parallel and len(intents) >= PARALLEL_MIN_INTENTS and usable()
        built = build(topo, collect_bootstrap(repo), fork=fork, helper=ahead,
                      reuse=reuse(topo) if reuse is not None else Reuse())
    files = built.files
    owners_fragment = codeowners(repo)
    if owners_fragment is not None:
        files[CODEOWNERS_FILE] = owners_fragment
    return RenderedTree({path: files[path] for path in sorted(files)}, built.pieces, built.claims, topo)


class RenderAhead:
    """The child's share of a render (:func:`chamberlain.render.layout.child_share`), started in a forked child
    before the repository's checks are done (:func:`start_render`). Once they passed, :meth:`stage_into` lets the
    child write the Vault bundle to a stage (:mod:`.staging`); :func:`render_repository` takes the share and
    :meth:`close` reaps the child; :meth:`finish` also removes the stage when :func:`write_tree` did not move it into
    place (``staged``)."""

    def __init__(self, repo: Repository, *, stage: bool) -> None:
        from chamberlain.render.layout import fork_child_share

        self._stage: Stage | None = None
        self._discarded = False
        self._staged_paths: frozenset[str] | None = None
        self._forked = fork_child_share(lambda: (_child_share(repo), None), then=_write_stage if stage else None)

    def stage_into(self, out_dir: Path) -> None:
        """The checks passed: when ``out_dir`` is new or empty, make a stage there and let the child write the
        bundle into it while the caller builds the rest."""
        from chamberlain.render.staging import Stage

        self._stage = Stage.create(Path(out_dir))
        self._forked.go(self._stage)

    def result(self) -> ChildShare:
        share, self._staged_paths = self._forked.result()
        if self._staged_paths is None and self._stage is not None:
            self._stage.discard()  # not staged (the child failed, died or could not): write_tree writes it all
            self._stage = None
        return share

    @property
    def staged(self) -> Staged | None:
        """The bundle as the child wrote it to the stage, once :meth:`result` handed over a share that was staged."""
        from chamberlain.render.staging import Staged

        if self._stage is None or self._staged_paths is None:
            return None
        return Staged(self._stage, self._staged_paths)

    def close(self) -> None:
        self._forked.close()

    def finish(self) -> None:
        """Reap the child; remove the stage unless it was moved into place (refused, failed or not used)."""
        self.close()
        if self._stage is not None and not self._discarded:
            self._discarded = True  # once: discarding closes the stage's descriptors
            self._stage.discard()


def start_render(repo: Repository, *, stage: bool = False) -> RenderAhead | None:
    """Start building the child's share of ``repo``'s render in a forked child now, while the caller checks the
    repository: at 10k intents the checks and that share take about as long, so ``chamberlain render`` then waits
    for neither. ``stage``: the caller will write the render (:meth:`RenderAhead.stage_into` once the checks
    passed). Hand the result to :func:`render_repository` when the checks pass and to :func:`write_tree` as
    ``staged``; call :meth:`RenderAhead.finish` in the end, whatever happened.

    Only the child ever works on a repository not yet known to be valid; it writes nothing before the checks passed,
    and a finished child is killed: whatever bad input makes it do (raise, loop) never reaches the caller, and the
    parent uses its share only when it was built without an error (else it builds the share itself). None when a
    child cannot help (no single Platform, fewer than :data:`PARALLEL_MIN_INTENTS` intents, or
    :func:`chamberlain.render.forked.usable` says no)."""
    from chamberlain.render.forked import usable

    if repo.platform is None or len(repo.intents) < PARALLEL_MIN_INTENTS or not usable():
        return None
    return RenderAhead(repo, stage=stage)


def _child_share(repo: Repository) -> ChildShare:
    """What :func:`render_repository` builds from ``repo`` for the child's share: the same inputs, the same parts."""
    from chamberlain.render.bootstrap import assign
    from chamberlain.render.bootstrap import collect as collect_bootstrap
    from chamberlain.render.layout import child_share

    platform = repo.platform
    if platform is None:
        raise RenderError("cannot render: the repository needs exactly one Platform")
    with gc_paused():
        topo = build_topology(platform, [p.obj for p in repo.policy_index().values()],
                              [i.obj for i in repo.intent_index().values()])
        return child_share(topo, assign(topo, collect_bootstrap(repo)))


def _write_stage(value: tuple[ChildShare, frozenset[str] | None], stage: object,
                 ) -> tuple[ChildShare, frozenset[str] | None]:
    """The child's step after the checks passed: the bundle written to ``stage`` (a :class:`.staging.Stage`, or
    None: no stage), and the paths written."""
    from chamberlain.render.staging import Stage

    share, _ = value
    if not isinstance(stage, Stage):
        return share, None
    return share, stage.write(share[1].files)


# ---------------------------------------------------------------------------------------------------- writing


# A NUL, or a character str.splitlines() breaks a line at: a marker line holding one would read back as other
# paths (the file it names unowned, two others "owned").
_UNLISTABLE = re.compile("[\x00\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _safe_relative(path: str) -> PurePosixPath:
    rel = PurePosixPath(path)
    if rel.is_absolute() or not rel.parts or any(p in ("", ".", "..") for p in rel.parts) or "\\" in path:
        raise RenderError(f"refusing to write outside the output directory: {path!r}")
    if _UNLISTABLE.search(path):
        raise RenderError(f"refusing a path with a control character or line separator: {path!r}")
    return rel


def _plain_relative(path: str) -> bool:
    """A path :func:`_safe_relative` accepts as it is, told with string operations (pathlib costs microseconds a
    call, and a render checks tens of thousands): relative, no backslash, no empty, ``.`` or ``..`` segment, no
    character a marker cannot list. False only means "ask :func:`_safe_relative`"."""
    if not path or path[0] == "/" or "\\" in path or _UNLISTABLE.search(path):
        return False
    return not any(part in ("", ".", "..") for part in path.split("/"))


# What _plain_relative refuses, found at once in paths joined by newlines between two more: a character a marker
# line cannot hold, or a backslash (one scan for rare characters), and an empty, "." or ".." segment or a leading or
# trailing slash (substring searches, which run at memory speed). A newline inside a path shows as a line too many.
_UNPLAIN_CHARACTER = re.compile("[\x00\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\\\\]")
_UNPLAIN_SEGMENTS = ("//", "\n/", "/\n", "\n\n", "/./", "/../", "\n./", "\n../", "/.\n", "/..\n", "\n.\n", "\n..\n")


def all_plain(paths: list[str]) -> bool:
    """:func:`_plain_relative` of every path, at once."""
    if not paths:
        return True
    joined = "\n" + "\n".join(paths) + "\n"
    return (joined.count("\n") == len(paths) + 1 and not _UNPLAIN_CHARACTER.search(joined)
            and not any(segment in joined for segment in _UNPLAIN_SEGMENTS))


def _owned(marker_text: str) -> set[str]:
    """The paths a marker lists (its comments, and any line that would lead outside the directory, left out)."""
    lines = [line for line in marker_text.splitlines() if line and not line.startswith("#")]
    if all_plain(lines):  # a marker render wrote: every line at once
        return set(lines)
    owned: set[str] = set()
    for line in lines:
        if _plain_relative(line):  # most lines: told without pathlib (a marker lists tens of thousands)
            owned.add(line)
            continue
        try:
            owned.add(str(_safe_relative(line)))
        except RenderError:
            continue  # a tampered marker never makes us delete outside the directory
    return owned


def _write_atomic(target: Path, data: bytes) -> None:
    # A fixed temporary name next to the target (same filesystem, so the rename is atomic); O_EXCL refuses to
    # follow a planted symlink. 0644: rendered output is not secret and is read by git and tools.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # left behind by a crashed run with the same pid
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_SAME, _ABSENT, _OTHER = object(), object(), object()
# O_NONBLOCK: opening a FIFO planted at a rendered path must not hang (it is then replaced like any non-file).
_READ_EXISTING = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)


def read_up_to(fd: int, size: int) -> bytes:
    """At most ``size`` bytes from ``fd``, fewer only at its end."""
    chunks, left = [], size
    while left > 0:
        chunk = os.read(fd, left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _on_disk(target: str, data: bytes) -> object:
    """:data:`_SAME` when ``target`` is a regular file holding exactly ``data``, :data:`_ABSENT` when nothing is
    there, :data:`_OTHER` otherwise (other bytes, a symlink, a directory, a special file): one open, one fstat and
    one read instead of pathlib's separate stat calls."""
    try:
        fd = os.open(target, _READ_EXISTING)
    except FileNotFoundError:
        return _ABSENT
    except OSError:
        return _OTHER  # a symlink (ELOOP) or unreadable: replaced atomically, as before
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != len(data):
            return _OTHER
        return _SAME if read_up_to(fd, st.st_size) == data else _OTHER
    except OSError:
        return _OTHER
    finally:
        os.close(fd)


_CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _write_new(target: str, data: bytes) -> bool:
    """Create ``target`` with ``data`` if nothing (not even a symlink) is there; False when something is.

    A file that did not exist has no old content to keep whole, so it is written in place: one create, one write,
    no temporary file and no rename (most of a fresh render's disk time at 25k files). A failed write removes the
    file it created; a crash can leave it short, and the marker already owns it, so the next render rewrites it
    (``render --check`` reports it changed until then)."""
    try:
        fd = os.open(target, _CREATE_NEW, 0o644)
    except FileExistsError:
        return False
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        os.unlink(target)
        raise
    os.close(fd)
    return True


def _marker_text(paths: list[str]) -> str:
    return _MARKER_HEADER + "".join(f"{p}\n" for p in paths)


def write_tree(tree: RenderedTree, out_dir: Path, *, staged: Staged | None = None,
               kept: frozenset[str] = frozenset()) -> WriteResult:
    """Write ``tree`` into ``out_dir`` and remove files a previous render wrote there that are gone now.

    ``out_dir`` must be absent, empty, or a directory this function wrote before (it has the marker file
    ``.chamberlain-render``); anything else is refused, so a typo never overwrites someone's files. Each file is
    replaced atomically; unchanged files are not rewritten (their mtime stays). Files in ``out_dir`` that no render
    listed are left alone. ``staged``: the Vault bundle already written to a stage in ``out_dir``
    (:mod:`.staging`), moved into place with one rename when ``out_dir`` held no earlier render and the stage holds
    exactly the tree's ``vault/`` files; otherwise those files are written like the others. ``kept``: rendered files
    not in ``tree``, known to be on disk as rendered (:mod:`.incremental`): listed in the marker, neither read nor
    written (counted unchanged).

    The file system refusing (a file where a directory must be, no permission, a full disk) is a
    :class:`~chamberlain.errors.UsageError` naming the output directory, the path and the reason.
    """
    out_dir = Path(out_dir)
    try:
        return _write_tree(tree, out_dir, staged, kept)
    except OSError as exc:
        raise _write_refused(out_dir, exc) from None


def _write_refused(out_dir: Path, exc: OSError) -> UsageError:
    """The clear error for the file system refusing a render: where and why, and what a rerun does. A path, an
    errno's words: never file content (rendered output holds no value anyway)."""
    reason = exc.strerror or type(exc).__name__
    # A rename's destination is the rendered path (its source, a temporary name nobody knows)
    path = exc.filename2 if exc.filename2 is not None else exc.filename
    where = f" at {path}" if path not in (None, os.fspath(out_dir), str(out_dir)) else ""
    try:
        begun = (out_dir / MARKER).is_file()
    except OSError:
        begun = False
    after = (" Files written so far are listed in its marker; render again once that is fixed (unchanged files "
             "are kept)." if begun else " Nothing was written.")
    return UsageError(f"cannot write the render into {out_dir}: {reason}{where}.{after}")


def _write_tree(tree: RenderedTree, out_dir: Path, staged: Staged | None, kept: frozenset[str]) -> WriteResult:
    from chamberlain.render.staging import STAGED_TOP, is_live_stage, remove_leftovers

    marker = out_dir / MARKER
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"output path {out_dir} exists and is not a directory")
    previous: set[str] = set()
    old_marker = b""  # the marker's bytes when it is a plain file (a symlink or other line endings: rewritten)
    keep = staged.stage.path if staged is not None else None
    if out_dir.is_dir():
        remove_leftovers(out_dir)  # stages of killed renders, only from a render's directory (see there)
        if marker.is_file():
            raw = marker.read_bytes()
            previous = _owned(raw.decode("utf-8", errors="replace"))  # a damaged marker is rewritten below
            old_marker = b"" if marker.is_symlink() else raw
        # A Git repository's own database does not count: `git init out && render -o out` (or a fresh clone of an
        # empty GitOps repository) is the documented way to commit the output.
        elif any(entry != keep and not is_live_stage(entry) and entry.name != ".git" for entry in out_dir.iterdir()):
            raise UsageError(
                f"refusing to render into {out_dir}: it is not empty and has no {MARKER} marker, so its files may not "
                "be render's to replace. Choose an empty directory (a Git repository with nothing else in it will "
                "do), one chamberlain rendered before, or a new subdirectory of a repository that holds other files "
                f"(-o {Path(out_dir) / 'chamberlain'})"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = sorted({*tree.files, *kept}) if kept else tree.paths()
    checked = tree.paths() if kept else paths  # kept paths were checked when the record was read
    for p in [] if all_plain(checked) else checked:
        # refuses before anything is written; a path pathlib would spell otherwise ("a//b") too: the marker
        # would read it back as another path, and the next render would delete the file as stale
        if not _plain_relative(p) and str(_safe_relative(p)) != p:
            raise RenderError(f"refusing a path that is not in its plain form: {p!r}")
    # Claim the union first: an interrupted write still leaves every file we may have created owned. A re-render
    # that adds no path finds them all claimed already.
    if not (old_marker and previous.issuperset(paths)):
        _write_atomic(marker, _marker_text(sorted(previous | set(paths))).encode("utf-8"))

    root = out_dir.resolve()
    base = os.fspath(out_dir)
    moved: frozenset[str] = frozenset()
    if (staged is not None and not previous and staged.stage.path.parent == out_dir
            and staged.paths == {p for p in paths if p.startswith(f"{STAGED_TOP}/")}
            and not os.path.lexists(f"{base}/{STAGED_TOP}")):
        moved = staged.paths
    skip = moved | kept
    written, unchanged = _write_files(tree, [p for p in paths if p not in skip] if skip else paths, root, base,
                                      compare=bool(previous))
    unchanged += len(kept)
    if staged is not None and moved:
        if staged.stage.move_into_place():  # the whole bundle appears at once
            written += len(moved)
        else:  # the stage is gone or not ours, or vault/ appeared meanwhile: written like the others after all
            more, same = _write_files(tree, sorted(moved), root, base, compare=True)
            written, unchanged = written + more, unchanged + same

    removed = 0
    for path in sorted(previous - set(paths)):
        stale = _inside(root, out_dir.joinpath(*PurePosixPath(path).parts))
        if stale.is_file() or stale.is_symlink():
            stale.unlink()
            removed += 1
        _prune_empty_dirs(stale.parent, out_dir)
    final = _marker_text(paths).encode("utf-8")
    if final != old_marker:  # byte for byte, as `render --check` compares it
        _write_atomic(marker, final)
    return WriteResult(written=written, unchanged=unchanged, removed=removed)


def _write_files(tree: RenderedTree, paths: list[str], root: Path, base: str, *, compare: bool) -> tuple[int, int]:
    """Write each of ``paths`` to ``base`` unless it holds those bytes already (``compare``: a directory a render
    wrote before; a first render finds nothing there); how many were written and how many were unchanged."""
    written = unchanged = 0
    checked: set[str] = set()
    for path in paths:
        # Plain strings on purpose: a render writes tens of thousands of files and pathlib costs microseconds
        # a call. ``path`` passed _safe_relative, so joining with "/" stays inside the output directory.
        target = f"{base}/{path}"
        parent = target.rpartition("/")[0]
        if parent not in checked:
            _inside(root, Path(target))  # before mkdir, which would follow a symlinked directory
            try:
                os.makedirs(parent, exist_ok=True)
            except FileExistsError as exc:  # "File exists" would not say what is wrong with it
                raise NotADirectoryError(errno.ENOTDIR, "a file is where the render needs a directory",
                                         exc.filename) from None
            checked.add(parent)
        data = tree.files[path].encode("utf-8")
        state = _on_disk(target, data) if compare else _ABSENT
        if state is _SAME:
            unchanged += 1
            continue
        if state is _ABSENT and _write_new(target, data):
            written += 1
            continue
        _write_atomic(Path(target), data)
        written += 1
    return written, unchanged


def _inside(root: Path, target: Path) -> Path:
    """``target`` unless a symlinked directory on the way would lead out of the output directory."""
    if not target.parent.resolve().is_relative_to(root):
        raise UsageError(f"refusing to follow a symlink out of the output directory at {target}")
    return target


def _prune_empty_dirs(start: Path, stop: Path) -> None:
    current = start
    while current != stop and stop in current.parents:
        try:
            current.rmdir()  # fails (and stops) when the directory still has files
        except OSError:
            return
        current = current.parent


# ---------------------------------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class Staleness:
    """How committed output differs from a fresh render (``chamberlain render --check``): paths relative to the
    output directory, each list sorted."""

    missing: list[str]  # rendered now, absent on disk
    changed: list[str]  # on disk with other bytes (or not a regular file)
    extra: list[str]  # on disk, not rendered now (a leftover of an older render, or a hand-made file)

    @property
    def fresh(self) -> bool:
        return not (self.missing or self.changed or self.extra)


NOT_A_FILE = object()  # stands for a path on disk that is a symlink, a directory or a special file


def stale_paths(tree: RenderedTree, on_disk: Mapping[str, bytes | object], extra: list[str]) -> Staleness:
    """Compare a fresh render (plus the marker it would write) with what the output directory holds. Pure:
    ``on_disk`` maps each rendered path (and the marker) to its bytes, :data:`NOT_A_FILE`, or nothing when absent;
    ``extra`` lists the other files found there."""
    expected = {p: tree.files[p].encode("utf-8") for p in tree.paths()}
    expected[MARKER] = _marker_text(tree.paths()).encode("utf-8")
    missing = sorted(p for p in expected if p not in on_disk)
    changed = sorted(p for p, data in expected.items() if p in on_disk and on_disk[p] != data)
    return Staleness(missing, changed, sorted(p for p in extra if p not in expected))


def read_output(tree: RenderedTree, out_dir: Path, *, git: str | None = "git") -> tuple[dict[str, bytes | object],
                                                                                         list[str]]:
    """What ``out_dir`` holds at the rendered paths (bytes, or :data:`NOT_A_FILE`), and the other files in it.
    The other files come from the repository walk, so Git's ignore rules and a ``.chamberlainignore`` in the
    output directory keep hand-made files out of the comparison; nothing here follows a symbolic link."""
    from chamberlain.intent.walk import GITIGNORE, IGNORE_FILE, walk

    on_disk: dict[str, bytes | object] = {}
    for path in [*tree.paths(), MARKER]:
        target = out_dir.joinpath(*_safe_relative(path).parts)
        try:
            if target.is_symlink() or not target.exists():
                if target.is_symlink():
                    on_disk[path] = NOT_A_FILE
                continue
            on_disk[path] = target.read_bytes() if target.is_file() else NOT_A_FILE
        except OSError:
            on_disk[path] = NOT_A_FILE
    if not out_dir.is_dir():
        return on_disk, []
    walked = walk(out_dir, git=git)
    extra = [f.rel for f in walked.files if f.rel.rsplit("/", 1)[-1] not in (GITIGNORE, IGNORE_FILE)]
    extra += [e.path.rstrip("/") for e in walked.exclusions if e.reason in ("symlink", "special-file")]
    return on_disk, extra


def compare_output(tree: RenderedTree, out_dir: Path, *, git: str | None = "git") -> Staleness:
    """Is the output committed in ``out_dir`` exactly what rendering now writes? Reads, never writes."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"output path {out_dir} exists and is not a directory")
    on_disk, extra = read_output(tree, out_dir, git=git)
    return stale_paths(tree, on_disk, extra)
