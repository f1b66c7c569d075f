"""``python -m chamberlain.lab build [COMPONENT...]`` builds missing lab binaries.

Kept separate from the typer CLI so CI can build the cache before the CLI (and its
optional dependencies) matter. An entry point: it reads the process environment once
(:class:`~chamberlain.settings.Settings`: ``CHAMBERLAIN_CACHE_DIR`` and the
environment ``go`` runs with) and passes the values down.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from chamberlain.errors import ToolMissing
from chamberlain.lab.builds import BuildError, build_missing
from chamberlain.settings import Settings


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "build":
        print("usage: python -m chamberlain.lab build [--force] [COMPONENT ...]", file=sys.stderr)
        return 2
    args = argv[1:]
    force = "--force" in args
    names = [a for a in args if a != "--force"]
    settings = Settings.from_environ(os.environ, Path.home())
    try:
        build_missing(settings.lab_cache, names or None, env=settings.child_env, force=force)
    except (BuildError, ToolMissing, KeyError) as exc:
        print(f"[lab build] error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ToolMissing) else 1  # a missing Go toolchain is a usage error, as in the CLI
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
