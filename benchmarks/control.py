"""The harness's side of the benchmark server: start it, and create and inspect scenarios."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Server:
    """A running benchmark server, as seen by a client process."""

    port: int
    host: str = "127.0.0.1"

    @property
    def root(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        """The Lens base URL every contender is given (the vendor SDK's ``/api`` shape)."""
        return f"{self.root}/api"

    def consumer_url(self, session_id: str) -> str:
        return f"{self.api_base}/lens/sessions/consumer/{session_id}"

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            payload = json.loads(response.read())
            if response.status != 200:
                raise RuntimeError(f"benchmark server: {method} {path}: {payload}")
            return payload
        finally:
            conn.close()

    def create(self, kind: str, **params: Any) -> dict[str, Any]:
        """Create a scenario; its bytes are built before this returns."""
        result: dict[str, Any] = self._call("POST", "/bench/scenarios", {"kind": kind, **params})
        return result

    def stats(self, session_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/bench/scenarios/{session_id}")
        return result

    def stop(self, session_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/bench/scenarios/{session_id}/stop")
        return result


def start_server() -> tuple[subprocess.Popen[str], Server]:
    """Start ``python -m benchmarks.server`` in its own process; it exits when we close stdin."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.server"],
        cwd=Path(__file__).resolve().parent.parent,  # the checkout, wherever we run from
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError("the benchmark server did not start")
    return proc, Server(int(json.loads(line)["port"]))


def stop_server(proc: subprocess.Popen[str]) -> None:
    """Close the server's stdin (it exits), and make sure it has."""
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()
