"""Old public names still work for one release, and each warns once that it is going."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import rxlens
import rxlens.aio
import rxlens.operators
import rxlens.sinks
from rxlens import _deprecation, analytics


@pytest.fixture(autouse=True)
def fresh_warnings() -> Iterator[None]:
    _deprecation._reset_for_tests()
    yield
    _deprecation._reset_for_tests()


def deprecations(read: Callable[[], Any]) -> tuple[Any, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = read()
    return value, [str(w.message) for w in caught if w.category is DeprecationWarning]


@pytest.mark.parametrize(
    ("module", "old", "new", "replacement"),
    [
        (rxlens.operators, "count_labels", "rxlens.analytics.label_counts", analytics.label_counts),
        (rxlens.operators, "vote", "rxlens.analytics.majority_vote", analytics.majority_vote),
        (rxlens.operators, "mean_of_scores", "rxlens.analytics.mean_scores", analytics.mean_scores),
        (
            rxlens.operators,
            "default_label",
            "rxlens.analytics.default_label",
            analytics.default_label,
        ),
        (rxlens, "aiter", "rxlens.aio.iterate", rxlens.aio.iterate),
        (rxlens.sinks, "DEFAULT_TIMEOUT", "rxlens.sinks.COLLECT_TIMEOUT", 60.0),
        (rxlens.aio, "aiter", "rxlens.aio.iterate", rxlens.aio.iterate),
    ],
)
def test_an_old_name_is_the_new_object_and_warns_once(
    module: Any, old: str, new: str, replacement: Any
) -> None:
    value, first = deprecations(lambda: getattr(module, old))
    assert value == replacement
    assert len(first) == 1
    assert f"{module.__name__}.{old} is deprecated" in first[0] and new in first[0]
    again, second = deprecations(lambda: getattr(module, old))
    assert again == replacement
    assert second == []


def test_the_warning_points_at_the_callers_line() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rxlens.operators.vote  # noqa: B018
    assert caught and caught[0].filename == __file__


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        rxlens.operators.nothing_here  # noqa: B018
    with pytest.raises(AttributeError):
        rxlens.aio.nothing_here  # noqa: B018


def test_the_old_vote_gives_what_it_gave() -> None:
    value, _ = deprecations(lambda: rxlens.operators.vote(["A", "A", "B"], 0.5))
    assert value == "A"


def test_old_names_are_not_exported() -> None:
    assert "DEFAULT_TIMEOUT" not in rxlens.sinks.__all__
    assert "aiter" not in rxlens.__all__ and "aiter" not in rxlens.aio.__all__
    assert not {"count_labels", "vote", "mean_of_scores"} & set(rxlens.operators.__all__)
    with pytest.raises(AttributeError):
        rxlens.sinks.NO_SUCH_NAME  # noqa: B018


def test_the_old_client_form_of_merge_sessions_warns_and_delegates() -> None:
    client = rxlens.LensClient(api_key="k", base_url="http://127.0.0.1:9/api")
    calls: list[tuple[list[str], dict[str, Any]]] = []

    def record(session_ids: list[str], **options: Any) -> str:
        calls.append((list(session_ids), options))
        return "merged"

    client.merge_sessions = record  # type: ignore[method-assign]
    merged, caught = deprecations(lambda: rxlens.merge_sessions(client, ["lsn-a"], follow=True))
    assert merged == "merged"
    assert calls == [(["lsn-a"], {"scheduler": None, "follow": True})]
    assert len(caught) == 1 and "client.merge_sessions(session_ids)" in caught[0]
    with pytest.raises(rxlens.errors.ConfigurationError):
        rxlens.merge_sessions(client)  # type: ignore[call-overload]
