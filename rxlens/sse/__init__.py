"""Server-sent events: a spec-exact decoder and a resumable RxPY source."""

from __future__ import annotations

from rxlens.sse._decoder import Decoder
from rxlens.sse._models import Event

__all__ = ["Decoder", "Event"]
