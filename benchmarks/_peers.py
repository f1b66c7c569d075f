"""The peer tools the benchmarks compare with (gitleaks, kubeconform): on-demand lab components, found in the lab
cache or built from Go modules only when asked (``--build-<tool>``); a smoke run never builds."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def peer_binary(name: str, explicit: Path | None, build: bool) -> tuple[Path | None, str]:
    """The binary of ``builds.ON_DEMAND[name]`` and a note saying where it came from (or why there is none)."""
    if explicit is not None:
        return (explicit, "given") if explicit.is_file() else (None, f"{explicit}: no such file")
    from chamberlain.lab import builds
    from chamberlain.settings import Settings

    settings = Settings.from_environ(os.environ, Path.home())
    comp = builds.ON_DEMAND[name]
    binary = builds.component_dir(settings.lab_cache, comp) / "bin" / name
    if binary.is_file():
        return binary, f"cached build of {comp.version}"
    if not build:
        return None, (f"{name} {comp.version} is not built ({binary}); run with --build-{name} to build it from "
                      "Go modules")
    started = time.perf_counter()
    builds.build(settings.lab_cache, comp, env=settings.child_env, progress=lambda msg: print(msg, file=sys.stderr))
    return binary, f"built {comp.version} in {time.perf_counter() - started:.0f} s"
