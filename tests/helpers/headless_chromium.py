"""Drive a headless Chromium from a test without any Python dependency: screenshots through its
command line, interaction through the DevTools protocol over ``--remote-debugging-pipe`` (JSON
messages ended by a NUL byte on file descriptors 3 and 4, as Puppeteer's ``pipe: true`` uses).

Offline by construction: no debugging port is opened, and the flags turn off every background
request (updates, sync, field trials). Debian's ``chromium`` package (scripts/setup.sh installs it).

    with Browser() as browser:
        page = browser.open("file:///tmp/page.html")
        page.evaluate("document.title")
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["Browser", "BrowserError", "Page", "chromium", "screenshot"]

OFFLINE_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--no-default-browser-check", "--mute-audio",
    "--disable-features=Translate,MediaRouter,OptimizationHints", "--hide-scrollbars",
)


class BrowserError(RuntimeError):
    """Chromium did not start, answered with an error, or did not answer in time."""


def chromium() -> str | None:
    """The Chromium (or Chrome) executable on PATH, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(url: str, path: Path, *, width: int = 1400, height: int = 1000, wait_ms: int = 4000) -> Path:
    """A PNG of ``url`` at ``width`` x ``height`` CSS px, taken by Chromium's ``--screenshot``
    after ``wait_ms`` of virtual time (so lazy images in view have loaded)."""
    exe = chromium()
    if exe is None:
        raise BrowserError("Chromium is not installed.")
    with tempfile.TemporaryDirectory(prefix="corelab-chromium-") as profile:
        done = subprocess.run(
            [exe, *OFFLINE_FLAGS, f"--user-data-dir={profile}", f"--screenshot={path}",
             f"--window-size={width},{height}", f"--virtual-time-budget={wait_ms}", url],
            capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0 or not Path(path).is_file():
        raise BrowserError(f"Chromium could not take the screenshot ({done.returncode}): {done.stderr[-2000:]}")
    return Path(path)


class Browser:
    """A headless Chromium spoken to over the DevTools pipe; a context manager that quits it."""

    def __init__(self, *, width: int = 1400, height: int = 1000, timeout: float = 30.0) -> None:
        exe = chromium()
        if exe is None:
            raise BrowserError("Chromium is not installed.")
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="corelab-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # bash puts the browser's two pipe ends on the descriptors 3 and 4 the protocol expects; they
        # are first moved to 10 or above so that neither is 3 or 4 already (and closed by the script).
        to_browser_r, from_browser_w = (self._high(fd) for fd in (to_browser_r, from_browser_w))
        script = f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w} {to_browser_r}<&- {from_browser_w}>&-'
        self._process = subprocess.Popen(
            ["bash", "-c", script, exe, *OFFLINE_FLAGS, f"--user-data-dir={self._profile.name}",
             "--remote-debugging-pipe", f"--window-size={width},{height}", "about:blank"],
            pass_fds=(to_browser_r, from_browser_w), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    @staticmethod
    def _high(fd: int) -> int:
        """``fd`` moved to a descriptor number of 10 or above."""
        import fcntl

        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(fd)
        return high

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (BrowserError, OSError):
            pass  # already gone; the kill below makes sure
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        self._profile.cleanup()

    def _read_message(self, deadline: float) -> dict[str, Any]:
        import select

        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("Chromium did not answer in time.")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 16)
                if not chunk:
                    stderr = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                    raise BrowserError(f"Chromium closed the DevTools pipe: {stderr[-2000:]}")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None) -> dict:
        """Send one command and return its result; events that arrive meanwhile go to ``events``."""
        self._next_id += 1
        command: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            command["sessionId"] = session
        os.write(self._to_browser, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._read_message(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_event(self, method: str, *, session: str | None = None) -> dict[str, Any]:
        """The first event named ``method`` (of ``session``) not seen yet, waiting for it."""
        deadline = time.monotonic() + self.timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method and (session is None or event.get("sessionId") == session):
                    return self.events.pop(i)
            self.events.append(self._read_message(deadline))

    def open(self, url: str) -> "Page":
        """A new tab showing ``url``, once its load event has fired."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.send("Page.enable")
        page.send("Network.enable")
        page.send("Runtime.enable")
        page.send("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired", session=session)
        return page


class Page:
    """One tab: JavaScript evaluation and real mouse and keyboard input."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser, self.session = browser, session

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict:
        return self.browser.send(method, params, session=self.session)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (JSON-serialisable; promises are awaited)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"JavaScript failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A left mouse click at the centre of the first element matching the CSS ``selector``,
        scrolled into view first (a real input event: what covers the element gets it)."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        if box is None:
            raise BrowserError(f"No element matches {selector}.")
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def type_text(self, text: str) -> None:
        """Type ``text`` into the focused element."""
        self.send("Input.insertText", {"text": text})

    def press(self, key: str) -> None:
        """Press and release a named key (e.g. "Escape", "ArrowRight")."""
        codes = {"Escape": 27, "ArrowRight": 39, "ArrowLeft": 37, "Enter": 13}
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", {"type": kind, "key": key, "code": key,
                                                 "windowsVirtualKeyCode": codes.get(key, 0)})

    def errors(self) -> list[str]:
        """The uncaught JavaScript exceptions of this tab so far."""
        return [e["params"]["exceptionDetails"].get("exception", {}).get("description", "")
                or e["params"]["exceptionDetails"].get("text", "")
                for e in self.browser.events
                if e.get("method") == "Runtime.exceptionThrown" and e.get("sessionId") == self.session]

    def requested_urls(self) -> list[str]:
        """Every URL this tab has requested so far (Network.requestWillBeSent events)."""
        return [e["params"]["request"]["url"] for e in self.browser.events
                if e.get("method") == "Network.requestWillBeSent" and e.get("sessionId") == self.session]

    def screenshot(self, path: Path, *, width: int = 1400, height: int = 1000, timeout: float = 20.0) -> Path:
        """A PNG of the viewport (``width`` x ``height`` CSS px) once every image in view has loaded
        (Chromium's ``--screenshot`` takes it before lazy images arrive)."""
        import base64

        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                         "deviceScaleFactor": 1, "mobile": False})
        deadline = time.monotonic() + timeout
        while not self.evaluate(
                "Array.from(document.images).filter(i => { const r = i.getBoundingClientRect();"
                f" return r.bottom > 0 && r.top < {height} && !i.closest('[hidden]'); }})"
                ".every(i => i.complete && i.naturalWidth > 0)"):
            if time.monotonic() > deadline:
                raise BrowserError("The images in view did not load in time.")
            time.sleep(0.1)
        # Loaded is not yet painted: wait for the decoded images and two frames.
        self.evaluate("Promise.all(Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0)"
                      ".map(i => i.decode().catch(() => null))).then(() => new Promise(done =>"
                      " requestAnimationFrame(() => requestAnimationFrame(() => done(true)))))")
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)
