"""Red-team repositories (tests/repos/redteam/<case>): what an attacker inside one team commits to make chamberlain
act outside that team's boundary, or to hide an intent from validate. Each case is a base example (``acme``, no
tenancy; ``acme-tenancy``) plus the attacker's files (``case.yaml``: ``base``, ``file`` the output must name,
optionally ``rule``, ``symlinks`` {link: target} created in the copy (a target starting with ``@outside/`` is made
in a directory outside the repository), ``long_line`` (append a comment line of that many characters to ``file``)
and ``deep_block`` (write ``file`` as a SecretIntent whose spec nests that many block mappings): big inputs are
generated, never committed). The real CLI entry point runs in a child process: exit 1 within
30 s, the file named, no traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from chamberlain.findings import RULES
from tests.conftest import EXAMPLES, REPO_ROOT

CASES_DIR = REPO_ROOT / "tests" / "repos" / "redteam"
ENTRY = "import sys; from chamberlain.cli.main import main; sys.argv[0] = 'chamberlain'; sys.exit(main())"
CASES = sorted(p for p in CASES_DIR.iterdir() if p.is_dir())
OUTSIDE = "@outside/"


def materialize(case: Path, into: Path) -> tuple[Path, dict[str, object]]:
    spec = yaml.safe_load((case / "case.yaml").read_text())
    repo = into / "repo"
    shutil.copytree(EXAMPLES / spec["base"], repo)
    for src in sorted(case.rglob("*")):
        rel = src.relative_to(case)
        if src.is_dir() or rel.as_posix() == "case.yaml" or rel.parts[0] == "outside":
            continue
        dest = repo / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    if (case / "outside").is_dir():
        shutil.copytree(case / "outside", into / "outside")
    if "long_line" in spec:
        with (repo / str(spec["file"])).open("a") as fh:
            fh.write("  # " + "a" * int(spec["long_line"]) + "\n")
    if "deep_block" in spec:
        lines = "\n".join("  " + " " * i + f"k{i}:" for i in range(int(spec["deep_block"])))
        (repo / str(spec["file"])).write_text("apiVersion: chamberlain.dev/v1alpha1\nkind: SecretIntent\n"
                                              "metadata: {name: deep}\nspec:\n" + lines + " x\n")
    for link, target in (spec.get("symlinks") or {}).items():
        dest = repo / link
        dest.parent.mkdir(parents=True, exist_ok=True)
        target = str(into / "outside" / target[len(OUTSIDE):]) if target.startswith(OUTSIDE) else target
        os.symlink(target, dest)
    return repo, spec


def _validate(repo: Path) -> tuple[int, str, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", ENTRY, "validate", str(repo)],
                          capture_output=True, text=True, timeout=60, env=env, check=False)
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_redteam_repository_is_refused(case: Path, tmp_path: Path) -> None:
    repo, spec = materialize(case, tmp_path)
    code, out, took = _validate(repo)
    assert "Traceback" not in out, out
    assert code == 1, out
    assert took < 30, f"{took:.1f}s"
    assert f"{spec['file']}" in out, out
    if "rule" in spec:
        assert RULES[str(spec["rule"])].severity == "error"
        assert f"{spec['file']}" in out and str(spec["rule"]) in out, out
