"""Old public names kept for one release: each still works, and warns once that it is going.

A module lists its old names in a mapping and hands :func:`module_getattr` to its own
``__getattr__``; the first access to an old name warns with :class:`DeprecationWarning` and names
the replacement, later ones are silent (one warning per name and process is enough to act on,
and a loop over an old name must not flood the log).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import Any

_warned: set[str] = set()
_lock = threading.Lock()


def warn_once(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that ``old`` is deprecated in favour of ``new``, the first time only."""
    with _lock:
        if old in _warned:
            return
        _warned.add(old)
    warnings.warn(
        f"{old} is deprecated and will be removed in the next release: use {new}",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def module_getattr(
    module: str, aliases: dict[str, tuple[str, Callable[[], Any]]], *, depth: int = 0
) -> Callable[[str], Any]:
    """A module ``__getattr__`` serving ``aliases``: old name -> (new name, loader of the object).

    ``depth`` counts the frames between the module's own ``__getattr__`` and this function's
    (0 when it *is* the module's ``__getattr__``), so the warning points at the caller's line.
    """

    def __getattr__(name: str) -> Any:
        if name in aliases:
            new, load = aliases[name]
            warn_once(f"{module}.{name}", new, stacklevel=3 + depth)
            return load()
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


def _reset_for_tests() -> None:
    with _lock:
        _warned.clear()


__all__ = ["module_getattr", "warn_once"]
