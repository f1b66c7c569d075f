"""Declaring a bootstrap file's retirement in the intent repository: the Git half of a retirement.

When GitOps still applies a handed-over bootstrap Secret, consuming it would only see it recreated or refilled.
Handover instead writes the retirement into the repository checkout it was given — the environment joins
``source.bootstrap.retiredIn`` and ``retiredFingerprint`` pins the encrypted file as it is — and the user commits
and pushes it (or ``--commit`` commits that one file), GitOps stops applying the Secret, and the next handover
consumes it. Only the SecretIntent's own document is re-emitted, with a round-trip edit (:mod:`chamberlain.yamledit`):
comments, key order and the rest of the file stay as they were.

Boundary: :func:`declare_retirement` is pure text; :func:`write_retirement` writes one file; :func:`git_commit`
runs ``git`` with the environment it is handed (the tool basics, never the caller's credentials).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml.comments import CommentedSeq

from chamberlain import yamledit
from chamberlain.checks.retirement import file_fingerprint
from chamberlain.errors import ChamberlainError, ToolMissing, UsageError
from chamberlain.intent.loader import Repository
from chamberlain.root.repo import write_atomic
from chamberlain.settings import tool_env

GIT_TIMEOUT = 30.0


class DeclareError(ChamberlainError):
    """The retirement could not be written into, or committed in, the repository checkout."""


@dataclass(frozen=True)
class Declaration:
    """What was (or would be) written: the intent file, whether it changed, and the commit that holds it."""

    file: str  # repository-relative
    environment: str
    fingerprint: str
    changed: bool
    commit: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "environment": self.environment, "fingerprint": self.fingerprint,
                "changed": self.changed, "commit": self.commit}


def declare_retirement(text: str, environment: str, fingerprint: str) -> tuple[str, bool]:
    """One SecretIntent document ``text`` with ``environment`` in ``spec.source.bootstrap.retiredIn`` and
    ``retiredFingerprint`` set: (new text, changed). Pure."""
    yaml, doc = yamledit.load(text)
    bootstrap = yamledit.mapping_at(doc, "spec", "source", "bootstrap")
    if bootstrap is None:
        raise DeclareError("the document has no spec.source.bootstrap mapping to record the retirement in")
    retired = yamledit.child(bootstrap, "retiredIn", CommentedSeq)
    if retired is None:
        raise DeclareError("spec.source.bootstrap.retiredIn is not a list")
    changed = False
    if not retired:
        retired.fa.set_flow_style()  # retiredIn: [dev, prod]
    if environment not in retired:
        retired.append(environment)
        changed = True
    if bootstrap.get("retiredFingerprint") != fingerprint:
        bootstrap["retiredFingerprint"] = fingerprint
        changed = True
    return (yamledit.dump(yaml, doc), True) if changed else (text, False)


def write_retirement(repo: Repository, intent: str, environment: str) -> Declaration:
    """Record the retirement of ``intent``'s bootstrap file in ``environment`` in its SecretIntent file; writes
    only when something changes."""
    loaded = repo.intent_index().get(intent)
    print_name = f"SecretIntent/{intent}"
    if loaded is None:
        raise DeclareError(f"{print_name} is not in {repo.root}")
    fingerprint = file_fingerprint(repo, intent)
    if fingerprint is None:
        raise DeclareError(f"{print_name}: its bootstrap file is not one readable YAML document")
    rf = repo.file(loaded.file)
    if rf is None or rf.text is None:  # pragma: no cover - a loaded intent always comes from a readable file
        raise DeclareError(f"{loaded.file}: cannot be read")
    doc = loaded.doc
    chunk = rf.text[doc.start_index:doc.end_index]
    new_chunk, changed = declare_retirement(chunk, environment, fingerprint)
    if changed:
        if rf.path.is_symlink():
            raise DeclareError(f"{rf.rel}: is a symbolic link; refusing to write through it")
        try:
            write_atomic(rf.path, rf.text[:doc.start_index] + new_chunk + rf.text[doc.end_index:])
        except OSError as exc:
            raise DeclareError(f"{rf.rel}: cannot write the retirement ({exc.strerror})") from None
    return Declaration(rf.rel, environment, fingerprint, changed)


def _git(root: Path, env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, env=dict(env),
                              timeout=GIT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        if isinstance(exc, FileNotFoundError) and exc.filename == "git":  # not a missing directory: git itself
            raise ToolMissing("git is not installed (--commit runs it): install git, or run without --commit and "
                              "commit the change yourself") from None
        raise DeclareError(f"git could not run in {root} ({type(exc).__name__})") from None


def git_env(base: Mapping[str, str]) -> dict[str, str]:
    """What ``git`` starts from: the tool basics and who commits; never the caller's credentials."""
    return {**tool_env(base), **{k: v for k, v in base.items() if k.startswith(("GIT_AUTHOR_", "GIT_COMMITTER_"))}}


def check_work_tree(root: Path, env: Mapping[str, str], files: list[str]) -> None:
    """Before anything is written: ``root`` is inside a Git work tree and ``files`` have no uncommitted changes
    (a commit of them must hold the retirement and nothing else)."""
    inside = _git(root, env, "rev-parse", "--is-inside-work-tree")
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        raise UsageError(f"--commit: {root} is not inside a Git work tree; run without --commit and commit the "
                         "change yourself")
    if files:
        dirty = _git(root, env, "status", "--porcelain", "--", *files)
        if dirty.returncode != 0 or dirty.stdout.strip():
            raise UsageError(f"--commit: {', '.join(files)} has uncommitted changes; commit or stash them first "
                             "(nothing was written)")


def git_commit(root: Path, env: Mapping[str, str], file: str, message: str) -> str:
    """Commit ``file`` alone (``git commit --only``); the new commit's id."""
    done = _git(root, env, "commit", "--only", "--quiet", "-m", message, "--", file)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["unknown reason"])[-1][:200]
        raise DeclareError(f"git commit of {file} failed: {reason}; the change is written, commit it yourself")
    head = _git(root, env, "rev-parse", "HEAD")
    return head.stdout.strip()


__all__ = ["Declaration", "DeclareError", "check_work_tree", "declare_retirement", "git_commit", "git_env",
           "write_retirement"]
