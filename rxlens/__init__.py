"""rxlens: Archetype AI Lens inference streams as ReactiveX observables.

The names most code needs are here; the rest lives in :mod:`rxlens.sse` (the SSE layer),
:mod:`rxlens.operators` (the operators), :mod:`rxlens.events` (typed events),
:mod:`rxlens.emulator` (a local Lens API) and :mod:`rxlens.errors`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from rxlens import aio, errors
from rxlens._deprecation import module_getattr as _module_getattr
from rxlens.client import LensClient
from rxlens.errors import RxLensError
from rxlens.operators import merge_sessions
from rxlens.recording import replay
from rxlens.retry import RetryPolicy
from rxlens.sinks import CollectTimeout, collect, to_dataframe, to_jsonl

#: Names of the previous release, served (with a DeprecationWarning, once) for one more.
__getattr__ = _module_getattr(__name__, {"aiter": ("rxlens.aio.iterate", lambda: aio.iterate)})

__all__ = [
    "CollectTimeout",
    "LensClient",
    "RetryPolicy",
    "RxLensError",
    "__version__",
    "aio",
    "collect",
    "errors",
    "merge_sessions",
    "replay",
    "to_dataframe",
    "to_jsonl",
]
