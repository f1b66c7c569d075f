"""Use cases over the intent repository alone: validate, render, inventory, and loading for the other use cases.

Belongs here: finding the repository's root (a usage error when it is not a directory), the validate-before-use
gate applied to it (nothing is rendered or acted on from a repository with findings; the gate itself is
:mod:`chamberlain.checks.gate`), and the three offline use cases. Reads files, talks to no server, prints nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from chamberlain.errors import UsageError

if TYPE_CHECKING:
    from chamberlain.checks.gate import Validation
    from chamberlain.findings import Finding
    from chamberlain.intent.loader import Repository
    from chamberlain.intent.model import Platform
    from chamberlain.intent.walk import Exclusion
    from chamberlain.inventory.model import Inventory
    from chamberlain.render import Staleness
    from chamberlain.scan.baseline import Baseline


@dataclass
class RenderOutcome:
    findings: list[Finding]  # everything found; rendering stopped only when ``rendered`` is False
    files: int = 0
    rendered: bool = False
    stale: Staleness | None = None  # with ``check``: how the committed output differs (nothing was written)
    exclusions: list[Exclusion] = field(default_factory=list)  # what the loader left out of intent, reported
    accepted: list[Finding] = field(default_factory=list)  # credential findings a baseline accepts (not blocking)


def repository_root(path: str | Path) -> Path:
    """The intent repository's root, or a usage error (exit 2) that says what is wrong with ``path``."""
    if isinstance(path, str) and not path:  # Path("") is the current directory: never what an empty word meant
        raise UsageError("the repository path is empty; pass the root of the intent repository (. for here)")
    root = Path(path)
    try:
        exists, is_dir = root.exists(), root.is_dir()
    except OSError as exc:  # a name too long, a permission on the way
        raise UsageError(f"{path}: {exc.strerror}") from None
    if not exists:
        raise UsageError(f"{path}: no such directory")
    if not is_dir:
        raise UsageError(f"{path}: not a directory; pass the root of the intent repository")
    return root


def validate(path: str | Path, baseline: Baseline | None = None) -> Validation:
    """Every check over the repository at ``path`` (``chamberlain validate``), with ``baseline``'s acceptances
    (default: the repository's own)."""
    from chamberlain.checks.gate import validate_repository

    return validate_repository(repository_root(path), baseline)


def load_valid(path: str | Path) -> Repository:
    """The repository at ``path``, which must validate clean; :class:`~chamberlain.checks.gate.InvalidRepository`
    otherwise."""
    from chamberlain.checks.gate import load_valid as gate

    return gate(repository_root(path))


def load_platform(path: str | Path) -> tuple[Repository, Platform]:
    """A repository that must validate clean (anything else applies nothing), and its one Platform."""
    repo = load_valid(path)
    platform = repo.platform
    if platform is None:  # pragma: no cover - the checks reject a repository without exactly one Platform
        raise UsageError(f"{path}: the repository needs exactly one Platform")
    return repo, platform


def load_unvalidated(path: str | Path) -> tuple[Repository, Platform]:
    """A repository loaded without the checks, and its one Platform: reading what the authority recorded (the
    audit) must work while the repository has unrelated findings."""
    from chamberlain.intent.loader import load_repository

    repo = load_repository(repository_root(path))
    if repo.platform is None:
        raise UsageError(f"{path}: the repository needs exactly one Platform")
    return repo, repo.platform


def render(path: str | Path, out: Path, *, strict: bool = False, check: bool = False,
           baseline: str | None = None) -> RenderOutcome:
    """The GitOps output of a repository without errors (``strict``: without warnings either) written to ``out``;
    otherwise nothing is written. ``check``: write nothing, compare ``out`` with a fresh render instead. The
    credential findings a baseline accepts do not block: ``baseline``'s, else the repository's own."""
    from chamberlain.checks.gate import check_repository
    from chamberlain.intent.loader import active_cache, load_repository
    from chamberlain.render import compare_output, render_repository, start_render, write_tree
    from chamberlain.render.incremental import Record, record_render, rerendered, start_rerender
    from chamberlain.scan.baseline import load_baseline

    given = load_baseline(baseline) if baseline is not None else None  # a bad one: a usage error before any work
    repo = load_repository(repository_root(path))
    # The last render into ``out`` recorded what it wrote: unchanged pieces are kept (chamberlain.render.incremental).
    cache = active_cache()
    record = Record(cache, Path(out).absolute()) if cache is not None and not check else None
    # Either way a large repository's render starts in a child while the checks run: keeping what it can, or (a
    # first render) writing the Vault bundle to a stage (it becomes vault/) once they passed.
    again_ahead = ahead = None
    rerendering = record is not None and record.exists()
    try:
        if record is not None and rerendering:
            again_ahead = start_rerender(repo, record)
        else:
            ahead = start_render(repo, stage=not check)
        result = check_repository(repo, given)
        excluded = result.repo.exclusions
        if result.blocking(strict=strict):
            return RenderOutcome(result.findings, exclusions=excluded, accepted=result.accepted)
        again = rerendered(again_ahead, result.repo, record) if record is not None and rerendering else None
        if again is not None and record is not None:
            tree, kept = again.tree, record.paths_of(again.kept)
        else:
            if ahead is not None and not check:
                ahead.stage_into(out)
            tree, kept = render_repository(result.repo, parallel=True, ahead=ahead), frozenset()
        if check:
            return RenderOutcome(result.findings, len(tree.files), rendered=True, stale=compare_output(tree, out),
                                 exclusions=excluded, accepted=result.accepted)
        write_tree(tree, out, staged=ahead.staged if ahead is not None else None, kept=kept)
        if again is not None and record is not None:
            again.save(record)
        elif record is not None:
            record_render(record, tree, result.repo)
    finally:
        if again_ahead is not None:
            again_ahead.close()
        if ahead is not None:
            ahead.finish()  # the child reaped; its stage removed unless it became vault/
    return RenderOutcome(result.findings, len(tree.files) + len(kept), rendered=True, exclusions=excluded,
                         accepted=result.accepted)


def git_prefix(repo: Repository) -> str:
    """Where the intent root lies inside its Git work tree (posix, ``""`` at the top or outside Git): what SARIF
    paths are prefixed with, so code scanning finds the file in a monorepo."""
    if repo.git_root is None or not repo.root.is_relative_to(repo.git_root):
        return ""
    rel = repo.root.relative_to(repo.git_root).as_posix()
    return "" if rel == "." else rel


def inventory(path: str | Path) -> Inventory:
    """What exists, who owns it, who depends on it, when it rotates (``chamberlain inventory``)."""
    from chamberlain.inventory import build_inventory

    return build_inventory(load_valid(path))


def vault_bundle(repo: Repository) -> dict[str, str]:
    """The Vault part of the rendered output (mounts, policies, roles), keyed by its path below ``vault/``."""
    from chamberlain.render import render_repository

    tree = render_repository(repo)
    return {p[len("vault/"):]: tree[p] for p in tree.paths() if p.startswith("vault/")}


__all__ = [
    "RenderOutcome",
    "git_prefix",
    "inventory",
    "load_platform",
    "load_unvalidated",
    "load_valid",
    "render",
    "repository_root",
    "validate",
    "vault_bundle",
]
