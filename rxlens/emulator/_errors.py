"""Errors the emulator's Python API raises (misuse from a test, not HTTP answers)."""

from __future__ import annotations

from rxlens.errors import RxLensError

#: What the Lens API answers (in a 2xx body) when no lens runner is free; ``max_sessions`` in
#: the emulator.
CAPACITY_MESSAGE = "Failed to allocate lens runner - try stopping an older session!"


class EmulatorError(RxLensError):
    """The emulator was asked something it cannot do."""


class UnknownSession(EmulatorError, LookupError):
    """No session has this id."""


class SessionEnded(EmulatorError):
    """The session is destroyed: it takes no more events."""


class CapacityError(EmulatorError):
    """``max_sessions`` sessions are running already."""


class EmulatorTimeout(EmulatorError, TimeoutError):
    """A ``wait_*`` call timed out."""
