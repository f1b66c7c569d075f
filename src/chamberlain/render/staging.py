"""A first render's Vault bundle, written by the forked child while the parent still builds the other files.

At 10k intents the bundle is 25k small files of the 26k a render writes, and creating them takes about as long as
building the environments' files. When ``chamberlain render`` writes into a new or empty directory, the child that
built the bundle (:func:`chamberlain.render.start_render`) writes it, once the checks passed, into a stage: a new
private directory inside the output directory (the same filesystem, so moving it is one rename) holding a lock file
and ``vault/``. Then :func:`chamberlain.render.write_tree` writes the marker and the other files and renames the
stage's ``vault/`` into the output directory.

- Nothing is written before the repository passed its checks: a refused repository leaves no file anywhere (a
  value the checks refuse never reaches the disk).
- Only a directory this user owns and nobody else may write to is staged in; the stage is created ``0700``
  (:func:`tempfile.mkdtemp`), written through file descriptors that follow no symbolic link, and its ``vault/`` is
  moved only if it is still the directory this render made. ``vault/`` is made as ``write_tree`` makes directories
  (mode ``0777`` less the umask, or the directory's default ACL and setgid bit), so the output is the same.
  Whenever the stage cannot be used, the bundle is written like the other files.
- A stage's lock file is locked by its render from before the file has its name until the stage is removed. A
  stage whose lock nobody holds, or an empty one (its render was killed) is removed by the next render into that
  directory; a directory that merely looks like a stage (no lock file of ours) and a live one are never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

STAGE_PREFIX = ".chamberlain-stage-"
STAGED_TOP = "vault"  # the output's top directory a stage holds
LOCK_NAME = ".chamberlain-stage-lock"
_LOCK_MAKING = ".chamberlain-stage-lock.new"
_STAGE_NAME = re.compile(r"\.chamberlain-stage-[a-z0-9_]{8}")  # tempfile.mkdtemp's names
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted as a lock file must not hang the render that looks at it.
_LOCK_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_OPEN_FOLDERS = 64  # descriptors the child keeps open while writing (a fleet has hundreds of auth mounts)


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _private(out_dir: Path) -> bool:
    """This user owns ``out_dir`` and nobody else may write to it: nobody else can rename or plant entries there."""
    st = out_dir.stat()
    return st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _stage_state(entry: Path) -> str | None:
    """"live" or "dead" for a stage (its name, a real directory, our lock file in it) whose render still holds
    its lock or is gone; None for anything else. An empty one is dead too: its render was stopped while making or
    removing it (one that is making it now finds it gone and writes without a stage)."""
    if not _STAGE_NAME.fullmatch(entry.name):
        return None
    try:
        directory = os.open(entry, _DIR)
    except OSError:
        return None  # gone, not a directory, or a symbolic link
    try:
        names = os.listdir(directory)
        if not names:
            return "dead"
        # The lock under its final name, or, in a stage its render was stopped making, under the name it has
        # until it is locked.
        name = LOCK_NAME if LOCK_NAME in names else _LOCK_MAKING if names == [_LOCK_MAKING] else None
        if name is None:
            return None  # no lock file: not ours
        lock = os.open(name, _LOCK_FILE, dir_fd=directory)
    except OSError:
        return None
    finally:
        os.close(directory)
    try:
        if not stat.S_ISREG(os.fstat(lock).st_mode):
            return None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return "live"
        return "dead"
    except OSError:
        return None
    finally:
        os.close(lock)


def is_live_stage(entry: Path) -> bool:
    """``entry`` is the stage of a render that is still running (into the same directory)."""
    return _stage_state(entry) == "live"


def remove_leftovers(out_dir: Path) -> None:
    """Remove the stages of killed renders from ``out_dir``, when it is a directory only this user may change."""
    with contextlib.suppress(OSError):
        if not _private(out_dir):
            return
        for entry in out_dir.iterdir():
            if _stage_state(entry) == "dead":
                shutil.rmtree(entry, ignore_errors=True)


@dataclass(frozen=True)
class Stage:
    """The stage of one render into ``out_dir``: its ``path``, the identity (device, inode) of the ``vault/`` made
    in it, the lock this render holds (``lock``: a descriptor, meaningful in the process that made the stage), and
    whether the render made ``out_dir`` itself (``created_out``: removed again when the render ends without
    output)."""

    out_dir: Path
    path: Path
    identity: tuple[int, int]
    lock: int
    created_out: bool

    @classmethod
    def create(cls, out_dir: Path) -> Stage | None:
        """A stage for a first render into ``out_dir``: absent (its parent exists), or an empty directory (stages of
        killed renders aside) this user owns and nobody else may write to. None otherwise: a re-render compares
        and keeps unchanged files, so it writes in place."""
        created = False
        path: Path | None = None
        try:
            if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
                return None
            if not out_dir.exists():
                if not out_dir.parent.is_dir():
                    return None
                out_dir.mkdir()
                created = True
            else:
                remove_leftovers(out_dir)
                if any(out_dir.iterdir()):
                    return None
            if not _private(out_dir):
                raise PermissionError("others may write to the output directory: no stage there")
            # mkdtemp's own path is absolute from Python 3.12 on: spelled like out_dir's entries, write_tree knows it
            path = out_dir / os.path.basename(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=out_dir))
            directory = os.open(path, _DIR)
            try:
                # Locked before it has its name: a render looking for dead stages never finds this one unlocked.
                lock = os.open(_LOCK_MAKING, _NEW_FILE, 0o600, dir_fd=directory)
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.rename(_LOCK_MAKING, LOCK_NAME, src_dir_fd=directory, dst_dir_fd=directory)
                os.mkdir(STAGED_TOP, 0o777, dir_fd=directory)  # as write_tree's makedirs would make it
                identity = _identity(os.stat(STAGED_TOP, dir_fd=directory, follow_symlinks=False))
            finally:
                os.close(directory)
        except BaseException as exc:  # an interrupt too: nothing of a stage half made is left behind
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)
            if created:
                with contextlib.suppress(OSError):
                    out_dir.rmdir()
            if not isinstance(exc, OSError):
                raise
            return None
        return cls(out_dir, path, identity, lock, created)

    def _top(self) -> int:
        """A descriptor of the stage's ``vault/``, if it is still the one :meth:`create` made (else OSError)."""
        directory = os.open(self.path, _DIR)
        try:
            top = os.open(STAGED_TOP, _DIR, dir_fd=directory)
        finally:
            os.close(directory)
        if _identity(os.fstat(top)) != self.identity:
            os.close(top)
            raise FileNotFoundError(f"{self.path}/{STAGED_TOP} is not the directory this render made")
        return top

    def write(self, files: Mapping[str, str]) -> frozenset[str] | None:
        """Write ``files`` (every path below ``vault/``) into the stage's ``vault/``, each created new, through
        descriptors that follow no symbolic link; the paths written, or None when the stage cannot stand for them:
        a path that is not plain (relative, no ``..``, ``.`` or empty part, no control character) or lies elsewhere,
        a stage that is not the one :meth:`create` made, or a failed write. Runs in the child; the parent then
        writes the files itself."""
        from chamberlain.render import _plain_relative  # the rule write_tree applies

        prefix = f"{STAGED_TOP}/"
        if any(not (p.startswith(prefix) and _plain_relative(p)) for p in files):
            return None
        opened: dict[str, int] = {}
        try:
            opened[""] = self._top()
            for rel, text in files.items():
                folder, _, name = rel[len(prefix):].rpartition("/")
                fd = os.open(name, _NEW_FILE, 0o644, dir_fd=_folder(folder, opened))
                try:
                    view = memoryview(text.encode("utf-8"))
                    while view:
                        view = view[os.write(fd, view):]
                finally:
                    os.close(fd)
        except OSError:
            return None
        finally:
            for fd in opened.values():
                os.close(fd)
        return frozenset(files)

    def move_to(self, target: str) -> bool:
        """Rename the stage's ``vault/`` to ``target`` (in ``out_dir``, absent) if it is still the directory this
        render made; False when it cannot be."""
        try:
            os.close(self._top())
            if os.path.lexists(target):
                return False
            os.rename(self.path / STAGED_TOP, target)
        except OSError:
            return False
        return True

    def discard(self) -> None:
        """Remove what is left of the stage (after a move: its lock file), release the lock, and remove ``out_dir``
        when this render made it and it is still empty."""
        # The bundle first and the lock file last: stopped halfway, the stage is still one the next render knows
        # to be a dead render's (locked by nobody, or empty).
        shutil.rmtree(self.path / STAGED_TOP, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.unlink(self.path / LOCK_NAME)
        with contextlib.suppress(OSError):
            os.rmdir(self.path)
        with contextlib.suppress(OSError):
            os.close(self.lock)
        if self.created_out:
            with contextlib.suppress(OSError):
                self.out_dir.rmdir()


def _folder(folder: str, opened: dict[str, int]) -> int:
    """A descriptor of ``folder`` (relative to the stage's ``vault/``, whose descriptor is ``opened[""]``), made and
    opened one part at a time, never through a symbolic link; at most :data:`_OPEN_FOLDERS` stay open."""
    fd = opened.get(folder)
    if fd is not None:
        return fd
    if len(opened) >= _OPEN_FOLDERS:
        for key in [k for k in opened if k]:
            os.close(opened.pop(key))
    parent, _, name = folder.rpartition("/")
    above = _folder(parent, opened)
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o777, dir_fd=above)  # the umask or default ACL applies, as to write_tree's directories
    fd = opened[folder] = os.open(name, _DIR, dir_fd=above)
    return fd


@dataclass(frozen=True)
class Staged:
    """A stage the child filled: ``paths``, the rendered paths (``vault/...``) it holds."""

    stage: Stage
    paths: frozenset[str]


__all__ = ["LOCK_NAME", "STAGED_TOP", "STAGE_PREFIX", "Stage", "Staged", "is_live_stage", "remove_leftovers"]
