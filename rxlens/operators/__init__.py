"""Operators for Lens streams: each lives in its own module, re-exported here."""

from __future__ import annotations

__all__: list[str] = []
