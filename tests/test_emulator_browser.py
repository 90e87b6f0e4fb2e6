"""A real browser's ``EventSource`` reads the emulator (opt-in: ``RXLENS_BROWSER_TESTS=1``).

Headless Chromium from the distribution (``apt-get install chromium-headless-shell``, or
``chromium``) loads a page from a purpose-made server on one origin; the page opens an
``EventSource`` on the emulator, another origin, started with ``cors_origin`` and
``require_auth=False`` (what ``rxlens serve --cors ORIGIN --no-auth`` does), and posts what it
received back to the page's server.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from queue import Empty, Queue
from typing import Any

import pytest

from rxlens.emulator import LensEmulator

pytestmark = pytest.mark.skipif(
    os.environ.get("RXLENS_BROWSER_TESTS") != "1",
    reason="opt-in: set RXLENS_BROWSER_TESTS=1 (needs headless Chromium)",
)

PAGE = """<!doctype html><meta charset="utf-8"><title>rxlens EventSource</title>
<script>
const seen = [];
const source = new EventSource(%(stream)s);
function report(outcome) {
  source.close();
  fetch("/report", {method: "POST", body: JSON.stringify({outcome, seen})});
}
source.onmessage = (e) => {
  const data = JSON.parse(e.data);
  seen.push({type: data.type, id: e.lastEventId, data: data.event_data});
  if (seen.filter((s) => s.type === "inference.result").length === 2) report("ok");
};
source.onerror = () => report("error");
</script>"""


def chromium() -> str:
    for name in ("chromium-headless-shell", "chromium", "chromium-browser"):
        path = shutil.which(name) or shutil.which(name, path="/usr/lib/chromium")
        if path:
            return path
    raise AssertionError("RXLENS_BROWSER_TESTS=1 but no Chromium: apt-get install chromium")


class PageServer:
    """Serves the page at ``/`` and queues what the page posts to ``/report``."""

    def __init__(self) -> None:
        self.page = ""
        self.reports: Queue[dict[str, Any]] = Queue()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = owner.page.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                owner.reports.put(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5.0)


@pytest.fixture
def page_server() -> Iterator[PageServer]:
    server = PageServer()
    yield server
    server.close()


def run_browser(url: str, reports: Queue[dict[str, Any]]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as profile:
        browser = subprocess.Popen(
            [
                chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                f"--user-data-dir={profile}",
                url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own process group: the distribution's launcher is a shell script, and the
            # browser forks zygote, GPU, network and renderer processes; all must end.
            start_new_session=True,
        )
        try:
            return reports.get(timeout=60)
        except Empty:
            raise AssertionError("the page reported nothing within 60 s") from None
        finally:
            end_group(browser)


def end_group(process: subprocess.Popen[bytes]) -> None:
    """Stop every process of the browser's group (SIGTERM, then SIGKILL), reap the launcher."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        if group_gone(process, within=10.0):
            break
    process.wait(10)


def group_gone(process: subprocess.Popen[bytes], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        process.poll()  # reap the launcher, or the group never empties
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_a_browser_event_source_reads_the_stream(page_server: PageServer) -> None:
    with LensEmulator(
        cors_origin=page_server.origin, require_auth=False, replay="all", heartbeat_interval=1.0
    ) as emu:
        sid = emu.create_session()
        emu.push(sid, {"type": "inference.result", "event_data": {"response": ["one"]}})
        emu.push(sid, {"type": "inference.result", "event_data": {"response": ["two"]}})
        page_server.page = PAGE % {"stream": json.dumps(emu.consumer_url(sid))}
        report = run_browser(page_server.origin + "/", page_server.reports)
    assert report["outcome"] == "ok", report
    seen = report["seen"]
    assert seen[0]["type"] == "sse.stream.start"
    results = [s for s in seen if s["type"] == "inference.result"]
    assert [r["data"]["response"] for r in results] == [["one"], ["two"]]
    assert [r["id"] for r in results] == ["1", "2"]


def test_without_cors_the_browser_is_refused(page_server: PageServer) -> None:
    with LensEmulator(require_auth=False, replay="all") as emu:
        sid = emu.create_session()
        emu.push(sid, {"type": "inference.result", "event_data": {"response": ["one"]}})
        page_server.page = PAGE % {"stream": json.dumps(emu.consumer_url(sid))}
        report = run_browser(page_server.origin + "/", page_server.reports)
    assert report["outcome"] == "error" and report["seen"] == []
