"""Operators for Lens streams. Each lives in its own module; this is their documented face.

- :func:`resume`: reconnect after retryable errors and drop replayed events.
"""

from __future__ import annotations

from rxlens.operators._resume import resume

__all__ = ["resume"]
