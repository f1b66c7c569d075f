"""Where the external encryption tools are: ``sops``, ``age`` and ``age-keygen``.

We shell out to the ecosystem's own binaries rather than re-implementing SOPS or age: the files must be exactly what
KSOPS and Flux's kustomize-controller decrypt in-cluster. Lookup order, first hit wins: the environment variable
``CHAMBERLAIN_<NAME>`` (``CHAMBERLAIN_SOPS``, ``CHAMBERLAIN_AGE_KEYGEN``, ...), the ``PATH``, then the lab's build
cache (``chamberlain lab build sops age``), so a developer with only the lab set up needs nothing else.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from chamberlain.errors import ChamberlainError
from chamberlain.settings import Settings

KNOWN = ("sops", "age", "age-keygen")


class ToolMissing(ChamberlainError):
    """A binary chamberlain shells out to is not installed."""


def env_var(name: str) -> str:
    return "CHAMBERLAIN_" + name.upper().replace("-", "_")


def find_tool(name: str) -> Path:
    """The path of ``name`` (one of :data:`KNOWN`); raise :class:`ToolMissing` with how to get it."""
    if name not in KNOWN:
        raise ValueError(f"unknown tool {name!r}")
    override = os.environ.get(env_var(name))
    if override:
        path = Path(override)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise ToolMissing(f"{env_var(name)}={override} is not an executable file")
    found = shutil.which(name)
    if found:
        return Path(found)
    try:  # the lab cache; imported lazily so the tool itself never depends on the lab package being usable
        from chamberlain.lab import builds

        cached = builds.binary(Settings.from_environ(os.environ, Path.home()).lab_cache, name)
        if cached.is_file():
            return cached
    except (ImportError, KeyError, OSError):
        pass
    raise ToolMissing(
        f"{name} not found: install it on PATH, set {env_var(name)}, or run `chamberlain lab build sops age`"
    )
