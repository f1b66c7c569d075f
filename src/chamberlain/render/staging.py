"""A first render's Vault bundle, written by the forked child while the parent still checks and builds.

At 10k intents the bundle is 25k small files of the 26k a render writes, and creating them takes about as long as
building the environments' files. When ``chamberlain render`` writes into a new or empty directory, the child that
builds the bundle (:func:`chamberlain.render.start_render`) also writes it, into a stage directory inside the output
directory (``.chamberlain-stage-<pid>``: the same filesystem, so moving it is one rename). Once the repository
validated and everything rendered, :func:`chamberlain.render.write_tree` writes the marker and the other files and
renames the stage to ``vault/``. Nothing appears under its final name before that: a refused or failed render
leaves the output directory as it found it (:meth:`Stage.discard`), and a stage left by a killed run is removed by
the next render into that directory.

The child writes before the checks are done, so it trusts no path: every path must be in the plain form
``write_tree`` accepts, or nothing is staged and the parent writes the bundle itself, as it does whenever the
stage cannot be used.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

STAGE_PREFIX = ".chamberlain-stage-"
STAGED_TOP = "vault"  # the output's top directory a stage becomes


def is_leftover(entry: Path, keep: Path | None = None) -> bool:
    """``entry`` is a stage directory (not a symlink) some render left in its output directory, other than
    ``keep``."""
    name = entry.name
    return (name.startswith(STAGE_PREFIX) and name[len(STAGE_PREFIX):].isdigit() and entry != keep
            and entry.is_dir() and not entry.is_symlink())


def remove_leftovers(out_dir: Path, keep: Path | None = None) -> None:
    """Remove the stages earlier renders into ``out_dir`` left behind (killed before they moved them)."""
    with suppress(OSError):
        for entry in out_dir.iterdir():
            if is_leftover(entry, keep):
                shutil.rmtree(entry, ignore_errors=True)


@dataclass(frozen=True)
class Stage:
    """Where the child stages the bundle for a render into ``out_dir``; ``created_out``: this render made
    ``out_dir`` (it removes it again when the render is refused)."""

    out_dir: Path
    path: Path
    created_out: bool

    @classmethod
    def prepare(cls, out_dir: Path) -> Stage | None:
        """A stage for a first render into ``out_dir``: absent (its parent exists) or an empty directory, leftover
        stages aside. None when ``out_dir`` holds anything else (a re-render compares and keeps unchanged files:
        it writes in place) or the stage cannot be made."""
        created = False
        try:
            if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
                return None
            if not out_dir.exists():
                if not out_dir.parent.is_dir():
                    return None
                out_dir.mkdir()
                created = True
            elif any(not is_leftover(entry) for entry in out_dir.iterdir()):
                return None
            path = out_dir / f"{STAGE_PREFIX}{os.getpid()}"
            if path.exists() or path.is_symlink():
                shutil.rmtree(path)  # a stage of a killed run whose pid this process now has (a symlink: refused)
            path.mkdir()
        except OSError:
            if created:
                with suppress(OSError):
                    out_dir.rmdir()
            return None
        return cls(out_dir, path, created)

    def write(self, files: Mapping[str, str]) -> frozenset[str] | None:
        """Write ``files`` (every path below ``vault/``) into the stage, each created new; the paths written, or None
        when the stage cannot stand for them: a path that is not plain (relative, no ``..``, ``.`` or empty part,
        no control character) or lies elsewhere, or a failed write. Runs in the child, before the checks are done;
        the parent then writes them itself."""
        from chamberlain.render import _plain_relative, _write_new  # the same rules and writes as write_tree's

        prefix = f"{STAGED_TOP}/"
        if any(not (p.startswith(prefix) and _plain_relative(p)) for p in files):
            return None

        base = os.fspath(self.path)
        made: set[str] = set()
        try:
            for rel, text in files.items():
                target = f"{base}/{rel[len(prefix):]}"
                parent = target.rpartition("/")[0]
                if parent not in made:
                    os.makedirs(parent, exist_ok=True)
                    made.add(parent)
                if not _write_new(target, text.encode("utf-8")):
                    return None
        except OSError:
            return None
        return frozenset(files)

    def discard(self) -> None:
        """Remove what is left of the stage, and ``out_dir`` when this render made it and it is still empty."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self.created_out:
            with suppress(OSError):
                self.out_dir.rmdir()


@dataclass(frozen=True)
class Staged:
    """A stage the child filled: ``paths``, the rendered paths (``vault/...``) it holds."""

    stage: Stage
    paths: frozenset[str]


__all__ = ["STAGED_TOP", "STAGE_PREFIX", "Stage", "Staged", "is_leftover", "remove_leftovers"]
