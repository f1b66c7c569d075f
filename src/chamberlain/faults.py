"""Named crash points for crash-injection tests (no effect in normal operation).

Workflows call :func:`checkpoint` at every boundary between two durable steps. When the entry point armed that
checkpoint (``chamberlain`` arms the one named by ``CHAMBERLAIN_CRASH_AT``, see :mod:`chamberlain.settings`), the
process ends on the spot with ``os._exit(137)`` — no cleanup, no ``finally`` blocks, no flushing — the way a
SIGKILL or a node loss would end it. Tests then run the same command again without the variable and assert that
it converges: that is how "every step is resumable" is proved rather than claimed.
"""

from __future__ import annotations

import os

EXIT_CODE = 137  # what a shell reports for a process killed by SIGKILL

_armed: str | None = None


def arm(name: str | None) -> None:
    """Crash at the checkpoint ``name`` when it is reached (None: never). Called once, by an entry point."""
    global _armed
    _armed = name or None


def checkpoint(name: str) -> None:
    """Die here, like a killed process, when this checkpoint is the armed one."""
    if _armed is not None and _armed == name:
        os._exit(EXIT_CODE)
