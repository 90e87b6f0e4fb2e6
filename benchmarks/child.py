"""Run measures of one contender in this (fresh) process; print one JSON line per measure.

``python -m benchmarks.child PORT CONTENDER PLAN_JSON``, where the plan is a list of
``[measure, params]``. The harness gives memory and fan-in runs a process of their own, so that
RSS and thread counts start clean; a contender stuck in a blocking read (some cannot be
stopped) is ended by the harness's timeout, and the lines printed before it are kept.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from typing import Any

from benchmarks.contenders import CONTENDERS, Contender, Sink, quiet_logs
from benchmarks.control import Server

MEASURES = ("throughput", "latency", "large", "first_event", "dispose", "resume", "memory", "fanin")


def main(argv: list[str]) -> None:
    port, key, plan = int(argv[0]), argv[1], json.loads(argv[2])
    quiet_logs()
    contender = CONTENDERS[key]
    server = Server(port)
    warm_up(contender, server)
    for measure, params in plan:
        if measure not in MEASURES:
            raise SystemExit(f"unknown measure {measure!r}")
        module = importlib.import_module(f"benchmarks.{measure}")
        started = time.monotonic()
        try:
            result: dict[str, Any] = module.run(contender, server, params)
        except Exception as exc:
            traceback.print_exc()
            result = {"error": f"{type(exc).__name__}: {exc}"[:200]}
        result["measure"] = measure
        result["wall_s"] = round(time.monotonic() - started, 2)
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
    # Some contenders leave non-daemon threads blocked in a read: do not wait for them.
    os._exit(0)


def warm_up(contender: Contender, server: Server) -> None:
    """Stream a few thousand events once, untimed: imports done lazily on first use, the
    first connection and the interpreter's warm-up are then paid for by no measure."""
    sid = server.create("bulk", n=2000)["session_id"]
    ctx = contender.setup(server)
    sink = Sink()
    handle = contender.start(ctx, sid, sink, {})
    sink.done.wait(30)
    handle.close()
    contender.teardown(ctx)


if __name__ == "__main__":
    main(sys.argv[1:])
