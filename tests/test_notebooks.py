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

#: Notebooks stored with their outputs (deterministic ones only).
WITH_OUTPUTS = {"testing_your_pipeline.ipynb"}


def outputs(nb: nbformat.NotebookNode) -> list[str]:
    return [o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if "text" in o]


def test_every_notebook_is_listed() -> None:
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_clean(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # No key anywhere: the notebooks must not depend on one.
    monkeypatch.delenv("ATAI_API_KEY", raising=False)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    stored = outputs(nb)
    if name not in WITH_OUTPUTS:
        # Stored without outputs, so the repository shows no stale results.
        assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code")
    started = time.monotonic()
    NotebookClient(
        nb,
        timeout=60,  # per cell
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    ).execute()
    assert time.monotonic() - started < 45
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    texts = "".join(
        o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if "text" in o
    )
    assert "Traceback" not in texts
    if name in WITH_OUTPUTS:
        # Stored with its outputs (the shrunk counterexample is the point of it): they must be
        # what a run gives now, so they cannot go stale.
        assert stored == outputs(nb)
    if name == "machine_state_monitoring.ipynb":
        # The forced drop was resumed exactly, as counted against the emulator's log.
        assert texts.count("lost 0, duplicated 0") == 2
