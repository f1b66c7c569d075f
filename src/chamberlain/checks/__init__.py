"""Invariant checks over a loaded intent repository (SPEC §2, §9).

Belongs here: one function per rule family, registered in :mod:`chamberlain.checks.registry`, each a pure
function from a :class:`~chamberlain.intent.loader.Repository` to findings. Nothing here mutates anything or talks
to a server. ``run_checks`` is the entry point; the rule catalogue is :data:`chamberlain.findings.RULES`.
"""

from chamberlain.checks.registry import CHECKS, run_checks

__all__ = ["CHECKS", "run_checks"]
