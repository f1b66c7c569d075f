"""Named crash points for crash-injection tests (no effect in normal operation).

Workflows call :func:`checkpoint` at every boundary between two durable steps. When the environment variable
``CHAMBERLAIN_CRASH_AT`` names that checkpoint, the process ends on the spot with ``os._exit(137)`` — no cleanup,
no ``finally`` blocks, no flushing — the way a SIGKILL or a node loss would end it. Tests then run the same command
again without the variable and assert that it converges: that is how "every step is resumable" is proved rather
than claimed.
"""

from __future__ import annotations

import os

ENV = "CHAMBERLAIN_CRASH_AT"
EXIT_CODE = 137  # what a shell reports for a process killed by SIGKILL


def checkpoint(name: str) -> None:
    """Die here, like a killed process, when ``CHAMBERLAIN_CRASH_AT`` equals ``name``."""
    if os.environ.get(ENV) == name:
        os._exit(EXIT_CODE)
