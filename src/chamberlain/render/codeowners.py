"""A CODEOWNERS fragment from ``spec.tenancy`` (issue 11): Git review decides who may write an intent, so the paths
each owner's intents live in, and the Platform and policies, need the right reviewers.

Belongs here: :func:`codeowners`, pure and deterministic. Patterns are relative to the root of the Git work tree
(the intent root's place in it is prefixed), since that is what GitHub and GitLab read. CODEOWNERS applies the last
matching line, so the owners' paths come first and the Platform's and policies' files last: a team path that
happens to cover the Platform file never takes its review away from the platform owners. An owner without
reviewers gets the platform owners' reviewers.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from chamberlain.intent.loader import Repository
from chamberlain.intent.walk import shown
from chamberlain.scan.baseline import REPOSITORY_BASELINE

FILENAME = "CODEOWNERS.chamberlain"
HEADER = (
    "# Written by `chamberlain render` from spec.tenancy of the Platform. Copy it into CODEOWNERS (or append it):\n"
    "# each owner's intent paths are reviewed by that owner; the Platform and the rotation policies by the\n"
    "# platform owners. Branch protection must require code-owner review for this to mean anything.\n"
)


# CODEOWNERS reads a path as a gitignore pattern followed by owners: a space would end it, ``#`` start a comment,
# and ``*?[`` match other files. A file's path is escaped to name just that file (owners' paths are patterns on
# purpose and stay as written).
_LITERAL = str.maketrans({c: "\\" + c for c in "\\ #*?[]!"})


def _literal(path: str) -> str:
    return shown(path).translate(_LITERAL)


def _prefix(repo: Repository) -> str:
    if repo.git_root is None:
        return "/"
    try:
        rel = PurePosixPath(repo.root.resolve().relative_to(repo.git_root.resolve()).as_posix())
    except ValueError:
        return "/"
    return "/" if str(rel) in ("", ".") else f"/{_literal(str(rel))}/"


def codeowners(repo: Repository) -> str | None:
    """The fragment, or None when the Platform declares no tenancy."""
    platform = repo.platform
    tenancy = platform.spec.tenancy if platform is not None else None
    if platform is None or tenancy is None:
        return None
    prefix = _prefix(repo)
    owners = {o.name: o for o in tenancy.owners}
    platform_reviewers = sorted({r for name in tenancy.platform_owners for r in (owners[name].reviewers
                                                                              if name in owners else ())})
    lines = [HEADER]
    for owner in sorted(tenancy.owners, key=lambda o: o.name):
        if not owner.paths:
            continue
        reviewers = sorted(set(owner.reviewers)) or platform_reviewers
        lines.append(f"\n# {owner.name}\n")  # comments on lines of their own: CODEOWNERS has no inline comments
        for path in sorted(set(owner.paths)):
            lines.append(f"{prefix}{path.lstrip('/')} {' '.join(reviewers)}".rstrip() + "\n")
    lines.append("\n# the Platform, the rotation policies and the baseline: platform owners (last, so they win)\n")
    # The repository's baseline accepts credential findings for every command (scan.baseline): the platform's too,
    # whether or not it exists yet, so a team cannot add one under its own review.
    for rel in sorted({repo.platforms[0].file, *(p.file for p in repo.policies), REPOSITORY_BASELINE}):
        lines.append(f"{prefix}{_literal(rel)} {' '.join(platform_reviewers)}".rstrip() + "\n")
    return "".join(lines)
