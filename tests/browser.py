"""A small headless-Chromium driver over the DevTools protocol, for testing the built book.

It opens a page as a reader would (served over HTTP on loopback), waits for
MathJax, and reports what a reader would notice: math left untypeset or typeset
with errors, images that did not load, and errors on the console (which include
failed requests, such as a CDN the closed network cannot reach).
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import websocket

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--window-size=1280,1000",
    "--remote-debugging-port=0",
]

# Runs in the page once it has loaded; waits for MathJax 3 to finish typesetting.
PAGE_REPORT_JS = """
(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const maths = [...document.querySelectorAll('.math')];
  const untypeset = maths.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 80));
  const mathErrors = [...document.querySelectorAll('mjx-merror')]
    .map(e => e.getAttribute('data-mjx-error') || e.textContent);
  const brokenImages = [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src);
  const visible = e => {
    const box = e.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && getComputedStyle(e).visibility !== 'hidden';
  };
  // The theme's own top navbar (pydata-sphinx-theme); the book theme keeps it empty.
  const topbar = document.querySelector('header.bd-header');
  return JSON.stringify({
    topbarHeight: topbar ? topbar.getBoundingClientRect().height : 0,
    searchFields: [...document.querySelectorAll('.search-button-field, form.bd-search input')]
      .filter(visible).length,
    overflowX: document.documentElement.scrollWidth - window.innerWidth,
    title: document.title,
    mathCount: maths.length,
    mathjaxLoaded: !!(window.MathJax && MathJax.startup),
    untypeset, mathErrors, brokenImages,
    imageCount: document.images.length,
  });
})()
"""


def find_chromium() -> str:
    """Return the path of the chromium binary, or fail with how to install it."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError(
        "chromium: expected Debian's `chromium` package on PATH, found none; "
        "`make test` installs it (scripts/install-system-packages.sh), or run "
        "`apt-get install chromium` as root"
    )


@dataclass
class PageReport:
    """What a reader would notice on one page."""

    url: str
    title: str = ""
    math_count: int = 0
    mathjax_loaded: bool = False
    untypeset: list[str] = field(default_factory=list)
    math_errors: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    image_count: int = 0
    console_errors: list[str] = field(default_factory=list)
    topbar_height: float = 0.0  # height of the theme's full-width top navbar, in px
    search_fields: int = 0  # visible search fields on the page
    overflow_x: int = 0  # px the page is wider than the window (horizontal scrolling)


class StaticServer:
    """Serve a folder over HTTP on 127.0.0.1 in a background thread."""

    def __init__(self, root: Path):
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def __enter__(self) -> StaticServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output readable
        pass


class Browser:
    """One headless Chromium with one tab, driven over the DevTools protocol."""

    def __init__(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="bncourse-chromium-")
        self.proc = subprocess.Popen(
            [find_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        port = self._devtools_port()
        self.ws = websocket.create_connection(self._page_ws_url(port), timeout=60)
        self._next_id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def _devtools_port(self) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            match = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if match:
                return int(match.group(1))
            if not line and self.proc.poll() is not None:
                break
        raise RuntimeError("chromium did not start its DevTools endpoint within 60 s")

    @staticmethod
    def _page_ws_url(port: int) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as resp:
            targets = json.load(resp)
        pages = [t for t in targets if t.get("type") == "page"]
        return pages[0]["webSocketDebuggerUrl"]

    def call(self, method: str, **params) -> dict:
        """Send one DevTools command and return its result, queueing events that arrive meanwhile."""
        self._next_id += 1
        self.ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def _wait_for_event(self, method: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e.get("method") == method for e in self.events):
                return
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(f"no {method} within {timeout} s")

    def set_width(self, width: int, height: int = 1000) -> None:
        """Emulate a window ``width`` px wide; below 600 px as a phone (touch, mobile viewport)."""
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=width < 600,
        )

    def open(self, url: str, screenshot: Path | None = None) -> PageReport:
        """Load ``url``, wait for it and its math, and report what a reader would see."""
        self.events.clear()
        self.call("Page.navigate", url=url)
        data = self._report_after_load()
        time.sleep(0.2)  # let late console messages (failed fetches) arrive
        self.call("Runtime.evaluate", expression="0")
        if screenshot is not None:
            shot = self.call("Page.captureScreenshot", format="png")
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        return PageReport(
            url=url,
            title=data["title"],
            math_count=data["mathCount"],
            mathjax_loaded=data["mathjaxLoaded"],
            untypeset=data["untypeset"],
            math_errors=data["mathErrors"],
            broken_images=data["brokenImages"],
            image_count=data["imageCount"],
            console_errors=self._console_errors(),
            topbar_height=data["topbarHeight"],
            search_fields=data["searchFields"],
            overflow_x=data["overflowX"],
        )

    def _report_after_load(self, redirects: int = 3) -> dict:
        """Wait for the load event, then run PAGE_REPORT_JS on the page.

        A page may navigate on by itself after loading (the book's index.html redirects to
        the preface); the evaluation then fails with "navigated", and we wait for the next
        page's load event and report on that one.
        """
        for _ in range(redirects + 1):
            self._wait_for_event("Page.loadEventFired", timeout=60)
            self.ws.settimeout(60)
            try:
                result = self.call(
                    "Runtime.evaluate", expression=PAGE_REPORT_JS, awaitPromise=True, returnByValue=True
                )
            except RuntimeError as error:
                if "navigated" not in str(error):
                    raise
                self._forget_first_load()
                continue
            if "exceptionDetails" in result:
                # The script can also fail inside a page that is navigating away (its document
                # is being replaced): then report on the next page once it has loaded.
                if self._navigated_away(timeout=10):
                    self._forget_first_load()
                    continue
                details = result["exceptionDetails"]
                raise RuntimeError(f"the page report failed: {details.get('exception', details)}")
            return json.loads(result["result"]["value"])
        raise RuntimeError(f"the page kept navigating after {redirects} redirects")

    def screenshot_at(self, selector: str, path: Path) -> bool:
        """Scroll the first element matching ``selector`` to the top and save a screenshot.

        Returns False (and saves nothing) when the page has no such element.
        """
        found = self.call(
            "Runtime.evaluate",
            # "instant": the theme scrolls smoothly, which would leave the shot half-way
            expression=(
                "(e => !!e && (e.scrollIntoView({behavior: 'instant', block: 'start'}), true))"
                f"(document.querySelector({json.dumps(selector)}))"
            ),
            returnByValue=True,
        )
        if not found.get("result", {}).get("value"):
            return False
        time.sleep(0.2)  # let images in the new view paint
        shot = self.call("Page.captureScreenshot", format="png")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return True

    def _navigated_away(self, timeout: float) -> bool:
        """Whether the page starts another navigation within ``timeout`` s (events consumed)."""
        signs = {"Runtime.executionContextDestroyed", "Page.frameNavigated", "Page.frameStartedLoading"}
        try:
            deadline = time.monotonic() + timeout
            while not any(e.get("method") in signs for e in self.events):
                if time.monotonic() > deadline:
                    return False
                self.ws.settimeout(max(0.1, deadline - time.monotonic()))
                self.events.append(json.loads(self.ws.recv()))
        except websocket.WebSocketTimeoutException:
            return False
        self.events = [e for e in self.events if e.get("method") not in signs]
        return True

    def _forget_first_load(self) -> None:
        """Drop the load event just used; the next page's may already be queued."""
        first = next(i for i, e in enumerate(self.events) if e.get("method") == "Page.loadEventFired")
        del self.events[first]

    def _console_errors(self) -> list[str]:
        errors = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                errors.append(details.get("exception", {}).get("description", details.get("text")))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                entry = params["entry"]
                errors.append(f"{entry.get('text')} ({entry.get('url', '')})")
        return errors

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)
