"""The ``chamberlain`` command ends its process without tearing the interpreter down (``cli.main.leave``): the exit
code, the output, and the exit handlers are as Python's own exit leaves them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(SRC)})


@pytest.mark.parametrize(("code", "status"), [("None", 0), ("0", 0), ("1", 1), ("3", 3), ("-1", 255), ("256", 0)])
def test_the_exit_code_is_pythons(code: str, status: int) -> None:
    got = _python(f"from chamberlain.cli.main import leave; print('out', end=''); leave({code})")
    assert got.returncode == status and got.stdout == "out"


def test_a_message_as_the_code_exits_as_python_does() -> None:
    got = _python("from chamberlain.cli.main import leave; leave('went wrong')")
    assert got.returncode == 1 and "went wrong" in got.stderr


def test_exit_handlers_run_and_buffered_output_is_flushed(tmp_path: Path) -> None:
    marker = tmp_path / "handler-ran"
    got = _python("import atexit, sys\n"
                  f"atexit.register(lambda: open({str(marker)!r}, 'w').close())\n"
                  "sys.stdout.write('x' * 100000); sys.stderr.write('err')\n"
                  "from chamberlain.cli.main import leave; leave(0)")
    assert got.returncode == 0 and marker.exists()
    assert got.stdout == "x" * 100000 and got.stderr == "err"


def test_with_another_thread_alive_the_exit_waits_for_it(tmp_path: Path) -> None:
    """A thread still working (not a daemon) finishes first, as Python's exit waits for it."""
    marker = tmp_path / "thread-done"
    got = _python("import threading, time\n"
                  f"def work():\n    time.sleep(0.3); open({str(marker)!r}, 'w').close()\n"
                  "threading.Thread(target=work).start()\n"
                  "from chamberlain.cli.main import leave; leave(4)")
    assert got.returncode == 4 and marker.exists()


def test_the_command_runs_through_console() -> None:
    got = subprocess.run([sys.executable, "-m", "chamberlain.cli.main", "--version"], capture_output=True,
                         text=True, timeout=120, check=False, env={**os.environ, "PYTHONPATH": str(SRC)})
    assert got.returncode == 0 and got.stdout.startswith("chamberlain ")
    bad = subprocess.run([sys.executable, "-m", "chamberlain.cli.main", "no-such-command"], capture_output=True,
                         text=True, timeout=120, check=False, env={**os.environ, "PYTHONPATH": str(SRC)})
    assert bad.returncode == 2 and "No such command" in bad.stderr


@pytest.mark.parametrize(("closed", "status"), [("2>&-", 0), (">&-", 1)])
def test_a_stream_closed_from_the_start_exits_as_before(closed: str, status: int) -> None:
    """A supervisor that closes stderr leaves Python without ``sys.stderr``: the command still exits 0. With stdout
    closed, ``--version`` cannot print (exit 1, as before), and no traceback follows."""
    shell = f"{sys.executable} -m chamberlain.cli.main --version {closed}; echo rc=$?"
    got = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120, check=False,
                         env={**os.environ, "PYTHONPATH": str(SRC)})
    assert f"rc={status}" in got.stdout, got.stdout + got.stderr
    assert "Traceback" not in got.stderr
