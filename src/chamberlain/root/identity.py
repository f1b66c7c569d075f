"""The offline age identity: created once with ``age-keygen``, 0600, outside every repository, never regenerated.

Why ``age-keygen`` and not our own key code: it is the ecosystem's tool, it opens the output with exclusive create
(an existing identity is never overwritten, even by a race) and writes it 0600. We add the rules around it: the
path must not be inside the intent repository or any Git work tree, parent directories we create are 0700, and an
existing identity is reused (its recipient read back with ``age-keygen -y``), never replaced.

``age-keygen`` is found through the :class:`~chamberlain.bootstrap.tools.Tools` the caller passes, and the default
location is under the configuration directory it passes (``Settings.config_dir``): nothing here reads the process
environment, so a ``~`` in a path is the caller's to expand.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from chamberlain.bootstrap.tools import Tools
from chamberlain.errors import ChamberlainError, UsageError
from chamberlain.settings import tool_env

RECIPIENT = re.compile(r"age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}")


class RootError(ChamberlainError):
    """The root of trust cannot be created or read as asked; nothing was changed."""


@dataclass(frozen=True)
class RootIdentity:
    path: Path
    recipient: str
    created: bool  # False: an identity was already there and was kept


def default_identity_path(name: str, config_dir: Path) -> Path:
    """``<config_dir>/root-of-trust/<name>.agekey``: outside any repository, per user, one file per Platform.
    The entry points pass ``Settings.config_dir``, ``$XDG_CONFIG_HOME/chamberlain`` (default ``~/.config``)."""
    return config_dir / "root-of-trust" / f"{name}.agekey"


def _git_work_tree(path: Path) -> Path | None:
    for parent in [path, *path.parents]:
        if (parent / ".git").exists():
            return parent
    return None


def check_location(path: Path, repo_root: Path | None, *, what: str = "the root identity",
                   example: str = "the default under ~/.config") -> Path:
    """The absolute identity path, or :class:`UsageError` if it would live where Git could pick it up. ``what``
    and ``example`` name the key and a good place for it in the message (other keys than the root's use this)."""
    path = Path(os.path.abspath(path))
    resolved_parent = path.parent.resolve() if path.parent.exists() else path.parent
    if repo_root is not None:
        root = repo_root.resolve()
        if path.is_relative_to(root) or resolved_parent.is_relative_to(root):
            raise UsageError(f"{path}: is inside the repository {root}; {what} must never be in Git "
                             f"(choose a path outside it, e.g. {example})")
    tree = _git_work_tree(resolved_parent)
    if tree is not None:
        raise UsageError(f"{path}: is inside the Git work tree {tree}; {what} must never be in Git")
    return path


def _make_private_dirs(directory: Path) -> None:
    # os.makedirs' mode is filtered by the umask and only applies to the leaf; set 0700 on each directory we
    # create, and leave existing ones (e.g. ~/.config) alone.
    missing = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700)
        os.chmod(d, 0o700)


def recipient_of(identity: Path, tools: Tools) -> str:
    """The public recipient of an age identity file (``age-keygen -y``). Nothing secret is read into Python."""
    try:
        proc = subprocess.run([str(tools.find("age-keygen")), "-y", str(identity)], capture_output=True, text=True,
                              timeout=30, check=False, env=tool_env(tools.env))
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RootError(f"{identity}: cannot run age-keygen ({type(exc).__name__})") from None
    recipient = proc.stdout.strip()
    if proc.returncode != 0 or not RECIPIENT.fullmatch(recipient):
        raise RootError(f"{identity}: is not a readable age identity file")
    return recipient


def ensure_identity(path: Path, repo_root: Path | None = None, *, tools: Tools, what: str = "the root identity",
                    example: str = "the default under ~/.config") -> RootIdentity:
    """Create the identity at ``path`` unless one is there; return it with its recipient."""
    path = check_location(path, repo_root, what=what, example=example)
    if path.is_symlink():
        raise UsageError(f"{path}: is a symbolic link; give the identity file's real path")
    if path.exists():
        if not path.is_file():
            raise UsageError(f"{path}: exists and is not a file")
        return RootIdentity(path, recipient_of(path, tools), created=False)
    _make_private_dirs(path.parent)
    try:
        proc = subprocess.run([str(tools.find("age-keygen")), "-o", str(path)], capture_output=True, text=True,
                              timeout=30, check=False, env=tool_env(tools.env))
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RootError(f"{path}: cannot run age-keygen ({type(exc).__name__})") from None
    if proc.returncode != 0:
        if "file exists" in proc.stderr:
            raise RootError(f"{path}: an identity appeared there while creating it; not overwritten, run again")
        raise RootError(f"{path}: age-keygen failed (exit {proc.returncode})")
    os.chmod(path, 0o600)
    return RootIdentity(path, recipient_of(path, tools), created=True)
