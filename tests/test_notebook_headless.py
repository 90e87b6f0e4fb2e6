"""The live view, executed headless (nbclient), shows its final state, not its first one."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient


@pytest.mark.slow
def test_live_view_records_its_final_state_when_run_headless() -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import reactivex\n"
            "from reactivex import operators as ops\n"
            "from rxlens import notebook\n"
            "view = notebook.live(\n"
            "    reactivex.interval(0.05).pipe(ops.take(5)), keep=2, title='ticks', interval=0.01\n"
            ")"
        ),
        nbformat.v4.new_code_cell("print('ended:', view.wait(20))"),
    ]
    NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    shown = "".join(
        str(output.get("data", {}).get("text/plain", "")) for output in nb.cells[0].outputs
    )
    assert "ended: True" in "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert "ticks: 5 items, ended" in shown
    assert "4" in shown.splitlines()[-1]  # the last item kept is the fifth tick, 4
