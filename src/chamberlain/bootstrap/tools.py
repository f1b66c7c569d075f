"""Where the external encryption tools are: ``sops``, ``age`` and ``age-keygen``.

We shell out to the ecosystem's own binaries rather than re-implementing SOPS or age: the files must be exactly what
KSOPS and Flux's kustomize-controller decrypt in-cluster. Lookup order, first hit wins: the explicit binary
(``CHAMBERLAIN_<NAME>``: ``CHAMBERLAIN_SOPS``, ``CHAMBERLAIN_AGE_KEYGEN``, ...), the ``PATH``, then the lab's build
cache (``chamberlain lab build sops age``), so a developer with only the lab set up needs nothing else.

All three come in a :class:`Tools` value the entry point builds from its :class:`~chamberlain.settings.Settings`;
nothing here reads the process environment.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from chamberlain.errors import ToolMissing
from chamberlain.settings import TOOLS, Settings, tool_variable

KNOWN = TOOLS
# The lab component that builds each tool (chamberlain.lab.builds, not imported here: a tool lookup must not
# depend on the lab package).
_LAB_BUILD = {"sops": "sops", "age": "age", "age-keygen": "age"}
_UPSTREAM = {"sops": "https://github.com/getsops/sops", "age": "https://github.com/FiloSottile/age",
             "age-keygen": "https://github.com/FiloSottile/age"}


@dataclass(frozen=True)
class Tools:
    """Where to look for the tools, and the environment they start from.

    ``env`` is the environment a tool's process starts from (its ``PATH`` is searched); ``overrides`` the explicit
    binaries by tool name; ``lab_cache`` the lab's build cache (None: not searched).
    """

    env: Mapping[str, str] = field(repr=False, hash=False)  # a mapping: left out of the hash, kept in ==
    overrides: Mapping[str, Path] = field(default_factory=dict, hash=False)
    lab_cache: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Tools:
        return cls(settings.child_env, settings.tools, settings.lab_cache)

    def find(self, name: str) -> Path:
        """The path of ``name`` (one of :data:`KNOWN`); raise :class:`ToolMissing` with how to get it."""
        if name not in KNOWN:
            raise ValueError(f"unknown tool {name!r}")
        override = self.overrides.get(name)
        if override is not None:
            if override.is_file() and os.access(override, os.X_OK):
                return override
            raise ToolMissing(f"{tool_variable(name)}={override} is not an executable file")
        found = shutil.which(name, path=self.env.get("PATH", os.defpath))
        if found:
            return Path(found)
        cached = self._cached(name)
        if cached is not None:
            return cached
        raise ToolMissing(
            f"{name} is not installed: install it on PATH ({_UPSTREAM[name]}), set {tool_variable(name)} to its "
            f"path, or build it with `chamberlain lab build {_LAB_BUILD[name]}`"
        )

    def _cached(self, name: str) -> Path | None:
        if self.lab_cache is None:
            return None
        try:  # imported lazily so the tool itself never depends on the lab package being usable
            from chamberlain.lab import builds

            cached = builds.binary(self.lab_cache, name)
            if cached.is_file():
                return cached
        except (ImportError, KeyError, OSError):
            pass
        return None


__all__ = ["KNOWN", "ToolMissing", "Tools"]  # ToolMissing lives in chamberlain.errors; importable from here too
