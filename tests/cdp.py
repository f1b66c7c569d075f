"""A minimal Chrome DevTools Protocol client for headless Chromium, over ``--remote-debugging-pipe``.

Why not a library: playwright downloads its own browsers (blocked here) and a websocket client needs a port and
its discovery; the pipe needs neither. Chromium reads commands from fd 3 and writes replies and events to fd 4,
each a JSON message ended by a NUL byte, which is all this module speaks. Enough to drive one page: navigate,
evaluate, screenshot, and collect the events (network requests, console) that tests assert on.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Message = dict[str, Any]


def find_chromium() -> str | None:
    """Debian's ``chromium`` (or a path in ``CHAMBERLAIN_CHROMIUM``); ``None`` when there is none."""
    explicit = os.environ.get("CHAMBERLAIN_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _above(fd: int, floor: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, floor)
    os.close(fd)
    return moved


class CdpError(RuntimeError):
    pass


class Browser:
    """One headless Chromium with one page attached (flat session mode): a context manager, or spawn it,
    do other work while it starts, then :meth:`attach` and finally :meth:`close`."""

    def __init__(self, binary: str, profile: Path, *, width: int = 1400, height: int = 1000) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # Move the child's ends above 9 so that the shell's "3<&N 4>&M" can never clobber one with the other.
        to_child_r, from_child_w = (_above(fd, 10) for fd in (to_child_r, from_child_w))
        args = [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
            f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--disable-sync", "--disable-background-networking", "--disable-component-update",
            "--disable-default-apps", "--mute-audio", f"--window-size={width},{height}", "about:blank",
        ]
        # The protocol must sit on fds 3 and 4: bash moves our pipe ends there (no preexec_fn; dash reads only
        # one-digit fds).
        self.log_path = profile / "chromium.log"  # its stderr, quoted when it dies
        profile.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        script = f'exec "$@" 3<&{to_child_r} 4>&{from_child_w} {to_child_r}<&- {from_child_w}>&-'
        self.proc = subprocess.Popen(
            ["/bin/bash", "-c", script, "bash", *args], pass_fds=(to_child_r, from_child_w),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[Message] = []
        self.session = ""
        self.width, self.height = width, height

    def __enter__(self) -> Browser:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def attach(self) -> Browser:
        """Open a page and attach to it (waits for the browser to be up)."""
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})
        return self

    def close(self) -> None:
        with contextlib.suppress(CdpError, OSError):
            self.call("Browser.close", session=False, timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_child)
        os.close(self._from_child)
        self._log.close()

    # ------------------------------------------------------------------------------------------------ wire

    def _read(self, deadline: float) -> Message:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CdpError("timed out waiting for Chromium")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    tail = self.log_path.read_text(errors="replace")[-2000:]
                    raise CdpError(f"Chromium closed the pipe (exit {self.proc.poll()}); its stderr ends:\n{tail}")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: Message = json.loads(raw)
        return message

    def call(self, method: str, params: dict[str, Any] | None = None, *, session: bool = True,
             timeout: float = 30.0) -> Any:
        """Send one command and wait for its reply; events that arrive meanwhile are kept in ``events``."""
        self._next_id += 1
        message: Message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._to_child, data):]
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CdpError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method: str, predicate: Callable[[Message], bool] = lambda _: True,
                 timeout: float = 30.0) -> Message:
        """The first event ``method`` (already received or still to come) that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event["method"] == method and predicate(event):
                    return event
            seen = len(self.events)
            message = self._read(deadline)
            if "method" in message:
                self.events.append(message)

    # ------------------------------------------------------------------------------------------------ page

    def navigate(self, url: str, timeout: float = 30.0) -> None:
        self.events.clear()
        self.call("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired", timeout=timeout)

    def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, timeout=timeout)
        if "exceptionDetails" in result:
            raise CdpError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def requested_urls(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]
