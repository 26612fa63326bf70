"""Headless Chromium driven over the Chrome DevTools protocol, for the reports' browser tests.

Debian's ``chromium`` package provides the browser (``.ci/run`` installs it when missing). The
protocol runs over a pipe (``--remote-debugging-pipe``: the browser reads JSON commands from
its fd 3 and writes replies and events to fd 4, each message ending in a NUL byte), so no
WebDriver and no Python package beyond the standard library is needed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# A page that has not answered in this long is stuck, not slow (the demo page loads in < 1 s).
COMMAND_TIMEOUT_S = 60.0


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageResult:
    """What a loaded page showed: its layout, its images, its text and what it complained of."""

    viewport_width: int
    document_width: int
    body_width: int
    images: list[dict[str, Any]]
    text: str
    errors: list[str] = field(default_factory=list)


class Chromium:
    """One headless browser; :meth:`open` loads a page at a viewport width and measures it."""

    def __init__(self, binary: str, profile: Path) -> None:
        # The shell puts our pipe ends on fds 3 and 4, where the browser looks for them.
        command = [
            "sh", "-c", 'exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null', binary,
            "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
            "--hide-scrollbars", "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--mute-audio", f"--user-data-dir={profile}",
            "--allow-file-access-from-files", "about:blank",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            self.send("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()

    def _read_message(self, deadline: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self.process.stdout], [], [], left)
            if ready:
                chunk = os.read(self.process.stdout.fileno(), 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed its DevTools pipe")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        parsed: dict[str, Any] = json.loads(message)
        return parsed

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events that arrive meanwhile are kept)."""
        assert self.process.stdin is not None
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        self.process.stdin.write(json.dumps(message).encode() + b"\0")
        self.process.stdin.flush()
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)

    def wait_for(self, method: str, session: str) -> dict[str, Any]:
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        for index, event in enumerate(self.events):
            if event.get("method") == method and event.get("sessionId") == session:
                return self.events.pop(index)
        while True:
            event = self._read_message(deadline)
            if event.get("method") == method and event.get("sessionId") == session:
                return event
            self.events.append(event)

    def evaluate(self, session: str, expression: str) -> Any:
        result = self.send("Runtime.evaluate", session, expression=expression,
                           returnByValue=True, awaitPromise=True)  # fmt: skip
        return result["result"].get("value")

    def open(self, path: Path, width: int, screenshot: Path) -> PageResult:
        """Load ``path`` at a ``width`` px wide viewport, measure it, save a full-page PNG."""
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        try:
            for domain in ("Page", "Runtime", "Log"):
                self.send(f"{domain}.enable", session)
            self.send("Emulation.setDeviceMetricsOverride", session, width=width, height=900,
                      deviceScaleFactor=1, mobile=width < 600)  # fmt: skip
            self.events.clear()
            self.send("Page.navigate", session, url=path.resolve().as_uri())
            self.wait_for("Page.loadEventFired", session)
            page = self._measure(session)
            page.errors = self._errors(session)
            height = int(self.evaluate(session, "document.documentElement.scrollHeight"))
            shot = self.send("Page.captureScreenshot", session, format="png",
                             captureBeyondViewport=True,
                             clip={"x": 0, "y": 0, "width": width, "height": height,
                                   "scale": 1})  # fmt: skip
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            return page
        finally:
            self.send("Target.closeTarget", targetId=target)

    def _measure(self, session: str) -> PageResult:
        measured = self.evaluate(
            session,
            """(async () => {
                const decoded = Array.from(document.images, (i) => i.decode().catch(() => null));
                await Promise.all(decoded);
                return {
                  viewport: window.innerWidth,
                  document: document.documentElement.scrollWidth,
                  body: document.body.scrollWidth,
                  images: Array.from(document.images, (i) => ({
                    complete: i.complete, width: i.naturalWidth, alt: i.alt})),
                  text: document.body.innerText,
                };
            })()""",
        )
        return PageResult(measured["viewport"], measured["document"], measured["body"],
                          measured["images"], measured["text"])  # fmt: skip

    def _errors(self, session: str) -> list[str]:
        errors = []
        for event in self.events:
            if event.get("sessionId") != session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                errors.append(json.dumps(params["exceptionDetails"])[:300])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in (
                "error",
                "assert",
            ):
                errors.append(json.dumps(params.get("args"))[:300])
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                errors.append(params["entry"].get("text", "")[:300])
        return errors


@pytest.fixture(scope="session")
def chromium() -> Iterator[Chromium]:
    binary = chromium_binary()
    if binary is None:
        message = "Chromium not found (Debian package 'chromium')"
        if os.environ.get("CI"):
            pytest.fail(message + "; .ci/run should have installed it.")
        pytest.skip(message)
    profile = Path(tempfile.mkdtemp(prefix="initlab-chromium-"))
    browser = Chromium(binary, profile)
    try:
        yield browser
    finally:
        browser.close()
        shutil.rmtree(profile, ignore_errors=True)
