"""The validate-before-use gate: a repository with error findings is never rendered, applied or acted on.

Belongs here: loading a repository and running every check on it (:func:`validate_repository`), and refusing it
when an error is found (:func:`load_valid`, :class:`InvalidRepository`) that the repository's baseline does not
accept (reviewed credential findings, ``.chamberlain-baseline`` at its root). Warnings (new rules that need new
declarations, SPEC §10) pass the gate unless ``strict``. It sits with the checks, low in the layers,
because every package that reads a repository to act on it (the GitOps stand-in, the use cases in
:mod:`chamberlain.service`, the controller's loader) goes through it. Not here: the rules themselves
(:mod:`chamberlain.checks.registry`), rendering or printing findings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from chamberlain.checks.registry import run_checks
from chamberlain.errors import ChamberlainError
from chamberlain.findings import Finding, blocking
from chamberlain.intent.loader import Repository, load_repository
from chamberlain.scan.baseline import Baseline, repository_baseline


@dataclass
class Validation:
    repo: Repository
    findings: list[Finding]  # errors and warnings
    # Credential findings a baseline accepts (the repository's own, or one given): reported, never blocking.
    accepted: list[Finding] = field(default_factory=list)
    baseline: Baseline | None = None  # the baseline applied, if any

    def blocking(self, *, strict: bool = False) -> list[Finding]:
        if not self.accepted:
            return blocking(self.findings, strict=strict)
        accepted = set(self.accepted)
        return [f for f in blocking(self.findings, strict=strict) if f not in accepted]

    @property
    def errors(self) -> list[Finding]:
        """The findings that refuse the repository; warnings are printed but never do on their own (SPEC §10)."""
        return self.blocking()

    def with_baseline(self, baseline: Baseline | None) -> Validation:
        """The same findings with ``baseline``'s acceptances instead (None: none)."""
        accepted = [f for f in self.findings if baseline.accepts(f)] if baseline is not None else []
        return Validation(self.repo, self.findings, accepted, baseline)


class InvalidRepository(ChamberlainError):
    """The repository has error findings (or, strict, warnings); the requested step applies nothing."""

    def __init__(self, root: Path, findings: list[Finding]) -> None:
        self.findings = findings
        super().__init__(
            f"{root}: {len(findings)} findings; run `chamberlain validate {root}` (nothing was done)"
        )


def validate_repository(root: Path, baseline: Baseline | None = None) -> Validation:
    return check_repository(load_repository(root), baseline)


def check_repository(repo: Repository, baseline: Baseline | None = None) -> Validation:
    """Every check on a repository already loaded (a caller that starts other work between loading and checking),
    with the findings ``baseline`` accepts: by default the repository's own (``.chamberlain-baseline`` at its root),
    read here and only here when none is given."""
    return Validation(repo, run_checks(repo)).with_baseline(
        baseline if baseline is not None else repository_baseline(repo.root))


def load_valid(root: Path, *, strict: bool = False) -> Repository:
    """Load and validate; raise :class:`InvalidRepository` on any error finding (any finding when ``strict``)."""
    result = validate_repository(root)
    stopping = result.blocking(strict=strict)
    if stopping:
        raise InvalidRepository(root, stopping)
    return result.repo


__all__ = ["InvalidRepository", "Validation", "check_repository", "load_valid", "validate_repository"]
