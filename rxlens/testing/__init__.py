"""Testing pipelines built on rxlens: pytest fixtures, virtual time, laws and strategies.

Users write their own stream transformations (votes, alerts, joins of sessions) and need to know
they are right before a fleet depends on them. This package gives them what our own suite uses:

- :func:`cold`, :func:`hot`, :func:`run`: timed events as Observables on RxPY's
  ``TestScheduler``, and a pipeline's output with its virtual times;
- :func:`assert_exactly_once`, :func:`assert_same_at_any_speed`, :func:`assert_no_loss`: laws
  with messages that name the event that broke them;
- :func:`play_stream`: a timed stream played into a real emulator session;
- :mod:`rxlens.testing.strategies` (needs hypothesis): every Lens event kind, timed sessions
  with drops and restarts, and their SSE bytes;
- the pytest plugin's fixtures, below.

The pytest plugin is registered through the ``pytest11`` entry point, so any project that
installs rxlens gets the fixtures without configuration:

- ``lens_emulator``: a started :class:`rxlens.emulator.LensEmulator`, closed after the test.
  Configure it with the ``lens_emulator`` marker, whose keyword arguments go to the
  constructor::

      @pytest.mark.lens_emulator(heartbeat_interval=0.1, replay="all")
      def test_my_pipeline(lens_emulator):
          sid = lens_emulator.create_session("machine-state", rate=20, seed=1)
          ...

- ``lens_emulator_factory``: a callable building more emulators (each closed after the test),
  for tests that need two servers or settings chosen at run time.

The emulator is imported only when a fixture is used, and hypothesis only with
:mod:`rxlens.testing.strategies`, so the plugin costs little otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from rxlens.emulator import LensEmulator

from rxlens._timed import TimedStream, data_events
from rxlens.emulator import play_stream
from rxlens.testing._laws import assert_exactly_once, assert_no_loss, assert_same_at_any_speed
from rxlens.testing._virtual_time import HOT_START, Emitted, cold, hot, run

__all__ = [
    "HOT_START",
    "Emitted",
    "TimedStream",
    "assert_exactly_once",
    "assert_no_loss",
    "assert_same_at_any_speed",
    "cold",
    "data_events",
    "hot",
    "lens_emulator",
    "lens_emulator_factory",
    "play_stream",
    "run",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "lens_emulator(**settings): LensEmulator settings for the lens_emulator fixture",
    )


@pytest.fixture
def lens_emulator_factory() -> Iterator[Callable[..., LensEmulator]]:
    """Build started emulators with any settings; all are closed after the test."""
    from rxlens.emulator import LensEmulator

    made: list[LensEmulator] = []

    def make(**settings: Any) -> LensEmulator:
        emulator = LensEmulator(**settings).start()
        made.append(emulator)
        return emulator

    try:
        yield make
    finally:
        for emulator in made:
            emulator.close()


@pytest.fixture
def lens_emulator(
    request: pytest.FixtureRequest, lens_emulator_factory: Callable[..., LensEmulator]
) -> LensEmulator:
    """A started Lens emulator on 127.0.0.1 (settings from the ``lens_emulator`` marker)."""
    marker = request.node.get_closest_marker("lens_emulator")
    settings = dict(marker.kwargs) if marker is not None else {}
    return lens_emulator_factory(**settings)
