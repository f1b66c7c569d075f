"""A first render's Vault bundle, written by the forked child while the parent still builds the other files.

At 10k intents the bundle is 25k small files of the 26k a render writes, and creating them takes about as long as
building the environments' files. When ``chamberlain render`` writes into a new or empty directory, the child that
built the bundle (:func:`chamberlain.render.start_render`) writes it, once the checks passed, into a stage: a new
private directory inside the output directory (the same filesystem, so moving it is one rename). Then
:func:`chamberlain.render.write_tree` writes the marker and the other files and renames the stage to ``vault/``.

- Nothing is written before the repository passed its checks: a refused repository leaves no file anywhere (a
  value the checks refuse never reaches the disk).
- Only a directory this user owns and nobody else may write to is staged in; the stage is created ``0700``
  (:func:`tempfile.mkdtemp`), written through file descriptors that follow no symbolic link, and moved only if
  it is still the directory this render made. Otherwise, and whenever the stage cannot be used, the bundle is
  written like the other files.
- A stage holds a lock file that its render keeps locked while it lives. A stage whose lock nobody holds (its
  render was killed) is removed by the next render into that directory; a directory that merely looks like a
  stage (no lock file, or a live one) is never touched.
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
STAGED_TOP = "vault"  # the output's top directory a stage becomes
LOCK_NAME = ".chamberlain-stage-lock"
_STAGE_NAME = re.compile(r"\.chamberlain-stage-[a-z0-9_]{8}")  # tempfile.mkdtemp's names
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _dead_stage(entry: Path) -> bool:
    """``entry`` is a stage (its name, a real directory, our lock file in it) whose render is gone (the lock is
    free)."""
    if not _STAGE_NAME.fullmatch(entry.name):
        return False
    try:
        directory = os.open(entry, _DIR)
    except OSError:
        return False  # gone, not a directory, or a symbolic link
    try:
        lock = os.open(LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
    except OSError:
        return False  # no lock file: not ours
    finally:
        os.close(directory)
    try:
        if not stat.S_ISREG(os.fstat(lock).st_mode):
            return False
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False  # locked: a render still uses it
    finally:
        os.close(lock)


def remove_leftovers(out_dir: Path) -> None:
    """Remove the stages of killed renders from ``out_dir`` (see :func:`_dead_stage`)."""
    with contextlib.suppress(OSError):
        for entry in out_dir.iterdir():
            if _dead_stage(entry):
                shutil.rmtree(entry, ignore_errors=True)


@dataclass(frozen=True)
class Stage:
    """The stage of one render into ``out_dir``: its ``path`` and identity (device, inode), the lock this render
    holds (``lock``: a descriptor, meaningful in the process that made the stage), and whether the render made
    ``out_dir`` itself (``created_out``: it removes it again when the render ends without output)."""

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
            st = out_dir.stat()
            if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise PermissionError("others may write to the output directory: no stage there")
            path = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=out_dir))
        except OSError:
            if created:
                with contextlib.suppress(OSError):
                    out_dir.rmdir()
            return None
        try:
            directory = os.open(path, _DIR)
            try:
                lock = os.open(LOCK_NAME, _NEW_FILE, 0o600, dir_fd=directory)
                identity = _identity(os.fstat(directory))
            finally:
                os.close(directory)
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            shutil.rmtree(path, ignore_errors=True)
            if created:
                with contextlib.suppress(OSError):
                    out_dir.rmdir()
            return None
        return cls(out_dir, path, identity, lock, created)

    def write(self, files: Mapping[str, str]) -> frozenset[str] | None:
        """Write ``files`` (every path below ``vault/``) into the stage, each created new, through descriptors that
        follow no symbolic link; the paths written, or None when the stage cannot stand for them: a path that is
        not plain (relative, no ``..``, ``.`` or empty part, no control character) or lies elsewhere, a stage that
        is not the directory :meth:`create` made, or a failed write. Runs in the child; the parent then writes the
        files itself."""
        from chamberlain.render import _plain_relative  # the rule write_tree applies

        prefix = f"{STAGED_TOP}/"
        if any(not (p.startswith(prefix) and _plain_relative(p)) for p in files):
            return None
        opened: dict[str, int] = {}
        try:
            root = opened[""] = os.open(self.path, _DIR)
            if _identity(os.fstat(root)) != self.identity:
                return None
            for rel, text in files.items():
                folder, _, name = rel[len(prefix):].rpartition("/")
                fd = os.open(name, _NEW_FILE, 0o644, dir_fd=self._folder(folder, opened))
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

    @staticmethod
    def _folder(folder: str, opened: dict[str, int]) -> int:
        """A descriptor of ``folder`` (relative to the stage), made and opened one part at a time, never through
        a symbolic link."""
        fd = opened.get(folder)
        if fd is not None:
            return fd
        parent, _, name = folder.rpartition("/")
        above = Stage._folder(parent, opened)
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o777, dir_fd=above)  # the umask applies, as to write_tree's directories
        fd = opened[folder] = os.open(name, _DIR, dir_fd=above)
        return fd

    def move_to(self, target: str) -> bool:
        """Rename the stage to ``target`` (in ``out_dir``, absent) if it is still the directory this render made,
        with the mode a directory made now gets and without its lock file; False when it cannot be."""
        try:
            directory = os.open(self.path, _DIR)
        except OSError:
            return False
        try:
            if _identity(os.fstat(directory)) != self.identity or os.path.lexists(target):
                return False
            umask = os.umask(0)  # read it: this process runs one thread (it forked a helper)
            os.umask(umask)
            os.fchmod(directory, 0o777 & ~umask)
            os.unlink(LOCK_NAME, dir_fd=directory)
            os.rename(self.path, target)
            return True
        except OSError:
            return False
        finally:
            os.close(directory)

    def discard(self) -> None:
        """Remove what is left of the stage, release its lock, and remove ``out_dir`` when this render made it and
        it is still empty."""
        shutil.rmtree(self.path, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.close(self.lock)
        if self.created_out:
            with contextlib.suppress(OSError):
                self.out_dir.rmdir()


@dataclass(frozen=True)
class Staged:
    """A stage the child filled: ``paths``, the rendered paths (``vault/...``) it holds."""

    stage: Stage
    paths: frozenset[str]


__all__ = ["LOCK_NAME", "STAGED_TOP", "STAGE_PREFIX", "Stage", "Staged", "remove_leftovers"]
