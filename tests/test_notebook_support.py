"""``rxlens.notebook``: subscriptions that never block and print into the cell that started them."""

from __future__ import annotations

import contextvars
import itertools
import threading
import time
from typing import Any

import nbformat
import pytest
import reactivex
from nbclient import NotebookClient
from reactivex import operators as ops

from rxlens import notebook

CELL = contextvars.ContextVar("CELL", default="none")


@pytest.fixture(autouse=True)
def _stop_everything() -> Any:
    yield
    notebook.stop_all()


def test_in_cell_runs_callbacks_in_the_callers_context_from_any_thread() -> None:
    CELL.set("cell 1")
    seen: list[str] = []
    record = notebook.in_cell(lambda: seen.append(CELL.get()))
    CELL.set("cell 2")  # the kernel moved on to another cell
    barrier = threading.Barrier(4)

    def call() -> None:
        barrier.wait()  # several threads inside the same captured context at once
        record()

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert seen == ["cell 1"] * 4
    assert CELL.get() == "cell 2"


def test_subscribe_never_blocks_even_on_an_endless_synchronous_source() -> None:
    endless = reactivex.from_iterable(itertools.count())
    before = set(threading.enumerate())
    started = time.monotonic()
    sub = notebook.subscribe(endless, lambda _: None, name="endless")
    assert time.monotonic() - started < 0.5
    deadline = time.monotonic() + 5
    while sub.count < 1000 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sub.running and sub.count >= 1000
    assert notebook.active() == [sub]
    assert notebook.stop_all() == 1
    assert not sub.running and sub.stopped and "stopped" in repr(sub)
    after = sub.count
    time.sleep(0.1)
    assert sub.count <= after + 1  # at most the item in flight
    assert notebook.active() == []
    # The thread that ran the endless loop ended: stopping really stopped it.
    deadline = time.monotonic() + 5
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert set(threading.enumerate()) - before == set()


def test_subscribe_prints_events_and_errors_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    ok = notebook.subscribe(reactivex.of("a", "b"))
    failing = notebook.subscribe(reactivex.throw(ValueError("no such session")))
    assert ok.wait(5) and failing.wait(5)
    out = capsys.readouterr().out
    assert "a\nb\n" in out
    assert "stream failed: ValueError: no such session" in out
    assert isinstance(failing.error, ValueError) and ok.error is None


def test_live_updates_one_display_in_place_throttled_with_a_final_state() -> None:
    updates: list[str] = []

    class Handle:
        def update(self, content: Any) -> None:
            updates.append(repr(content))

    def display(content: Any, display_id: bool = False) -> Handle:
        assert display_id
        updates.append(repr(content))
        return Handle()

    source = reactivex.interval(0.01).pipe(ops.take(40))
    sub = notebook.live(source, keep=3, interval=0.1, title="ticks", display=display)
    assert sub.wait(5)
    deadline = time.monotonic() + 2
    while "ended" not in updates[-1] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert updates[0] == "ticks: 0 items, running"
    assert updates[-1].splitlines() == ["ticks: 40 items, ended", "37", "38", "39"]
    assert 3 <= len(updates) < 20  # throttled: far fewer updates than items


KERNEL_CELLS = [
    # 0: a stream started here keeps printing after the cell returned.
    """
import time, reactivex
from reactivex import operators as ops
from rxlens import notebook
started = time.monotonic()
sub = notebook.subscribe(reactivex.interval(0.2).pipe(ops.take(6), ops.map(lambda i: f"tick {i}")))
print(f"returned in {time.monotonic() - started:.2f} s")
time.sleep(0.5)
""",
    # 1: runs while cell 0's stream still prints: none of it may land here.
    "time.sleep(1.2); print('cell two')",
    # 2: the same without rxlens.notebook: thread output goes to the cell running now.
    "plain = reactivex.interval(0.2).pipe(ops.take(3)).subscribe(lambda i: print(f'plain {i}'))",
    "time.sleep(1.0); print('cell four')",
    # 4: awaiting thread-fed streams in the kernel's running loop.
    """
import rxlens.aio
source = reactivex.interval(0.05).pipe(ops.take(4))
started = time.monotonic()
items = [i async for i in rxlens.aio.iterate(source)]
last = await rxlens.aio.to_future(source)
print(items, last, f"{time.monotonic() - started:.1f}")
print("stopped", notebook.stop_all())
""",
]


def _texts(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


@pytest.mark.slow
def test_in_a_kernel_output_goes_to_the_cell_that_subscribed() -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in KERNEL_CELLS]
    NotebookClient(nb, timeout=30, kernel_name="python3").execute()
    first, second, _, fourth, fifth = (_texts(cell) for cell in nb.cells)
    assert first.startswith("returned in 0.0") and "tick 0" in first and "tick 1" in first
    assert second == "cell two\n"  # ticks 2..5 went to their own cell, not here
    # The control: a plain subscribe's thread output lands in whatever cell runs.
    assert "plain 0" in fourth and fourth.endswith("cell four\n")
    assert fifth.startswith("[0, 1, 2, 3] 3 0.")
    assert "stopped 0" in fifth
