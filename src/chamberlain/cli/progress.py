"""What a command is doing while it waits, on stderr: a live status line on a terminal, a plain line per stage
and every ``every`` seconds of waiting otherwise (CI logs, pipes; sparser after a minute). stdout is never
touched, so ``-o json`` stays parseable.

A run's wait is a sleep on the injected clock (the workflow's wait for a due step, propagation's poll for consumer
Secrets), so the display hooks in there: :class:`ReportingClock` wraps the command's clock and reports after each
slice of sleep; the stage comes from the workflow (``on_stage``). It shows secret names, stages and seconds;
never a value.
"""

from __future__ import annotations

from datetime import datetime
from types import TracebackType

from rich.console import Console
from rich.status import Status

from chamberlain.clock import Clock

# What a run at one of these stages waits for (the stage is the one reached; the wait is for the next step).
WAITS = {"promoted": "consumers syncing", "revoke-wait": "overlap before revoking the previous version"}


class WaitProgress:
    """The stage a command is at and how long it has waited in it, shown on ``console`` (stderr)."""

    def __init__(self, console: Console, clock: Clock, *, verb: str = "rotate", every: float = 10.0,
                 live: bool | None = None) -> None:
        self._console = console
        self._clock = clock
        self._verb = verb
        self._every = every
        self._live = console.is_terminal if live is None else live
        self._status: Status | None = None
        self._what = ""
        self._since = 0.0
        self._last_line = 0.0
        self.text = ""  # what the live line shows now

    def stage(self, secret: str, stage: str) -> None:
        """The run of ``secret`` is about to run (or wait in) ``stage``."""
        what = f"{secret}: {stage}" + (f" ({WAITS[stage]})" if stage in WAITS else "")
        if what == self._what:
            return
        self._what, self._since = what, self._clock.monotonic()
        self._last_line = self._since
        if self._live:
            self.text = f"{self._verb} {what}"
            if self._status is None:
                self._status = Status(self.text, console=self._console)
                self._status.start()
            else:
                self._status.update(self.text)
        else:
            self._console.print(f"[{self._verb}] {what}", markup=False, highlight=False, soft_wrap=True)

    def waited(self) -> None:
        """Called after each slice of a wait: refresh the elapsed time, or print a line every ``every`` seconds."""
        if not self._what:
            return
        now = self._clock.monotonic()
        waited = now - self._since
        if self._live and self._status is not None:
            self.text = f"{self._verb} {self._what}, waiting {waited:.0f}s"
            self._status.update(self.text)
        elif not self._live and now - self._last_line >= self._interval(waited):
            self._last_line = now
            self._console.print(f"[{self._verb}] {self._what}, waiting {waited:.0f}s", markup=False,
                                highlight=False, soft_wrap=True)

    def _interval(self, waited: float) -> float:
        """Seconds between plain lines: ``every`` for the first minute, then sparser (a revoke after an hour's
        overlap must not flood a CI log)."""
        return self._every if waited < 60 else max(self._every, 60.0) if waited < 600 else max(self._every, 300.0)

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def __enter__(self) -> WaitProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class ReportingClock:
    """``inner``, whose sleeps are cut into slices of at most ``slice_seconds`` with ``progress`` told after each
    (a long wait shows it is alive). Time itself is ``inner``'s."""

    def __init__(self, inner: Clock, progress: WaitProgress, *, slice_seconds: float = 1.0) -> None:
        self.inner = inner
        self.progress = progress
        self.slice_seconds = slice_seconds

    def now(self) -> datetime:
        return self.inner.now()

    def monotonic(self) -> float:
        return self.inner.monotonic()

    def sleep(self, seconds: float) -> None:
        left = max(seconds, 0.0)
        while True:
            step = min(left, self.slice_seconds)
            self.inner.sleep(step)
            left -= step
            self.progress.waited()
            if left <= 0:
                return

    def __repr__(self) -> str:
        return f"ReportingClock({self.inner!r})"


__all__ = ["ReportingClock", "WaitProgress"]
