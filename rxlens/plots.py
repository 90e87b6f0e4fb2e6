"""Plots of Lens results a person wants to look at: labels over time, votes per window, scores.

Analysing a session means looking at it: which label each machine showed when, where the
alerts fired, what each window voted, how the class scores drifted. These helpers draw that
with matplotlib from the data a user already has: a DataFrame from
:func:`rxlens.to_dataframe` or :func:`rxlens.columnar.load_recording`, and the
:class:`~rxlens.operators.Windowed` records (votes) and alert items a pipeline produced. Each
returns the matplotlib ``Axes`` it drew on (pass ``ax=`` to draw into a figure of your own).

matplotlib (and pandas) are imported when a plot is drawn, not when ``rxlens`` is imported:
they are optional extras (``pip install 'rxlens[notebook]'``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rxlens.sinks import MissingDependency

#: Colours of the usual labels; other labels take the matplotlib cycle, in order of appearance.
LABEL_COLOURS = {
    "HEALTHY": "#2ca02c",
    "BROKEN": "#d62728",
    "unknown": "#7f7f7f",
}


def windows_frame(records: Iterable[Any]) -> Any:
    """A DataFrame with one row per :class:`~rxlens.operators.Windowed` (or ``Window``) record.

    Columns: ``session_id``, ``start``, ``end`` (UTC datetimes when the bounds are epoch
    seconds), ``size``, ``late``, and ``value`` (the vote, counts or means; for a ``Window``,
    its results as a tuple).

    Raises:
        MissingDependency: pandas is not installed.
    """
    pd = _pandas()
    rows = []
    for record in records:
        value = getattr(record, "value", None)
        if value is None and hasattr(record, "results"):
            value = tuple(record.results)
        size = getattr(record, "size", None)
        if size is None:
            size = len(record)
        rows.append(
            {
                "session_id": getattr(record, "session_id", None),
                "start": getattr(record, "start", None),
                "end": getattr(record, "end", None),
                "size": size,
                "late": getattr(record, "late", 0),
                "value": value,
            }
        )
    frame = pd.DataFrame(rows, columns=["session_id", "start", "end", "size", "late", "value"])
    for column in ("start", "end"):
        frame[column] = pd.to_datetime(frame[column].astype("float64"), unit="s", utc=True)
    return frame


def plot_timeline(
    df: Any,
    *,
    label: str = "text",
    time: str | None = None,
    session: str = "session_id",
    alerts: Iterable[Any] | None = None,
    rows: str = "session",
    ax: Any = None,
    title: str | None = "Labels over time",
) -> Any:
    """One row per session, one mark per result coloured by its label, alerts marked above.

    ``df`` has a column ``label`` (default ``"text"``, which is the Machine State label), a
    time column (``time``; by default ``query_timestamp`` when the frame has it filled, else
    the events' sensor time as ``time="sensor"`` reads it, else ``received_at``), and
    ``session`` (rows with no session form one row). ``alerts`` are items a pipeline
    raised (e.g. the output of :func:`~rxlens.operators.rising_edge`): each is drawn as a
    marker at its time (``end`` of a :class:`~rxlens.operators.Windowed` vote, else
    ``query_timestamp``, else ``received_at``) on its session's row. Time the alerts on the
    frame's clock (``time="sensor"`` windows go with ``query_timestamp``).

    ``rows="label"`` draws one row per label instead (for one session with many labels, such
    as an Activity Monitor's sentences); alerts then sit on the top row.

    Raises:
        MissingDependency: matplotlib or pandas is not installed.
        KeyError: ``df`` lacks the label or time column.
        ValueError: ``rows`` is neither ``"session"`` nor ``"label"``.
    """
    if rows not in ("session", "label"):
        raise ValueError(f'rows must be "session" or "label", got {rows!r}')
    pd = _pandas()
    plt = _pyplot()
    frame = _results_only(df, label)
    when = _times(frame, time)
    labels = list(frame[label].dropna().astype(str).unique())
    if rows == "label":
        sessions = labels
        row_of = {name: i for i, name in enumerate(sessions)}
        y = [row_of[str(v)] for v in frame[label]]
    else:
        sessions = _sessions(frame, session)
        row_of = {name: i for i, name in enumerate(sessions)}
        column = frame[session] if session in frame.columns else [None] * len(frame)
        y = [row_of[_key(s)] for s in column]
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 1.2 + 0.5 * max(1, len(sessions))))
    colours = _colours(labels)
    for name, colour in colours.items():
        mask = (frame[label].astype(str) == name).to_numpy()
        ax.scatter(
            when[mask],
            [v for v, m in zip(y, mask, strict=True) if m],
            marker="s",
            s=30,
            color=colour,
            label=name,
            linewidths=0,
        )
    if alerts is not None:
        alert_x, alert_y = [], []
        for item in alerts:
            at = _item_time(item)
            if at is None:
                continue
            alert_x.append(pd.Timestamp(at, unit="s", tz="UTC"))
            if rows == "label":
                alert_y.append(len(sessions) - 0.7)
            else:
                alert_y.append(row_of.get(_key(getattr(item, "session_id", None)), 0) + 0.3)
        if alert_x:
            ax.scatter(alert_x, alert_y, marker="v", s=90, color="black", label="alert", zorder=3)
    ax.set_yticks(range(len(sessions)), [str(s) if s is not None else "-" for s in sessions])
    ax.set_ylim(-0.6, len(sessions) - 0.2)
    _date_axis(ax)
    ax.set_xlabel("time (UTC)")
    if title:
        ax.set_title(title)
    if rows == "session":  # with one row per label, the rows already name the colours
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    ax.figure.tight_layout()
    return ax


def plot_votes(
    votes: Any,
    *,
    ax: Any = None,
    title: str | None = "Majority vote per window",
) -> Any:
    """One row per session, one bar per window spanning ``[start, end)``, coloured by its vote.

    ``votes`` is an iterable of :class:`~rxlens.operators.Windowed` records from
    :func:`~rxlens.operators.majority_vote` after event-time windows, or a DataFrame from
    :func:`windows_frame`. A window without a winner (``None``) is drawn hatched grey; the
    number of results is written in each bar when there is room.

    Raises:
        MissingDependency: matplotlib or pandas is not installed.
    """
    pd = _pandas()
    plt = _pyplot()
    frame = votes if isinstance(votes, pd.DataFrame) else windows_frame(votes)
    frame = frame.dropna(subset=["start", "end"])
    sessions = _sessions(frame, "session_id")
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 1.2 + 0.7 * max(1, len(sessions))))
    colours = _colours(str(v) for v in frame["value"] if _key(v) is not None)
    import matplotlib.dates

    mdates: Any = matplotlib.dates

    seen: set[str] = set()
    for i, sid in enumerate(sessions):
        mine = frame[[_key(s) == sid for s in frame["session_id"]]]
        for _, row in mine.iterrows():
            start = mdates.date2num(row["start"])
            width = mdates.date2num(row["end"]) - start
            value = _key(row["value"])
            name = "no winner" if value is None else str(value)
            colour = "#cccccc" if value is None else colours[name]
            ax.broken_barh(
                [(start, width)],
                (i - 0.35, 0.7),
                facecolors=colour,
                edgecolor="white",
                hatch="//" if value is None else None,
                label=None if name in seen else name,
            )
            seen.add(name)
    ax.xaxis_date()
    _date_axis(ax)
    ax.set_yticks(range(len(sessions)), [str(s) if s is not None else "-" for s in sessions])
    ax.set_xlabel("window (UTC)")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    ax.figure.tight_layout()
    return ax


def plot_scores(
    df: Any,
    *,
    score: str | None = None,
    time: str | None = None,
    session: str = "session_id",
    share: bool = True,
    rolling: int = 1,
    ax: Any = None,
    title: str | None = "Scores over time",
) -> Any:
    """The trend of class scores: one line per session (and per class), over time.

    Scores come from a ``scores`` column of dicts (:func:`rxlens.to_dataframe`) or from
    ``score.<class>`` columns (:func:`rxlens.columnar.load_recording`). ``score`` picks one
    class (all classes by default); ``share=True`` divides each score by the row's total, so
    raw votes, percentages and 0-1 scores read alike; ``rolling`` smooths over that many
    results per session. Time as in :func:`plot_timeline`.

    Raises:
        MissingDependency: matplotlib or pandas is not installed.
        ValueError: the frame has no scores.
    """
    pd = _pandas()
    plt = _pyplot()
    frame = _score_columns(df)
    classes = [c[len("score.") :] for c in frame.columns if c.startswith("score.")]
    if not classes:
        raise ValueError("the frame has no scores (a 'scores' column or 'score.<class>' columns)")
    if score is not None:
        classes = [score]
    values = frame[[f"score.{c}" for c in classes]].astype("float64")
    if share:
        every = frame[[c for c in frame.columns if c.startswith("score.")]].astype("float64")
        total = every.sum(axis=1).where(lambda t: t != 0)
        values = values.div(total, axis=0)
    when = _times(frame, time)
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 3.5))
    sessions = _sessions(frame, session)
    session_of = frame[session] if session in frame.columns else pd.Series([None] * len(frame))
    keys = [_key(s) for s in session_of]
    for sid in sessions:
        mask = [k == sid for k in keys]
        for name in classes:
            series = values[f"score.{name}"][mask].rolling(max(1, rolling), min_periods=1).mean()
            tag = name if len(sessions) == 1 else f"{sid} {name}"
            ax.plot(when[mask], series.to_numpy(), marker=".", markersize=3, label=tag)
    _date_axis(ax)
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("share of the scores" if share else "score")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    ax.figure.tight_layout()
    return ax


# --- internals -----------------------------------------------------------------------------------


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as exc:
        raise MissingDependency(
            "rxlens.plots needs pandas and matplotlib: pip install 'rxlens[notebook]'"
        ) from exc
    return pandas


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependency(
            "rxlens.plots needs matplotlib: pip install 'rxlens[notebook]'"
        ) from exc
    return plt


def _key(value: Any) -> Any:
    # Missing sessions (None, NaN, pd.NA) all become one row.
    if value is None or (isinstance(value, float) and value != value):
        return None
    try:
        import pandas

        if value is pandas.NA:
            return None
    except ImportError:  # pragma: no cover - pandas is there whenever a frame is
        pass
    return value


def _sessions(frame: Any, column: str) -> list[Any]:
    if column not in frame.columns:
        return [None]
    seen: dict[Any, None] = {}
    for value in frame[column]:
        seen.setdefault(_key(value), None)
    return list(seen) or [None]


def _results_only(df: Any, label: str) -> Any:
    if label not in df.columns:
        raise KeyError(f"the frame has no {label!r} column")
    return df[df[label].notna()].reset_index(drop=True)


def _times(frame: Any, column: str | None) -> Any:
    pd = _pandas()
    if column is None:
        column = "received_at"
        if "query_timestamp" in frame.columns and frame["query_timestamp"].notna().any():
            column = "query_timestamp"
        elif "event" in frame.columns:
            # A frame of event objects without the column: read the results' own times (as
            # time="sensor" does: query_timestamp, else sensor_timestamp as an offset).
            from rxlens.operators import sensor_time

            sensor = frame["event"].map(sensor_time)
            if len(sensor) and sensor.notna().all():
                return pd.to_datetime(sensor.astype("float64"), unit="s", utc=True).to_numpy()
    if column not in frame.columns:
        raise KeyError(f"the frame has no {column!r} column")
    values = frame[column]
    if pd.api.types.is_datetime64_any_dtype(values):
        return pd.DatetimeIndex(values).to_numpy()
    return pd.to_datetime(values.astype("float64"), unit="s", utc=True).to_numpy()


def _date_axis(ax: Any) -> None:
    import matplotlib.dates

    dates: Any = matplotlib.dates
    locator = dates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    # Times below a year from the epoch are offsets (a video position): no date to show.
    offsets = ax.get_xlim()[1] < 365.0
    ax.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator, show_offset=not offsets))


def _item_time(item: Any) -> float | None:
    for name in ("end", "at", "query_timestamp", "received_at"):
        value = getattr(item, name, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def _colours(labels: Iterable[str]) -> dict[str, str]:
    plt = _pyplot()
    cycle = [c for c in plt.rcParams["axes.prop_cycle"].by_key().get("color", [])]
    cycle = [c for c in cycle if c not in LABEL_COLOURS.values()] or ["#1f77b4"]
    out: dict[str, str] = {}
    extra = 0
    for name in labels:
        if name in LABEL_COLOURS:
            out[name] = LABEL_COLOURS[name]
        else:
            out[name] = cycle[extra % len(cycle)]
            extra += 1
    return out


def _score_columns(df: Any) -> Any:
    if any(str(c).startswith("score.") for c in df.columns):
        return df
    if "scores" not in df.columns:
        return df
    frame = df[df["scores"].map(lambda s: isinstance(s, dict))].reset_index(drop=True)
    pd = _pandas()
    expanded = pd.DataFrame(list(frame["scores"]), index=frame.index)
    expanded.columns = [f"score.{c}" for c in expanded.columns]
    return pd.concat([frame, expanded], axis=1)


__all__ = ["LABEL_COLOURS", "plot_scores", "plot_timeline", "plot_votes", "windows_frame"]
