"""Background processes of the lab: start detached, track by pid file, stop by group.

Boundary: generic process plumbing only (no knowledge of any particular server).
Every server runs as the leader of its own session/process group, so ``stop`` can
signal the server and anything it forked in one go and leave nothing behind.
Pid files record the executable too, so a recycled pid is never mistaken for a lab
process.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from chamberlain.clock import Clock, rfc3339


@dataclass(frozen=True)
class ProcInfo:
    name: str
    pid: int
    exe: str
    log: Path


def run_dir(lab_dir: Path) -> Path:
    return lab_dir / "run"


def log_dir(lab_dir: Path) -> Path:
    return lab_dir / "logs"


def _pid_file(lab_dir: Path, name: str) -> Path:
    return run_dir(lab_dir) / f"{name}.pid"


def _state(pid: int) -> str | None:
    """Process state letter from /proc (``None`` if the pid does not exist)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name is parenthesised and may contain spaces: split after the last ')'.
    return stat.rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
    state = _state(pid)
    return state is not None and state not in ("Z", "X")


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def read(lab_dir: Path, name: str) -> ProcInfo | None:
    """The recorded process ``name`` if it is still the process we started."""
    path = _pid_file(lab_dir, name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    info = ProcInfo(name=name, pid=int(data["pid"]), exe=str(data["exe"]), log=Path(data["log"]))
    if not _alive(info.pid):
        return None
    exe = _exe(info.pid)
    # Deleted-then-rebuilt binaries show as "<path> (deleted)".
    if exe and not exe.startswith(info.exe):
        return None
    return info


def start(
    lab_dir: Path,
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    clock: Clock,
    cwd: Path | None = None,
    user: str | None = None,
) -> ProcInfo:
    """Start ``argv`` detached in its own session, logging to ``logs/<name>.log`` (each start is marked there
    with ``clock``'s time)."""
    run_dir(lab_dir).mkdir(parents=True, exist_ok=True)
    log_dir(lab_dir).mkdir(parents=True, exist_ok=True)
    log_dir(lab_dir).chmod(0o700)
    log = log_dir(lab_dir) / f"{name}.log"
    # 0600: a server may print credentials at start-up (Vault's dev mode does).
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as fh:
        fh.write(f"\n==== {rfc3339(clock.now())} starting {name}\n".encode())
        fh.flush()
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd or lab_dir,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=user,
        )
    exe = str(Path(argv[0]).resolve())
    info = ProcInfo(name=name, pid=proc.pid, exe=exe, log=log)
    _pid_file(lab_dir, name).write_text(json.dumps({"pid": proc.pid, "exe": exe, "log": str(log)}), encoding="utf-8")
    return info


def _reap(pid: int) -> None:
    # Only possible when the process is our own child (e.g. inside pytest); a child
    # of an earlier ``lab up`` was re-parented and is reaped by its new parent.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop(lab_dir: Path, name: str, *, sig: int = signal.SIGTERM, timeout: float = 20.0) -> bool:
    """Stop process ``name`` and its whole process group. True if something was stopped."""
    path = _pid_file(lab_dir, name)
    info = read(lab_dir, name)
    if info is None:
        path.unlink(missing_ok=True)
        return False
    pgid = info.pid  # start_new_session: the server leads its own group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(info.pid)
        if not group_members(pgid):
            break
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        kill_deadline = time.monotonic() + 10
        while group_members(pgid) and time.monotonic() < kill_deadline:
            _reap(info.pid)
            time.sleep(0.1)
    _reap(info.pid)
    path.unlink(missing_ok=True)
    return True


_SECRET_LINE = re.compile(r"(root token|unseal key|token|password|secret)\s*[:=]\s*\S+", re.I)


def redact(line: str) -> str:
    """Mask ``<credential word>: value`` pairs so log excerpts are safe to show."""
    return _SECRET_LINE.sub(lambda m: f"{m.group(1)}: <redacted>", line)


def redact_file(log: Path, mask: Sequence[str] = ()) -> None:
    """Redact credential lines of ``log`` in place (the writer keeps appending safely:
    it opened the file with O_APPEND)."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    for value in mask:
        if value:
            text = text.replace(value, "<redacted>")
    cleaned = "\n".join(redact(line) for line in text.split("\n"))
    if cleaned != text:
        with log.open("r+", encoding="utf-8") as fh:
            fh.write(cleaned)
            fh.truncate()


def log_tail(info_or_log: ProcInfo | Path, lines: int = 20, mask: Sequence[str] = ()) -> str:
    """Last ``lines`` lines of a server log, redacted (and ``mask`` values hidden)."""
    log = info_or_log.log if isinstance(info_or_log, ProcInfo) else info_or_log
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    for value in mask:
        if value:
            text = text.replace(value, "<redacted>")
    return "\n".join(redact(line) for line in text.splitlines()[-lines:])
