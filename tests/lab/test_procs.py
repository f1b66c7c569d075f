"""Process plumbing of the lab (no servers needed): a stopped process leaves nothing,
not even the children it forked; a stale pid file is never trusted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

from chamberlain.clock import FakeClock
from chamberlain.lab import procs

SH = shutil.which("sh") or "/bin/sh"


def test_stop_kills_the_whole_process_group(tmp_path: Path) -> None:
    info = procs.start(tmp_path, "forker", [SH, "-c", "sleep 300 & sleep 300 & wait"], env={"PATH": os.defpath},
                       clock=FakeClock())
    deadline = time.monotonic() + 10
    while len(procs.group_members(info.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(procs.group_members(info.pid)) == 3
    assert procs.read(tmp_path, "forker") == info
    assert procs.stop(tmp_path, "forker", sig=signal.SIGTERM, timeout=10)
    assert procs.group_members(info.pid) == []
    assert procs.read(tmp_path, "forker") is None
    assert not procs.stop(tmp_path, "forker")  # idempotent
    assert info.log.stat().st_mode & 0o077 == 0


def test_stale_or_foreign_pid_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    # Our own pid, but recorded with another executable: must not be treated as the server.
    (tmp_path / "run" / "ghost.pid").write_text(
        json.dumps({"pid": os.getpid(), "exe": "/nonexistent/server", "log": str(tmp_path / "x.log")})
    )
    assert procs.read(tmp_path, "ghost") is None
    assert not procs.stop(tmp_path, "ghost")
    assert not (tmp_path / "run" / "ghost.pid").exists()


def test_redaction_hides_credentials() -> None:
    assert procs.redact("Root Token: s.abcdef") == "Root Token: <redacted>"
    assert procs.redact("Unseal Key: AAAA/bbbb=") == "Unseal Key: <redacted>"
    assert procs.redact("listening on 127.0.0.1:8200") == "listening on 127.0.0.1:8200"
