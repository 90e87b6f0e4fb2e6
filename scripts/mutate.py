"""Mutation testing of rxlens's core modules: do the tests notice when the code is wrong?

A passing suite says the code does what the tests check; it does not say the tests check much.
This script makes one small change at a time to a module (a mutant: ``<`` for ``<=``, ``+`` for
``-``, ``and`` for ``or``, a constant off by one, a statement deleted, ...), runs that module's
tests against it, and reports the mutants no test noticed (the survivors). Each survivor is
either a missing test or an equivalent mutant (a change that cannot alter behaviour, such as a
deleted log line); the adjusted score leaves out the ones listed as equivalent below.

It needs nothing beyond the test dependencies and no network. Mutants are made from the AST of
a copy of the repository in a temporary directory (the working tree is never touched) and the
tests run in a subprocess with a timeout (a mutant that hangs the tests counts as killed).

Usage (from the repository root; not part of CI, a full run takes minutes per module)::

    python scripts/mutate.py                    # every core module
    python scripts/mutate.py retry resume -j 2  # some modules, two mutants at a time
    python scripts/mutate.py --list             # the modules and their tests
    python scripts/mutate.py decoder --show 12  # print mutant 12 of the decoder as a diff
    python scripts/mutate.py decoder --skip-equivalent  # faster: trust the list below
"""

from __future__ import annotations

import argparse
import ast
import copy
import difflib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Run each mutant's tests in a fork of this process (fast; POSIX), else in a new interpreter.
FORK = hasattr(os, "fork")

#: module name -> (source file, the test files that cover it)
TARGETS: dict[str, tuple[str, list[str]]] = {
    "decoder": ("rxlens/sse/_decoder.py", ["tests/test_decoder.py"]),
    "retry": ("rxlens/retry.py", ["tests/test_retry.py"]),
    "resume": ("rxlens/sse/_resume.py", ["tests/test_resume.py", "tests/test_retry.py"]),
    "heartbeat_timeout": (
        "rxlens/operators/_heartbeat_timeout.py",
        ["tests/test_op_heartbeat_timeout.py"],
    ),
    "until_end": ("rxlens/operators/_until_end.py", ["tests/test_op_until_end.py"]),
    "window_results": (
        "rxlens/operators/_window_results.py",
        ["tests/test_op_event_time.py", "tests/test_op_window_results.py"],
    ),
    "rising_edge": ("rxlens/operators/_rising_edge.py", ["tests/test_op_alerts.py"]),
    "rate": ("rxlens/operators/_rate.py", ["tests/test_op_aggregates.py"]),
    "changes": ("rxlens/operators/_changes.py", ["tests/test_op_alerts.py"]),
    "event_time": (
        "rxlens/operators/_event_time.py",
        ["tests/test_op_event_time.py", "tests/test_op_window_results.py"],
    ),
}

#: Survivors judged equivalent (they cannot change what the module does), by module, as
#: ``"<source line, stripped> | <mutation>"``, the key the report prints for each survivor.
#: Every entry needs its reason beside it.
_DETACHED = (
    "after the end the downstream observer is an RxPY AutoDetachObserver, which ignores what "
    "follows its on_completed and disposes the subscription itself"
)
_UPSTREAM_ENDED = (
    "only after the end: the upstream that ended passes nothing more through its RxPY "
    "AutoDetachObserver, no reconnect is pending, and the downstream AutoDetachObserver, "
    "stopped once done is set, disposes the subscription (setting done) right after"
)
_CHECKED_AGAIN = "_heartbeat_timeout, called next, checks seconds again with the same error"
_OVERLOAD = "the body of an @overload stub, which the real definition replaces: never run"
_SOURCE_ENDED = (
    "the flag set on the source's on_error or on_completed: the source is subscribed through "
    "an RxPY AutoDetachObserver, which passes nothing after those, so it is never read again"
)
_GENERAL = (
    "the decoder's fast path no longer fires for that block, which then takes the general "
    "per-line loop (the spec) and gives the same events"
)
EQUIVALENT: dict[str, dict[str, str]] = {
    "retry": {
        "draws: int = 0 | 0 -> 1": "only shifts which seeded draw each attempt uses",
        "next_state = RetryState(attempt, started, draws + 1) | 1 -> 2": (
            "any injective draw sequence keeps seeded jitter deterministic and varying"
        ),
        "next_state = RetryState(attempt, started, draws + 1) | Add -> Sub in `draws + 1`": (
            "any injective draw sequence keeps seeded jitter deterministic and varying"
        ),
        "return cls(base=0.0, cap=0.0, jitter=0.0, max_attempts=max_attempts) | 0.0 -> 1.0": (
            "immediate(): cap=0 clamps every delay to 0 whatever base or jitter"
        ),
        "if attempt <= 1: | LtE -> Lt in `attempt <= 1`": (
            "for attempt 1 the general formula gives min(cap, start * multiplier ** 0), the same"
        ),
        "return min(self.cap, start) | delete `return min(self.cap, start)`": (
            "the same: the general formula gives min(cap, start) for attempt 1"
        ),
        "exponent = min(attempt - 1, 1024) | 1024 -> 1025": (
            "any exponent cap above ~64 saturates at cap, with the OverflowError guard"
        ),
        "hint = self.cap if retry_ms >= self.cap * 1000 else max(retry_ms, 0) / 1000.0 "
        "| 1000 -> 1001": "a hint between cap and 1.001 cap is clamped to cap by backoff()",
        "hint = self.cap if retry_ms >= self.cap * 1000 else max(retry_ms, 0) / 1000.0 "
        "| GtE -> Gt in `retry_ms >= self.cap * 1000`": "at equality both branches give cap",
        "if retry_after is not None and retry_after > delay: "
        "| Gt -> GtE in `retry_after > delay`": "at equality both give the same delay",
        "return random.Random(self.seed * 1_000_003 + n).random() | 1000003 -> 1000004": (
            "another mixing constant: still deterministic per seed and attempt"
        ),
        "return random.Random(self.seed * 1_000_003 + n).random() "
        "| Mult -> Div in `self.seed * 1000003`": "another mixing: still deterministic",
        "return random.Random(self.seed * 1_000_003 + n).random() "
        "| Add -> Sub in `self.seed * 1000003 + n`": "another mixing: still deterministic",
    },
    "resume": {
        # Never run: a Protocol's method bodies exist for the type checker only.
        "def url(self) -> str: ... | delete `...`": "a Protocol method body is never run",
        "def last_event_id(self) -> str: ... | delete `...`": "a Protocol method body is never run",
        # __slots__ only saves memory per object and forbids attributes nobody sets.
        "__slots__ = (\"_budget\", \"_bytes\", \"_count\", \"_order\") "
        "| delete `__slots__ = ('_budget', '_bytes', '_count', '_order')`": (
            "__slots__ only forbids attributes no code sets (and saves bytes per subscription)"
        ),
        "__slots__ = (\"ids\", \"pairs\") | delete `__slots__ = ('ids', 'pairs')`": (
            "__slots__ only forbids attributes no code sets (and saves bytes per reconnect)"
        ),
        "__slots__ = (\"done\", \"first_at\", \"generation\", \"last_id\", \"resumed_from\", "
        "\"retry\", \"window\") | delete `__slots__ = ('done', 'first_at', 'generation', "
        "'last_id',...`": "__slots__ only forbids attributes no code sets",
        "if self._bytes > self._budget: | Gt -> GtE in `self._bytes > self._budget`": (
            "at equality the loop below, with its own `>`, forgets nothing either"
        ),
        "self.first_at: float | None = None | delete `self.first_at: float | None = None`": (
            "subscribe_upstream sets first_at = None before anything reads it"
        ),
        "self.resumed_from = \"\" | delete `self.resumed_from = ''`": (
            "read only while a replay window is open, and the reconnect that opens it sets it"
        ),
        # The terminal branches of on_error and on_completed: the upstream that called them
        # ended, so RxPY's AutoDetachObserver between it and resume passes nothing more from
        # it; no reconnect timer is pending; and the downstream AutoDetachObserver disposes
        # the subscription right after its on_error/on_completed, which sets done anyway.
        # (Keys name every line with the same text; the other `return`/`done` lines are
        # killed by tests and never looked up here.)
        "state.done = True | delete `state.done = True`": _UPSTREAM_ENDED,
        "state.done = True | True -> False": _UPSTREAM_ENDED,
        "if generation != state.generation or state.done: "
        "| Or -> And in `generation != state.generation or state.done`": _UPSTREAM_ENDED,
        "return | delete `return`": _UPSTREAM_ENDED,
        "0.0 if started is None else now() - started, | 0.0 -> 1.0": (
            "never taken: decide() always returns a state with started_at set"
        ),
        "upstream.disposable = Disposable()  # drop the failed subscription "
        "| delete `upstream.disposable = Disposable()`": (
            "the failed subscription was already disposed by its AutoDetachObserver after its "
            "on_error; this only drops the reference before the reconnect or dispose() does"
        ),
    },
    "heartbeat_timeout": {
        "if not seconds > 0: | Gt -> GtE in `seconds > 0`": _CHECKED_AGAIN,
        "raise ValueError(f\"seconds must be > 0, got {seconds!r}\") "
        "| delete `raise ValueError(f'seconds must be > 0, got {seconds!r}')`": _CHECKED_AGAIN,
        # After the stream ends (stopped set): the downstream AutoDetachObserver ignores what
        # follows its on_error/on_completed and disposes the subscription (source and timer)
        # as soon as its own callback returns, where the source's dispose() lines run anyway;
        # a timer that fires before then finds `stopped` set and does nothing. The same key
        # names every line with the same text: the killed ones do not reach this table.
        "subscription.dispose() | delete `subscription.dispose()`": _DETACHED,
        "timer.dispose() | delete `timer.dispose()`": _DETACHED,
        "return | delete `return`": _DETACHED,
    },
    "until_end": {
        "return | delete `return`": _DETACHED,
        "done = True | delete `done = True`": _DETACHED,
        "done = True | True -> False": _DETACHED,
        "subscription.dispose() | delete `subscription.dispose()`": _DETACHED,
    },
    "window_results": {
        ") -> Callable[[Observable[_T]], Observable[list[_T]]]: ... | delete `...`": _OVERLOAD,
        ") -> Callable[[Observable[_T]], Observable[Window[_T]]]: ... | delete `...`": _OVERLOAD,
        "stopped = True | delete `stopped = True`": _SOURCE_ENDED,
        "stopped = True | True -> False": _SOURCE_ENDED,
        "return | delete `return`": (
            "in on_completed after the time function failed: the flush calls no user code and "
            "what it emits goes to an observer that has had on_error; " + _DETACHED
        ),
        '__all__ = ["Window", "window_results"] '
        "| delete `__all__ = ['Window', 'window_results']`": (
            "rxlens.operators imports both names explicitly and nothing star-imports this "
            "private module"
        ),
    },
    "event_time": {
        "def __getitem__(self, index: int) -> _T: ... | delete `...`": _OVERLOAD,
        "def __getitem__(self, index: slice) -> tuple[_T, ...]: ... | delete `...`": _OVERLOAD,
        "def __call__(self, source: Observable[Window[Any]]) -> Observable[Windowed[_V]]: ... "
        "| delete `...`": _OVERLOAD,
        "def __call__(self, source: Observable[Sequence[Any]]) -> Observable[_V]: ... "
        "| delete `...`": _OVERLOAD,
        "self._next = 0  # the lowest window index not yet emitted (valid once _started) "
        "| delete `self._next = 0`": "push() sets it from the first timed item before any read",
        "self._next = 0  # the lowest window index not yet emitted (valid once _started) "
        "| 0 -> 1": "push() sets it from the first timed item before any read",
        "self._max_time = -math.inf | delete `self._max_time = -math.inf`": (
            "read only once started, and the first timed item sets it"
        ),
        "while k > 0 and (k - 1) * self._step + self._size > at: | 0 -> 1": (
            "at k = 1 the loop tests size > at, but k = 1 comes from floor((at - size) / step) "
            ">= 0, so at >= size (a float difference has the exact sign): the test is false"
        ),
        "self._max_time = at | delete `self._max_time = at`": (
            "the first timed item: max_time is -inf, so `if at > self._max_time` below sets it"
        ),
        "self._untimed = [] | delete `self._untimed = []`": (
            "the untimed list is read only before the first timed item, never after"
        ),
        "if at > self._max_time: | Gt -> GtE in `at > self._max_time`": (
            "at equality it assigns the value it already has"
        ),
        "return | delete `return`": (
            "in _add, for a late item: the loop after it runs over range(max(first, next), "
            "last + 1), empty when last < next"
        ),
        "__all__ = [ | delete `__all__ = ['EventTimeWindows', 'TimeSpec', 'Window', 'Win...`": (
            "every importer names what it takes from this private module; nothing star-imports it"
        ),
    },
    "decoder": {
        "if len(digits) > _RETRY_MAX_DIGITS: | Gt -> GtE in `len(digits) > _RETRY_MAX_DIGITS`": (
            "RETRY_MAX_MS (10**12) has 13 digits, so every 13-digit value saturates to it anyway"
        ),
        "__slots__ = ( | delete `__slots__ = ('_block_size', '_bom_state', '_closed', '_da...`": (
            "slots only save memory; every attribute is set in __init__, so behaviour is the same"
        ),
        "self._skip_lf = False | False -> True": (
            "skipping an LF that starts the stream drops a blank line with nothing in progress, "
            "which dispatches nothing and commits the unchanged seeded id"
        ),
        "if len(head) < 3 and _BOM.startswith(head): | 3 -> 4": (
            "the only 3-byte head that starts the BOM is the BOM: waiting for the next chunk to "
            "strip it or stripping it now both leave nothing to decode"
        ),
        "if len(head) < 3 and _BOM.startswith(head): | Lt -> LtE in `len(head) < 3`": (
            "the only 3-byte head that starts the BOM is the BOM: waiting for the next chunk to "
            "strip it or stripping it now both leave nothing to decode"
        ),
        # Not unique: also the other `return []`s of feed(), which the tests kill today.
        "return [] | delete `return []`": (
            "the BOM or the skipped LF was the whole chunk: going on with b'' buffers an empty "
            "part, which adds 0 bytes and joins to nothing"
        ),
        "complete = chunk if end == len(chunk) - 1 else chunk[: end + 1] "
        "| Sub -> Add in `len(chunk) - 1`": (
            "always the slice chunk[: end + 1], which is the whole chunk when the LF is last"
        ),
        "if end < len(chunk) - 1: | Sub -> Add in `len(chunk) - 1`": (
            "with nothing after the last LF it keeps chunk[end + 1:] == b'', an empty part "
            "that adds 0 bytes and joins to nothing"
        ),
        "if end < len(chunk) - 1: | Lt -> LtE in `end < len(chunk) - 1`": (
            "with nothing after the last LF it keeps chunk[end + 1:] == b'', an empty part "
            "that adds 0 bytes and joins to nothing"
        ),
        "self._pending.clear() | delete `self._pending.clear()`": (
            "after close() feed() raises and pending_bytes reads _pending_size (reset): the "
            "parts are never read again, only freed later"
        ),
        "self._block_size = 0 | delete `self._block_size = 0`": (
            "after close() feed() raises and no property reads the block size"
        ),
        "self._block_size = 0 | 0 -> 1": "after close() feed() raises and nothing reads it",
        "if size + n <= limit: | LtE -> Lt in `size + n <= limit`": (
            "the shortcut for a run that fits: the general count after it gives the same sizes"
        ),
        "return None | delete `return None`": (
            "in _measure: after the shortcut the general count gives the same sizes; at the "
            "end of the function None is returned anyway"
        ),
        "block_end = n if stop < 0 else stop + 1 | 0 -> 1": (
            "complete[pos] is not LF here, so the LF LF found from pos is -1 or at pos + 1 or "
            "later: stop is never 0"
        ),
        "block_end = n if stop < 0 else stop + 1 | Lt -> LtE in `stop < 0`": (
            "complete[pos] is not LF here, so stop is -1 or >= pos + 1: never 0"
        ),
        "if nl < 0: | 0 -> 1": _GENERAL + " (a block starting with LF has no id/event line)",
        "if nl < 0: | Lt -> LtE in `nl < 0`": (
            _GENERAL + " (a block starting with LF has no id/event line)"
        ),
        'if block[:6] == "data: ": | 6 -> 7': _GENERAL,
        'if block[:4] == "id: " and block.find("\\n") == nl: | 4 -> 5': (
            _GENERAL + " (the head-line shortcut for `id: x` never fires; the loop after it reads "
            "the same id)"
        ),
        'elif block[nl + 1 : nl + 7] == "data: ": | 1 -> 2': _GENERAL,
        'elif block[nl + 1 : nl + 7] == "data: ": | Add -> Sub in `nl + 1`': _GENERAL,
        'elif block[nl + 1 : nl + 7] == "data: ": | 7 -> 8': _GENERAL,
        'elif block[nl + 1 : nl + 7] == "data: ": | Add -> Sub in `nl + 7`': (
            _GENERAL + "; block[nl + 1 : nl - 7] can equal 'data: ' only when it is the slice "
            "[nl + 1 : nl + 7] (nl >= 4, 14 characters), where the original fires the same"
        ),
        'if line[:4] == "id: " and "\\x00" not in line: | 4 -> 5': _GENERAL,
        'elif line[:7] == "event: ": | 7 -> 8': _GENERAL,
        "self._last_event_id = id_buffer | delete `self._last_event_id = id_buffer`": (
            "the general loop it calls next commits the id itself at the block's blank line"
        ),
        "clean = True  # the blank line after the block ended any event | delete `clean = True`": (
            _GENERAL
        ),
        "clean = True  # the blank line after the block ended any event | True -> False": (
            _GENERAL
        ),
    },
}

_SWAPS: dict[type[ast.AST], type[ast.AST]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv,
    ast.And: ast.Or,
    ast.Or: ast.And,
}


@dataclass(frozen=True)
class Mutant:
    index: int
    line: int
    what: str


class _Mutator(ast.NodeTransformer):
    """Walks a module in a fixed order; applies the ``target``-th possible change (or none).

    With ``target=-1`` it only lists the possible changes in ``found``.
    """

    def __init__(self, target: int = -1) -> None:
        self.target = target
        self.count = 0
        self.found: list[Mutant] = []

    def _site(self, node: ast.AST, what: str) -> bool:
        index = self.count
        self.count += 1
        if self.target < 0:
            self.found.append(Mutant(index, getattr(node, "lineno", 0), what))
        return index == self.target

    # -- what is never mutated: docstrings, annotations, logging --------------------------------

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        # Only the body: decorators, annotations and defaults are left alone.
        node.body = self._body(node.body)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        node.body = self._body(node.body)
        return node

    def visit_Module(self, node: ast.Module) -> ast.AST:
        node.body = self._body(node.body)
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        if node.value is not None:
            node.value = self.visit(node.value)
        return node

    def _body(self, body: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for i, stmt in enumerate(body):
            if i == 0 and _is_docstring(stmt):
                out.append(stmt)
                continue
            if _is_logging(stmt) or _is_typing(stmt):
                out.append(stmt)
                continue
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                out.append(stmt)
                continue
            deletable = isinstance(
                stmt, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Raise, ast.Return)
            ) and not (isinstance(stmt, ast.AnnAssign) and stmt.value is None)
            if deletable and self._site(stmt, f"delete `{_short(stmt)}`"):
                out.append(ast.copy_location(ast.Pass(), stmt))
                continue
            visited = self.visit(stmt)
            out.append(visited if isinstance(visited, ast.stmt) else stmt)
        return out

    def generic_visit(self, node: ast.AST) -> ast.AST:
        for field, value in ast.iter_fields(node):
            if field in ("annotation", "returns"):
                continue
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                # Bodies of compound statements: deletion sites, docstrings, logging.
                setattr(node, field, self._body(value))
            elif isinstance(value, list):
                new = []
                for item in value:
                    if isinstance(item, ast.AST):
                        item = self.visit(item)
                    new.append(item)
                setattr(node, field, new)
            elif isinstance(value, ast.AST):
                setattr(node, field, self.visit(value))
        return node

    # -- the changes ------------------------------------------------------------------------

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        for i, op in enumerate(node.ops):
            swap = _SWAPS.get(type(op))
            if swap is not None and self._site(
                node, f"{type(op).__name__} -> {swap.__name__} in `{_short(node)}`"
            ):
                node.ops = [*node.ops[:i], swap(), *node.ops[i + 1 :]]  # type: ignore[list-item]
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        swap = _SWAPS.get(type(node.op))
        if swap is not None and self._site(
            node, f"{type(node.op).__name__} -> {swap.__name__} in `{_short(node)}`"
        ):
            setattr(node, "op", swap())  # noqa: B010 (the types of ops differ)
        return node

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        self.generic_visit(node)
        swap = _SWAPS.get(type(node.op))
        if swap is not None and self._site(
            node, f"{type(node.op).__name__}= -> {swap.__name__}= in `{_short(node)}`"
        ):
            setattr(node, "op", swap())  # noqa: B010 (the types of ops differ)
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        swap = _SWAPS[type(node.op)]
        if self._site(node, f"{type(node.op).__name__} -> {swap.__name__} in `{_short(node)}`"):
            setattr(node, "op", swap())  # noqa: B010 (the types of ops differ)
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not) and self._site(node, f"drop `not` in `{_short(node)}`"):
            return node.operand
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        value = node.value
        if isinstance(value, bool):
            if self._site(node, f"{value} -> {not value}"):
                return ast.copy_location(ast.Constant(not value), node)
        elif isinstance(value, (int, float)) and self._site(node, f"{value!r} -> {value + 1!r}"):
            return ast.copy_location(ast.Constant(value + 1), node)
        return node

    def visit_If(self, node: ast.If) -> ast.AST:
        self.generic_visit(node)
        if self._site(node, f"negate `if {_short(node.test)}`"):
            node.test = ast.UnaryOp(ast.Not(), node.test)
        return node


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _is_typing(stmt: ast.stmt) -> bool:
    """``_T = TypeVar("_T")``: only the type checker reads it."""
    return (
        isinstance(stmt, ast.Assign)
        and isinstance(stmt.value, ast.Call)
        and isinstance(stmt.value.func, ast.Name)
        and stmt.value.func.id == "TypeVar"
    )


def _is_logging(stmt: ast.stmt) -> bool:
    """``log.debug(...)`` and friends: what they do is not behaviour the tests pin."""
    if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
        return False
    func = stmt.value.func
    return (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id in ("log", "logger", "logging")
    )


def _short(node: ast.AST, width: int = 60) -> str:
    text = " ".join(ast.unparse(node).split())
    return text if len(text) <= width else text[: width - 3] + "..."


# -- making and running mutants -----------------------------------------------------------------


def mutants(source: str) -> list[Mutant]:
    finder = _Mutator()
    finder.visit(ast.parse(source))
    return finder.found


def mutated(source: str, index: int) -> str:
    tree = ast.parse(source)
    changer = _Mutator(index)
    new = changer.visit(copy.deepcopy(tree))
    ast.fix_missing_locations(new)
    return ast.unparse(new) + "\n"


def _copy_tree(into: Path) -> None:
    for name in ("rxlens", "tests"):
        shutil.copytree(
            ROOT / name, into / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    for name in ("pyproject.toml", "setup.cfg"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, into / name)


_PYTEST_ARGS = ["-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "--hypothesis-seed=0"]


def _preload() -> None:
    """Import the test tools and third-party libraries once, before any fork (never rxlens)."""
    sys.dont_write_bytecode = True  # a mutant of the same size and second must not reuse a .pyc
    for name in ("pytest", "hypothesis", "reactivex", "reactivex.testing", "requests", "urllib3"):
        try:
            __import__(name)
        except ImportError:
            pass


class _QuickFirst:
    """A pytest plugin: the plain tests run before the hypothesis ones (order otherwise kept).

    With ``-x`` a mutant stops at its first failing test, and most mutants fail an example
    test, so running the slow property tests last makes a killed mutant cost seconds, not the
    whole file (a survivor still runs everything).
    """

    def pytest_collection_modifyitems(self, items: list[object]) -> None:
        items.sort(
            key=lambda item: bool(getattr(getattr(item, "obj", None), "is_hypothesis_test", False))
        )


def _run_forked(workdir: Path, tests: list[str], timeout: float) -> str:
    """Run the tests in a forked child: no interpreter start, no re-import of the libraries."""
    pid = os.fork()
    if pid == 0:  # the child: import rxlens (and the tests) from the mutated copy
        try:
            os.chdir(workdir)
            sys.path[:0] = [str(workdir), str(workdir / "tests")]
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            import pytest

            os._exit(int(pytest.main([*_PYTEST_ARGS, *tests], plugins=[_QuickFirst()])))
        except BaseException:
            os._exit(99)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return "passed" if os.waitstatus_to_exitcode(status) == 0 else "failed"
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout"
        time.sleep(0.02)


def _run_tests(workdir: Path, tests: list[str], timeout: float) -> str:
    """"passed", "failed" or "timeout"."""
    if FORK:
        return _run_forked(workdir, tests, timeout)
    env = {**os.environ, "PYTHONPATH": str(workdir), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", *_PYTEST_ARGS, *tests]
    try:
        result = subprocess.run(
            command, cwd=workdir, env=env, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return "timeout"
    return "passed" if result.returncode == 0 else "failed"


@dataclass
class Report:
    module: str
    total: int = 0
    killed: int = 0
    timeouts: int = 0
    survivors: list[tuple[Mutant, str]] | None = None
    equivalent: int = 0

    def score(self, adjusted: bool) -> float:
        counted = self.total - (self.equivalent if adjusted else 0)
        return 100.0 * (self.killed + self.timeouts) / counted if counted else 100.0


def run_module(name: str, jobs: int, verbose: bool, skip_equivalent: bool = False) -> Report:
    source_path, tests = TARGETS[name]
    source = (ROOT / source_path).read_text()
    lines = source.splitlines()
    found = mutants(source)
    report = Report(name, total=len(found), survivors=[])
    known = EQUIVALENT.get(name, {})

    with tempfile.TemporaryDirectory(prefix=f"rxlens-mutate-{name}-") as tmp:
        workdirs = []
        for k in range(max(1, jobs)):
            workdir = Path(tmp) / f"w{k}"
            _copy_tree(workdir)
            workdirs.append(workdir)
        started = time.monotonic()
        if _run_tests(workdirs[0], tests, timeout=600) != "passed":
            raise SystemExit(f"{name}: the tests fail without any mutant; fix them first")
        baseline = time.monotonic() - started
        timeout = baseline * 4 + 15
        print(
            f"{name}: {len(found)} mutants of {source_path}, tests {' '.join(tests)} "
            f"({baseline:.1f} s each, timeout {timeout:.0f} s)",
            flush=True,
        )
        free = list(workdirs)
        lock = threading.Lock()

        # A key names every site with the same line and change: only a key of one site is
        # trusted enough to skip its mutant.
        sites = Counter(_key(lines, mutant) for mutant in found)

        def one(mutant: Mutant) -> tuple[Mutant, str]:
            key = _key(lines, mutant)
            if skip_equivalent and key in known and sites[key] == 1:
                return mutant, "not run"
            with lock:
                workdir = free.pop()
            try:
                target = workdir / source_path
                target.write_text(mutated(source, mutant.index))
                outcome = _run_tests(workdir, tests, timeout)
                target.write_text(source)
            finally:
                with lock:
                    free.append(workdir)
            return mutant, outcome

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for mutant, outcome in pool.map(one, found):
                if outcome == "failed":
                    report.killed += 1
                elif outcome == "timeout":
                    report.timeouts += 1
                else:
                    reason = known.get(_key(lines, mutant))
                    if reason is not None:
                        report.equivalent += 1
                        if outcome == "not run":
                            reason = f"(not run) {reason}"
                    report.survivors.append((mutant, reason or ""))  # type: ignore[union-attr]
                if verbose:
                    print(f"  #{mutant.index} line {mutant.line}: {mutant.what}: {outcome}")
    return report


def _key(lines: list[str], mutant: Mutant) -> str:
    """How EQUIVALENT names a mutant: its source line, stripped, and the change."""
    line = lines[mutant.line - 1].strip() if mutant.line else ""
    return f"{line} | {mutant.what}"


def print_report(report: Report, source_path: str) -> None:
    lines = (ROOT / source_path).read_text().splitlines()
    print(
        f"{report.module}: {report.total} mutants, {report.killed} killed, "
        f"{report.timeouts} timed out, {len(report.survivors or [])} survived "
        f"({report.equivalent} of them equivalent); score {report.score(False):.1f} %, "
        f"adjusted {report.score(True):.1f} %"
    )
    for mutant, reason in report.survivors or []:
        line = lines[mutant.line - 1].strip() if mutant.line else ""
        mark = f"  [equivalent: {reason}]" if reason else ""
        print(f"  survived #{mutant.index} {source_path}:{mutant.line}: {mutant.what}{mark}")
        print(f"      key: {line} | {mutant.what}")


def show(name: str, index: int) -> None:
    source_path = TARGETS[name][0]
    source = (ROOT / source_path).read_text()
    original = ast.unparse(ast.parse(source)).splitlines()
    changed = mutated(source, index).splitlines()
    diff = difflib.unified_diff(original, changed, source_path, f"mutant {index}", lineterm="")
    for line in diff:
        print(line)


def _selected(names: list[str]) -> Iterator[str]:
    for name in names or list(TARGETS):
        if name not in TARGETS:
            raise SystemExit(f"unknown module {name!r}; one of: {', '.join(TARGETS)}")
        yield name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"any of: {', '.join(TARGETS)} (default all)")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="mutants run at a time")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every mutant")
    parser.add_argument("--list", action="store_true", help="list the modules and exit")
    parser.add_argument("--show", type=int, metavar="N", help="print mutant N as a diff")
    parser.add_argument(
        "--skip-equivalent",
        action="store_true",
        help="do not run the mutants listed as equivalent whose key names one site only "
        "(counted as equivalent survivors)",
    )
    parser.add_argument(
        "--no-fork", action="store_true", help="start a new interpreter for every mutant"
    )
    args = parser.parse_args(argv)
    global FORK
    FORK = FORK and not args.no_fork
    if FORK:
        _preload()
    if args.list:
        for name, (path, tests) in TARGETS.items():
            print(f"{name:18} {path:42} {len(mutants((ROOT / path).read_text()))} mutants  "
                  f"{' '.join(tests)}")
        return 0
    if args.show is not None:
        for name in _selected(args.modules):
            show(name, args.show)
        return 0
    for name in _selected(args.modules):
        report = run_module(name, args.jobs, args.verbose, args.skip_equivalent)
        print_report(report, TARGETS[name][0])
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
