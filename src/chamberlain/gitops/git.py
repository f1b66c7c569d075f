"""Publishing a rendered tree to the Git repository a GitOps controller watches: one commit on a branch whose tree
is exactly the rendered output (files that left the output leave the branch too), pushed over the remote's URL.

The lab and the demo use it to play the part of a user committing ``chamberlain render`` output. Runs the ``git``
binary (through subprocess, like sops: git's own porcelain is the well-kept library for this) with the tool basics
and a fixed identity; never the caller's credentials.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from chamberlain.errors import ChamberlainError, ToolMissing
from chamberlain.settings import tool_env

GIT_TIMEOUT = 60.0
AUTHOR = {"GIT_AUTHOR_NAME": "chamberlain", "GIT_AUTHOR_EMAIL": "chamberlain@localhost",
          "GIT_COMMITTER_NAME": "chamberlain", "GIT_COMMITTER_EMAIL": "chamberlain@localhost"}


class GitError(ChamberlainError):
    """A git command failed: which one, and git's last line (never file contents)."""


@dataclass(frozen=True)
class Published:
    """The commit the branch points at after publishing, and whether publishing made it (False: the tree was
    already there)."""

    commit: str
    changed: bool


def _verb(args: tuple[str, ...]) -> str:
    return next((a for a in args if not a.startswith("-") and "=" not in a), "")


def _git(cwd: Path, env: Mapping[str, str], *args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=dict(env),
                              timeout=GIT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        if isinstance(exc, FileNotFoundError) and exc.filename == "git":  # not a missing cwd: git itself
            raise ToolMissing("git is not installed (publishing the rendered tree runs it): install git") from None
        raise GitError(f"git {_verb(args)} could not run ({type(exc).__name__})") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["unknown reason"])[-1][:300]
        raise GitError(f"git {_verb(args)} failed: {reason}")
    return done.stdout.strip()


def _replace_tree(work: Path, tree: Path) -> None:
    for entry in work.iterdir():
        if entry.name == ".git":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    # A .git inside the tree would merge into the clone's own (config, hooks): never copied.
    shutil.copytree(tree, work, dirs_exist_ok=True, symlinks=True, ignore=shutil.ignore_patterns(".git"))


def publish_tree(tree: Path, url: str, message: str, *, branch: str = "main",
                 base_env: Mapping[str, str] | None = None) -> Published:
    """Make ``branch`` of the remote ``url`` hold exactly ``tree``: clone (an empty remote is fine), replace the
    work tree, commit when something differs, push. Idempotent: publishing the same tree twice makes one commit."""
    if not tree.is_dir():
        raise GitError(f"{tree}: no rendered tree to publish")
    # Neither the system's nor the user's git configuration: no credential helpers, URL rewrites, hooks or signing
    # keys of the caller's apply to this commit.
    env = {**tool_env(base_env or {}), **AUTHOR, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": os.devnull}
    with tempfile.TemporaryDirectory(prefix="chamberlain-publish-") as tmp:
        work = Path(tmp) / "work"
        _git(Path(tmp), env, "-c", "core.hooksPath=/dev/null", "clone", "--quiet", "--", url, str(work))
        _git(work, env, "config", "core.hooksPath", "/dev/null")
        heads = _git(work, env, "ls-remote", "--heads", "origin").splitlines()
        have_branch = any(line.split("\t")[-1] == f"refs/heads/{branch}" for line in heads)
        if have_branch:
            _git(work, env, "checkout", "--quiet", "-B", branch, f"origin/{branch}")
        else:
            _git(work, env, "checkout", "--quiet", "--orphan", branch)
        _replace_tree(work, tree)
        _git(work, env, "add", "--all")
        if have_branch and not _git(work, env, "status", "--porcelain"):
            return Published(_git(work, env, "rev-parse", "HEAD"), changed=False)
        _git(work, env, "commit", "--quiet", "--allow-empty", "-m", message)
        _git(work, env, "push", "--quiet", "origin", f"HEAD:refs/heads/{branch}")
        return Published(_git(work, env, "rev-parse", "HEAD"), changed=True)


__all__ = ["GitError", "Published", "publish_tree"]
