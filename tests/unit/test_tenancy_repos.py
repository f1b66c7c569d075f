"""Adversarial repositories (tests/repos/tenancy/<case>): each is a base example plus what an attacker inside one
team would commit. Each must be refused by the real CLI entry point — exit 1 within 30 s, the offending file (and
line, where the case says) named, no traceback — in every output format. The bases themselves stay valid."""

from __future__ import annotations

import json
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

CASES_DIR = REPO_ROOT / "tests" / "repos" / "tenancy"
ENTRY = "import sys; from chamberlain.cli.main import main; sys.argv[0] = 'chamberlain'; sys.exit(main())"
CASES = sorted(p for p in CASES_DIR.iterdir() if p.is_dir())


def materialize(case: Path, into: Path) -> tuple[Path, dict[str, object]]:
    spec = yaml.safe_load((case / "case.yaml").read_text())
    repo = into / "repo"
    shutil.copytree(EXAMPLES / spec["base"], repo)
    for src in sorted(case.rglob("*")):
        rel = src.relative_to(case)
        if src.is_dir() or rel.as_posix() == "case.yaml":
            continue
        dest = repo / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    return repo, spec


def _validate(repo: Path, fmt: str) -> tuple[int, str, float]:
    """`chamberlain validate` in a child process through the console script's entry point (main), as a user runs
    it."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", ENTRY, "validate", str(repo), "-o", fmt],
                          capture_output=True, text=True, timeout=60, env=env, check=False)
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


@pytest.mark.parametrize("base", ["acme", "acme-tenancy"])
def test_bases_validate(base: str) -> None:
    code, out, _ = _validate(EXAMPLES / base, "text")
    assert code == 0, out


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_adversarial_repository_is_refused(case: Path, tmp_path: Path) -> None:
    repo, spec = materialize(case, tmp_path)
    assert spec["rule"] in RULES and RULES[str(spec["rule"])].severity == "error"
    for fmt in ("json", "text", "sarif"):
        code, out, took = _validate(repo, fmt)
        assert "Traceback" not in out, out
        assert code == 1, out
        assert took < 30, f"{fmt}: {took:.1f}s"
        assert str(spec["file"]) in out, out
        if fmt == "json":
            results = json.loads(out[: out.rindex("}") + 1])["results"]
            hits = [r for r in results if r["rule"] == spec["rule"] and r["file"] == spec["file"]]
            assert hits, results
            assert all(r["line"] for r in hits)
            if "line" in spec:
                assert any(r["line"] == spec["line"] for r in hits), hits
        elif fmt == "text":
            assert f"{spec['file']}:" in out and str(spec["rule"]) in out, out
