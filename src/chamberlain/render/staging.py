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
  (like :func:`tempfile.mkdtemp`'s), written through file descriptors that follow no symbolic link, and its
  ``vault/`` is moved only if it is still the directory this render made. ``vault/`` is made as ``write_tree``
  makes directories (mode ``0777`` less the umask, or the directory's default ACL and setgid bit), so the output
  is the same.
  Whenever the stage cannot be used, the bundle is written like the other files.
- Once made, the output directory and the stage are reached through descriptors held open, never through their
  paths again: someone who may rename entries above the output directory cannot point the move or the removal of a
  stage anywhere else.
- A stage's lock file is locked by its render from before the file has its name until the stage is removed. A
  stage whose lock nobody holds, or an empty one (its render was killed) is removed by the next render into that
  directory, and only from a directory that is a render's (it has the marker, or holds nothing but stages); a
  directory that merely looks like a stage (another shape than a stage's) and a live one are never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from chamberlain.wellknown import RENDER_MARKER

STAGE_PREFIX = ".chamberlain-stage-"
STAGED_TOP = "vault"  # the output's top directory a stage holds
LOCK_NAME = ".chamberlain-stage-lock"
_LOCK_MAKING = ".chamberlain-stage-lock.new"
_NAME_LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789_"  # tempfile.mkdtemp's, whose names older stages have
_STAGE_NAME = re.compile(r"\.chamberlain-stage-[a-z0-9_]{8}")
# What a stage holds at each moment from its making (empty, the lock under its first name, then its final name,
# then vault/) to its removal (the same, backwards): anything else is not a stage, whatever its name.
_STAGE_SHAPES: tuple[frozenset[str], ...] = (
    frozenset(), frozenset({_LOCK_MAKING}), frozenset({LOCK_NAME}), frozenset({LOCK_NAME, STAGED_TOP}))
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted as a lock file must not hang the render that looks at it.
_LOCK_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_OPEN_FOLDERS = 64  # descriptors the child keeps open while writing (a fleet has hundreds of auth mounts)


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _private(st: os.stat_result) -> bool:
    """This user owns the directory and nobody else may write to it: nobody else can rename or plant entries there."""
    return st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _stage_state(name: str, parent: int) -> str | None:
    """"live" or "dead" for a stage (its name, a real directory of this user holding exactly what a stage holds,
    its lock a regular file) in the directory open as ``parent``, whose render still holds its lock or is gone;
    None for anything else. An empty one is dead too: its render was stopped while making or removing it (one
    that is making it now finds it gone and writes without a stage)."""
    if not _STAGE_NAME.fullmatch(name):
        return None
    try:
        directory = os.open(name, _DIR, dir_fd=parent)
    except OSError:
        return None  # gone, not a directory, or a symbolic link
    try:
        names = frozenset(os.listdir(directory))
        if names not in _STAGE_SHAPES or os.fstat(directory).st_uid != os.geteuid():
            return None
        if not names:
            return "dead"
        if STAGED_TOP in names and not stat.S_ISDIR(os.stat(STAGED_TOP, dir_fd=directory,
                                                            follow_symlinks=False).st_mode):
            return None
        lock = os.open(LOCK_NAME if LOCK_NAME in names else _LOCK_MAKING, _LOCK_FILE, dir_fd=directory)
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


def _state_at(entry: Path) -> str | None:
    try:
        parent = os.open(entry.parent, _DIR)
    except OSError:
        return None
    try:
        return _stage_state(entry.name, parent)
    finally:
        os.close(parent)


def is_live_stage(entry: Path) -> bool:
    """``entry`` is the stage of a render that is still running (into the same directory)."""
    return _state_at(entry) == "live"


def remove_leftovers(out_dir: Path) -> None:
    """Remove the stages of killed renders from ``out_dir``: only when it is a directory only this user may change
    and a render's (it has the marker, or holds nothing but stages), so a refused render deletes nothing."""
    with contextlib.suppress(OSError):
        directory = os.open(out_dir, _DIR)
        try:
            _remove_dead_stages(directory)
        finally:
            os.close(directory)


def _remove_dead_stages(directory: int) -> None:
    if not _private(os.fstat(directory)):
        return
    states = {name: _stage_state(name, directory) for name in os.listdir(directory)}
    if RENDER_MARKER not in states and any(state is None for state in states.values()):
        return
    for name, state in states.items():
        if state == "dead":
            shutil.rmtree(name, dir_fd=directory, ignore_errors=True)


def _new_stage_directory(directory: int) -> str:
    """A new directory ``.chamberlain-stage-XXXXXXXX`` (0700) in the directory open as ``directory``.
    Hand-written instead of :func:`tempfile.mkdtemp`, which takes no directory descriptor."""
    for _ in range(100):
        name = STAGE_PREFIX + "".join(secrets.choice(_NAME_LETTERS) for _ in range(8))
        try:
            os.mkdir(name, 0o700, dir_fd=directory)
        except FileExistsError:
            continue
        return name
    raise FileExistsError("no unused stage name")


@dataclass(frozen=True)
class Stage:
    """The stage of one render into ``out_dir``: its ``path``, the identity (device, inode) of the ``vault/`` made
    in it, the lock this render holds, descriptors of ``out_dir`` (``out``) and of the stage (``here``), and
    whether the render made ``out_dir`` itself (``created_out``: removed again when the render ends without
    output). The descriptors are meaningful in the process that made the stage only; the child, forked before,
    reaches the stage by its path and checks ``identity``."""

    out_dir: Path
    path: Path
    identity: tuple[int, int]
    lock: int
    created_out: bool
    out: int = -1
    here: int = -1

    @classmethod
    def create(cls, out_dir: Path) -> Stage | None:
        """A stage for a first render into ``out_dir``: absent (its parent exists), or an empty directory (stages of
        killed renders aside) this user owns and nobody else may write to. None otherwise: a re-render compares
        and keeps unchanged files, so it writes in place."""
        created = False
        name: str | None = None
        opened: list[int] = []
        try:
            if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
                return None
            if not out_dir.exists():
                if not out_dir.parent.is_dir():
                    return None
                out_dir.mkdir()
                created = True
            out = os.open(out_dir, _DIR)  # from here on, never the path: it could be made to lead elsewhere
            opened.append(out)
            if not _private(os.fstat(out)):
                raise PermissionError("others may write to the output directory: no stage there")
            if not created:
                _remove_dead_stages(out)
                if os.listdir(out):
                    raise FileExistsError("the output directory is not empty: no stage there")
            name = _new_stage_directory(out)
            here = os.open(name, _DIR, dir_fd=out)
            opened.append(here)
            # Locked before it has its name: a render looking for dead stages never finds this one unlocked.
            lock = os.open(_LOCK_MAKING, _NEW_FILE, 0o600, dir_fd=here)
            opened.append(lock)
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(_LOCK_MAKING, LOCK_NAME, src_dir_fd=here, dst_dir_fd=here)
            os.mkdir(STAGED_TOP, 0o777, dir_fd=here)  # as write_tree's makedirs would make it
            identity = _identity(os.stat(STAGED_TOP, dir_fd=here, follow_symlinks=False))
        except BaseException as exc:  # an interrupt too: nothing of a stage half made is left behind
            if name is not None:
                shutil.rmtree(name, dir_fd=opened[0], ignore_errors=True)
            for fd in opened:
                os.close(fd)
            if created:
                with contextlib.suppress(OSError):
                    out_dir.rmdir()
            if not isinstance(exc, OSError):
                raise
            return None
        return cls(out_dir, out_dir / name, identity, lock, created, out, here)

    def _top(self, *, by_path: bool = False) -> int:
        """A descriptor of the stage's ``vault/``, if it is still the one :meth:`create` made (else OSError).
        ``by_path``: in the child, which holds none of the descriptors."""
        directory = os.open(self.path, _DIR) if by_path else os.dup(self.here)
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
            opened[""] = self._top(by_path=True)
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

    def move_into_place(self) -> bool:
        """Rename the stage's ``vault/`` to ``out_dir/vault`` (absent) if it is still the directory this render made
        and ``out_dir`` still names the directory the stage is in; False when it cannot be."""
        try:
            os.close(self._top())
            if _identity(os.stat(self.out_dir, follow_symlinks=False)) != _identity(os.fstat(self.out)):
                return False  # the path leads elsewhere now: the caller writes there by path, as without a stage
            try:
                os.stat(STAGED_TOP, dir_fd=self.out, follow_symlinks=False)
            except FileNotFoundError:
                os.rename(STAGED_TOP, STAGED_TOP, src_dir_fd=self.here, dst_dir_fd=self.out)
                return True
            return False
        except OSError:
            return False

    def discard(self) -> None:
        """Remove what is left of the stage (after a move: its lock file), release the lock, and remove ``out_dir``
        when this render made it and it is still empty. Once only: it closes the descriptors."""
        # The bundle first and the lock file last: stopped halfway, the stage is still one the next render knows
        # to be a dead render's (locked by nobody, or empty).
        shutil.rmtree(STAGED_TOP, dir_fd=self.here, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.unlink(LOCK_NAME, dir_fd=self.here)
        with contextlib.suppress(OSError):
            os.rmdir(self.path.name, dir_fd=self.out)
        for fd in (self.lock, self.here, self.out):
            with contextlib.suppress(OSError):
                os.close(fd)
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
