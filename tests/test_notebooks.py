"""The notebooks in notebooks/ run from top to bottom against the emulator, with no API key."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = [
    "activity_monitor_analytics.ipynb",
    "machine_state_monitoring.ipynb",
    "testing_your_pipeline.ipynb",
]
#: Every notebook is committed with its outputs, so the repository shows them. These carry
#: plots (at least two each):
PLOTTED = ["activity_monitor_analytics.ipynb", "machine_state_monitoring.ipynb"]
#: and these are deterministic, so their stored outputs must be what a run gives now:
DETERMINISTIC = {"testing_your_pipeline.ipynb"}


def outputs(nb: nbformat.NotebookNode) -> list[str]:
    return [o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if "text" in o]


def test_every_notebook_is_listed() -> None:
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_with_its_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.get("execution_count") for cell in code), "a cell was never run"
    outputs = [o for cell in code for o in cell.get("outputs", [])]
    assert outputs and not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= (2 if name in PLOTTED else 0)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_clean(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # No key anywhere: the notebooks must not depend on one.
    monkeypatch.delenv("ATAI_API_KEY", raising=False)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    stored = outputs(nb)
    started = time.monotonic()
    NotebookClient(
        nb,
        timeout=60,  # per cell
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    ).execute()  # raises CellExecutionError if any cell fails
    assert time.monotonic() - started < 90
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    texts = "".join(
        o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if "text" in o
    )
    assert "Traceback" not in texts
    if name in DETERMINISTIC:
        # Its stored outputs (the shrunk counterexample is the point of it) must be what a run
        # gives now, so they cannot go stale.
        assert stored == outputs(nb)
    if name == "machine_state_monitoring.ipynb":
        # The forced drop was resumed exactly, as counted against the emulator's log.
        assert texts.count("lost 0, duplicated 0") == 2
        # Per machine: event-time windows give the same answers live and replayed at any pace.
        assert "full speed == live: True" in texts
        assert "10x pace == full speed: True" in texts
        assert "ALERT" in texts
    if name in PLOTTED:
        shown = [o for c in nb.cells for o in c.get("outputs", [])]
        assert len([o for o in shown if "image/png" in o.get("data", {})]) >= 2
