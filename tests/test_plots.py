"""rxlens.plots draws what it is given: marks per result, bars per window, lines per class."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

from rxlens import to_dataframe
from rxlens.events import InferenceResult
from rxlens.operators import Windowed
from rxlens.plots import plot_scores, plot_timeline, plot_votes, windows_frame

BASE = 1741843200.0
SCORES = {"HEALTHY": {"HEALTHY": 4, "BROKEN": 1}, "BROKEN": {"HEALTHY": 1, "BROKEN": 4}}


def results() -> list[InferenceResult]:
    out = []
    for i, (sid, label) in enumerate(
        [("A", "HEALTHY"), ("B", "BROKEN"), ("A", "BROKEN"), ("B", "BROKEN"), ("A", "HEALTHY")]
    ):
        out.append(
            InferenceResult(
                [label, SCORES[label]],
                query_metadata={"query_timestamp": BASE + i},
                session_id=sid,
                received_at=BASE + 100 + i,
            )
        )
    return out


def test_timeline_marks_every_result_on_its_session_row_and_the_alerts() -> None:
    df = to_dataframe(results())
    alert = Windowed("BROKEN", "B", BASE, BASE + 2.0, 2, 0)
    ax = plot_timeline(df, alerts=[alert])
    collections = {c.get_label(): c for c in ax.collections}
    assert set(collections) == {"HEALTHY", "BROKEN", "alert"}
    assert len(collections["HEALTHY"].get_offsets()) == 2
    assert len(collections["BROKEN"].get_offsets()) == 3
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert rows == ["A", "B"]
    # The alert sits on B's row (index 1), at the end of its window, on the results' clock.
    (x, y), = collections["alert"].get_offsets()
    assert y == pytest.approx(1.3)
    assert matplotlib.dates.num2date(x).timestamp() == pytest.approx(BASE + 2.0)
    plt.close("all")


def test_votes_draw_one_bar_per_window() -> None:
    votes = [
        Windowed("HEALTHY", "A", BASE, BASE + 1, 3, 0),
        Windowed(None, "A", BASE + 1, BASE + 2, 2, 0),
        Windowed("BROKEN", "B", BASE, BASE + 1, 3, 1),
    ]
    frame = windows_frame(votes)
    assert list(frame.columns) == ["session_id", "start", "end", "size", "late", "value"]
    assert frame["late"].tolist() == [0, 0, 1]
    ax = plot_votes(votes)
    assert len(ax.collections) == 3
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"HEALTHY", "no winner", "BROKEN"}
    plt.close("all")


def test_scores_share_per_session() -> None:
    ax = plot_scores(to_dataframe(results()), score="BROKEN")
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"A BROKEN", "B BROKEN"}
    assert list(lines["A BROKEN"].get_ydata()) == pytest.approx([0.2, 0.8, 0.2])
    plt.close("all")


def test_timeline_needs_a_label_column() -> None:
    with pytest.raises(KeyError):
        plot_timeline(to_dataframe(results()), label="nothing")
    with pytest.raises(ValueError):
        plot_timeline(to_dataframe(results()), rows="nothing")
