"""pytest plugin: fixtures for testing pipelines against the Lens emulator.

Registered through the ``pytest11`` entry point, so any project that installs rxlens gets the
fixtures without configuration:

- ``lens_emulator``: a started :class:`rxlens.emulator.LensEmulator`, closed after the test.
  Configure it with the ``lens_emulator`` marker, whose keyword arguments go to the
  constructor::

      @pytest.mark.lens_emulator(heartbeat_interval=0.1, replay="all")
      def test_my_pipeline(lens_emulator):
          sid = lens_emulator.create_session("machine-state", rate=20, seed=1)
          ...

- ``lens_emulator_factory``: a callable building more emulators (each closed after the test),
  for tests that need two servers or settings chosen at run time.

The emulator is imported only when a fixture is used, so the plugin costs nothing otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from rxlens.emulator import LensEmulator

__all__ = ["lens_emulator", "lens_emulator_factory"]


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
