"""Shared test helpers: run the CLI in-process through its real error boundary."""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CORPUS = REPO_ROOT / "tests" / "corpus"
EXAMPLES = REPO_ROOT / "examples"


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(*args: str) -> CliResult:
    """Run ``chamberlain ARGS`` through ``main()`` (the real error boundary), capturing both streams."""
    from chamberlain.cli import output
    from chamberlain.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    old_argv = sys.argv
    sys.argv = ["chamberlain", *args]
    # rich consoles bind the stream at creation; point them at our buffers for this call.
    old_consoles = (output.stdout.file, output.stderr.file)
    output.stdout.file, output.stderr.file = out, err
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old_argv
        output.stdout.file, output.stderr.file = old_consoles
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli() -> type[CliResult]:
    return CliResult
