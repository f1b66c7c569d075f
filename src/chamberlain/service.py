"""Use cases the CLI and the controller share: load and validate, render after validation.

This is the "merge, diff, apply" glue: it sequences core functions and holds no logic of its own beyond the rule
that nothing is rendered or applied from a repository with findings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chamberlain.checks import run_checks
from chamberlain.errors import ChamberlainError
from chamberlain.findings import Finding
from chamberlain.intent.loader import Repository, load_repository


@dataclass
class Validation:
    repo: Repository
    findings: list[Finding]


@dataclass
class RenderOutcome:
    findings: list[Finding]
    files: int = 0


class InvalidRepository(ChamberlainError):
    """The repository has findings; the requested step applies nothing."""

    def __init__(self, root: Path, findings: list[Finding]) -> None:
        self.findings = findings
        super().__init__(
            f"{root}: {len(findings)} findings; run `chamberlain validate {root}` (nothing was done)"
        )


def validate_repository(root: Path) -> Validation:
    repo = load_repository(root)
    return Validation(repo, run_checks(repo))


def load_valid(root: Path) -> Repository:
    """Load and validate; raise :class:`InvalidRepository` on any finding."""
    result = validate_repository(root)
    if result.findings:
        raise InvalidRepository(root, result.findings)
    return result.repo


def render_to(root: Path, out: Path) -> RenderOutcome:
    from chamberlain.render import render_repository, write_tree

    result = validate_repository(root)
    if result.findings:
        return RenderOutcome(result.findings)
    tree = render_repository(result.repo)
    write_tree(tree, out)
    return RenderOutcome([], len(tree.files))
