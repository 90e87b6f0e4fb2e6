"""rxlens: Archetype AI Lens inference streams as ReactiveX observables."""

from __future__ import annotations

__version__ = "0.1.0"

from rxlens import errors
from rxlens.errors import RxLensError

__all__ = ["RxLensError", "__version__", "errors"]
