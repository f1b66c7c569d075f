"""The one error hierarchy of chamberlain.

Every error a user can see derives from :class:`ChamberlainError`. Messages never carry secret values: callers
pass names, paths and reasons, never data.
"""

from __future__ import annotations


class ChamberlainError(Exception):
    """Base of every error chamberlain raises on purpose. The CLI prints these without a traceback.

    ``retryable`` splits errors into temporary (trying the same thing again later may succeed: a server is down,
    an object changed under us) and permanent (it will fail the same way until someone changes something).
    Workflows decide retry, alert or hold on this flag alone, never on an error's text."""

    exit_code: int = 1
    retryable: bool = False


class UsageError(ChamberlainError):
    """The user asked for something that cannot be done as asked (bad path, bad option combination)."""

    exit_code = 2


class IntentError(ChamberlainError):
    """The intent repository cannot be loaded at all (as opposed to findings inside it)."""


class ToolMissing(UsageError):
    """A program chamberlain runs (sops, age-keygen, git, go, a lab server) is not installed: a missing dependency,
    so a usage error (exit 2) like a missing runtime extra. The message names the program and how to get it."""
