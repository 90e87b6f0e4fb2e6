"""A local Archetype AI Lens API emulator: a real HTTP server on 127.0.0.1.

No API key to obtain and no network: scripted lenses, exact injected events, and fault
injection, for testing code that reads Lens streams (with rxlens or any other client)::

    from rxlens.emulator import Faults, LensEmulator

    with LensEmulator(heartbeat_interval=0.5) as emu:
        sid = emu.create_session("machine-state", rate=10, seed=1)
        url = emu.consumer_url(sid)           # GET it with emu.headers
        emu.push(sid, {"type": "inference.result", "event_data": {"response": ["ok"]}})
        emu.set_faults(Faults(drop_after=3), session_id=sid)
        emu.destroy(sid)                      # open streams end with sse.stream.end

The pytest plugin :mod:`rxlens.testing` provides a ``lens_emulator`` fixture, and
``rxlens serve`` runs one from the command line.
"""

from __future__ import annotations

from rxlens.emulator._emulator import LensEmulator
from rxlens.emulator._errors import (
    CAPACITY_MESSAGE,
    CapacityError,
    EmulatorError,
    EmulatorTimeout,
    SessionEnded,
    UnknownSession,
)
from rxlens.emulator._faults import (
    LARGE_EVENT_BYTES,
    Faults,
    MailboxFaults,
    MalformedKind,
    ReplyShape,
)
from rxlens.emulator._lenses import LENSES, LensSpec
from rxlens.emulator._play import play_stream
from rxlens.emulator._server import ServerLimits, is_loopback
from rxlens.emulator._stats import EmulatorStats, ReaderStats, SessionStats

__all__ = [
    "CAPACITY_MESSAGE",
    "LARGE_EVENT_BYTES",
    "LENSES",
    "CapacityError",
    "EmulatorError",
    "EmulatorStats",
    "EmulatorTimeout",
    "Faults",
    "LensEmulator",
    "LensSpec",
    "MailboxFaults",
    "MalformedKind",
    "ReaderStats",
    "ReplyShape",
    "ServerLimits",
    "SessionEnded",
    "SessionStats",
    "UnknownSession",
    "is_loopback",
    "play_stream",
]
