"""A headless Chromium (Debian's ``chromium``) driven over the DevTools protocol on a pipe,
and a small DOM reader for what it rendered.

``--remote-debugging-pipe`` speaks JSON messages ended by NUL on the child's fds 3 (in) and
4 (out): no port, no websocket, stdlib only. :class:`Browser` opens one page, navigates,
waits until the page says it is ready (``document.body.dataset.ready``), evaluates
JavaScript, and captures PNG screenshots. Every wait has a deadline.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from types import TracebackType
from typing import Any

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)
MAX_MESSAGE_BYTES = 64 << 20


class BrowserError(AssertionError):
    """Chromium is missing, died, or did not answer in time."""


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise BrowserError("no chromium on PATH: install Debian's chromium (make bootstrap)")
    return found


class Browser:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, profile: Path, *, width: int = 1280, height: int = 1000) -> None:
        self.profile = profile
        self.width, self.height = width, height
        self._next_id = 0
        self._buffer = b""
        self._proc: subprocess.Popen[bytes] | None = None
        self.session = ""

    def __enter__(self) -> Browser:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()

        def wire() -> None:  # in the child: fd 3 reads our commands, fd 4 writes answers
            high_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.profile.mkdir(parents=True, exist_ok=True)
        self._log = (self.profile.parent / f"{self.profile.name}.log").open("wb")
        self._proc = subprocess.Popen(
            [chromium_path(), *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            pass_fds=(3, 4),
            preexec_fn=wire,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._out, self._in = to_child_w, from_child_r
        try:
            target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            attached = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
            self.session = attached["sessionId"]
            self.call(
                "Emulation.setDeviceMetricsOverride",
                {
                    "width": self.width,
                    "height": self.height,
                    "deviceScaleFactor": 1,
                    "mobile": False,
                },
            )
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                self._send("Browser.close", {}, session=None)
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired, BrowserError):
            proc.kill()
            proc.wait(timeout=10)
        finally:
            for fd in (self._out, self._in):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._log.close()
            self._proc = None

    # ------------------------------------------------------------------ protocol
    def _send(self, method: str, params: dict[str, Any], session: str | None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        return self._next_id

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("chromium did not answer in time")
            ready, _, _ = select.select([self._in], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise BrowserError("chromium exited (see its log beside the profile)")
            self._buffer += chunk
            if len(self._buffer) > MAX_MESSAGE_BYTES:
                raise BrowserError("a DevTools message over the size limit")
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(raw))

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float = 60.0
    ) -> dict[str, Any]:
        """Send one command (to the page once attached) and return its result."""
        wanted = self._send(method, params or {}, self.session or None)
        deadline = time.monotonic() + timeout
        while True:
            message = self._read(deadline)
            if message.get("id") != wanted:
                continue  # an event, or an answer nobody waits for
            if "error" in message:
                raise BrowserError(f"{method}: {message['error']}")
            return dict(message.get("result", {}))

    # ------------------------------------------------------------------ page
    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, *, timeout: float = 60.0, what: str = "") -> Any:
        """Poll ``expression`` until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise BrowserError(f"not seen within {timeout:g}s: {what or expression}")

    def open(self, url: str, *, timeout: float = 60.0) -> str:
        """Navigate and wait until the dashboard has rendered; returns the page's name."""
        # Through a blank page, so a page that differs only in its hash is loaded afresh.
        self.call("Page.navigate", {"url": "about:blank"})
        self.wait_for("document.location.href === 'about:blank'", timeout=timeout)
        self.call("Page.navigate", {"url": url})
        ready: str = self.wait_for(
            f"document.location.href === {json.dumps(url)} && document.body"
            " && document.body.dataset.ready",
            timeout=timeout,
            what=f"{url} rendered",
        )
        return ready

    def dom(self) -> Element:
        return parse(str(self.evaluate("document.documentElement.outerHTML")))

    def screenshot(self, path: Path) -> Path:
        """The whole page (beyond the viewport) as a PNG."""
        data = self.call(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
        )["data"]
        path.write_bytes(base64.b64decode(data))
        return path


# ---------------------------------------------------------------------- DOM reader
VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element | str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def iter(self) -> list[Element]:
        out: list[Element] = [self]
        for child in self.children:
            if isinstance(child, Element):
                out.extend(child.iter())
        return out

    def find_all(
        self, tag: str | None = None, cls: str | None = None, **attrs: str
    ) -> list[Element]:
        return [
            e
            for e in self.iter()
            if (tag is None or e.tag == tag)
            and (cls is None or cls in e.classes)
            and all(e.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def one(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> Element:
        found = self.find_all(tag, cls, **attrs)
        if len(found) != 1:
            raise AssertionError(f"{len(found)} elements {tag} .{cls} {attrs}, wanted one")
        return found[0]

    def by_id(self, id_: str) -> Element:
        return self.one(id=id_)


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> Element:
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root
