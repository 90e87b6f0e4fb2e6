"""The package's shape: no import cycles, no import that points back up the layers, and no
private name reached from another package.

The layers (see the README's "Layout"), lowest first::

    base (errors, retry, shared private helpers) -> sse -> events -> operators
        -> client / recording / sinks -> notebook / cli / testing

A module may import from its own layer or below. The emulator stands beside the stack: it may use
the layers up to the operators, and nothing from the client layer or above; only the top layer may
import it. Every import counts, including those made inside functions and under ``TYPE_CHECKING``:
a hidden import is still a dependency. A private module (``_name``) may be imported only from its
own package or the packages below it in the tree; a private name only from within its package.
Tests go through the front door too: a test file may import a private module only when the file is
named after it (``tests/test_decoder.py`` may import ``rxlens.sse._decoder``).

The checks read the source with :mod:`ast`; nothing is imported.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rxlens"

BASE, SSE, EVENTS, OPERATORS, CLIENT, TOP = range(6)
#: The emulator's own rank: above the operators, below the client layer.
EMULATOR = 3.5

#: Modules by name, first match wins (a prefix ending in "." names a package's members).
LAYERS: list[tuple[str, float]] = [
    ("rxlens.errors", BASE),
    ("rxlens.retry", BASE),
    ("rxlens._timers", BASE),
    ("rxlens._deprecation", BASE),
    ("rxlens._text", BASE),
    ("rxlens._json", BASE),
    ("rxlens.sse", SSE),
    ("rxlens.sse.", SSE),
    ("rxlens.events", EVENTS),
    ("rxlens.schemas", EVENTS),
    ("rxlens._event_types", EVENTS),
    ("rxlens._event_decoding", EVENTS),
    ("rxlens._format", EVENTS),
    ("rxlens._record_format", EVENTS),
    ("rxlens._timed", EVENTS),
    ("rxlens.analytics", OPERATORS),
    ("rxlens.operators", OPERATORS),
    ("rxlens.operators.", OPERATORS),
    ("rxlens.emulator", EMULATOR),
    ("rxlens.emulator.", EMULATOR),
    ("rxlens.client", CLIENT),
    ("rxlens._rest", CLIENT),
    ("rxlens._api", CLIENT),
    ("rxlens.recording", CLIENT),
    ("rxlens.columnar", CLIENT),
    ("rxlens.sinks", CLIENT),
    ("rxlens.aio", CLIENT),
    ("rxlens.mailbox", CLIENT),
    ("rxlens.mailbox.", CLIENT),
    ("rxlens.fleet", CLIENT),
    ("rxlens.fleet.", CLIENT),
    ("rxlens.notebook", TOP),
    ("rxlens.plots", TOP),
    ("rxlens.cli", TOP),
    ("rxlens.cli.", TOP),
    ("rxlens.testing", TOP),
    ("rxlens.testing.", TOP),
    ("rxlens", TOP),  # the package's own __init__: the facade over everything
]


def layer_of(module: str) -> float:
    for prefix, rank in LAYERS:
        if module == prefix or (prefix.endswith(".") and module.startswith(prefix)):
            return rank
    raise AssertionError(f"{module} has no layer: add it to LAYERS in {Path(__file__).name}")


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # the module imported (resolved to a module that exists)
    names: tuple[str, ...]  # names taken from it ("from x import a, b"), empty for "import x"
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def is_package(name: str, known: dict[str, Path]) -> bool:
    return name in known and known[name].name == "__init__.py"


def imports_of(name: str, path: Path, known: dict[str, Path]) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if is_package(name, known) else name.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "rxlens" or alias.name.startswith("rxlens."):
                    found.append(Import(name, alias.name, (), node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if not (source == "rxlens" or source.startswith("rxlens.")):
                continue
            plain: list[str] = []
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in known:  # "from rxlens import operators": the submodule itself
                    found.append(Import(name, sub, (), node.lineno))
                else:
                    plain.append(alias.name)
            if plain:
                found.append(Import(name, source, tuple(plain), node.lineno))
    return found


def all_imports() -> list[Import]:
    known = modules()
    return [edge for name, path in known.items() for edge in imports_of(name, path, known)]


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return cycles


def dependency_graph(imports: list[Import]) -> dict[str, set[str]]:
    """Who depends on whom. A package's ``__init__`` is a facade: importing a module of a package
    runs the package's ``__init__`` first, but a member importing its own package's facade is the
    cycle we look for, so the edge is kept as written."""
    edges: dict[str, set[str]] = {}
    for edge in imports:
        if edge.target != edge.importer:
            edges.setdefault(edge.importer, set()).add(edge.target)
    return edges


def cycle_report(imports: list[Import]) -> list[str]:
    # The top-level facade imports everything, by design; it never takes part in a cycle unless a
    # module imports it back, which the layer check reports on its own.
    edges = dependency_graph([e for e in imports if e.importer != "rxlens"])
    return [" <-> ".join(cycle) for cycle in find_cycles(edges)]


def layer_report(imports: list[Import]) -> list[str]:
    problems = []
    for edge in imports:
        if edge.importer == "rxlens":
            continue
        source, target = layer_of(edge.importer), layer_of(edge.target)
        if target == EMULATOR and source < TOP and source != EMULATOR:
            problems.append(f"{edge.importer}:{edge.line} imports the emulator ({edge.target})")
        elif source == EMULATOR and target >= CLIENT:
            problems.append(f"{edge.importer}:{edge.line} (emulator) imports {edge.target}")
        elif target > source and target != EMULATOR:
            problems.append(
                f"{edge.importer}:{edge.line} imports {edge.target}, a higher layer"
            )
    return problems


def owner(module: str) -> str:
    """The package that may use ``module``'s private parts: everything under its parent."""
    return module.rpartition(".")[0]


def private_report(imports: list[Import]) -> list[str]:
    problems = []
    for edge in imports:
        parts = edge.target.split(".")
        for depth, part in enumerate(parts):
            if part.startswith("_") and not part.startswith("__"):
                allowed = ".".join(parts[:depth])  # the package the private module belongs to
                if not (edge.importer == allowed or edge.importer.startswith(allowed + ".")):
                    problems.append(
                        f"{edge.importer}:{edge.line} imports the private module {edge.target}"
                    )
                break
        else:
            known = modules()
            target_package = edge.target if is_package(edge.target, known) else owner(edge.target)
            home = edge.importer if is_package(edge.importer, known) else owner(edge.importer)
            for name in edge.names:
                if name.startswith("_") and not (
                    home == target_package or home.startswith(target_package + ".")
                ):
                    problems.append(
                        f"{edge.importer}:{edge.line} imports the private name {name} "
                        f"from {edge.target}"
                    )
    return problems


def test_imports_are_read() -> None:
    # Guards the checks below against reading nothing: the client must be seen importing sse.
    imports = all_imports()
    assert any(e.importer == "rxlens.client" and e.target.startswith("rxlens.sse") for e in imports)
    assert len(modules()) > 30


def test_no_import_cycles() -> None:
    problems = cycle_report(all_imports())
    assert not problems, "\n".join(problems)


def test_no_import_points_up_the_layers() -> None:
    problems = layer_report(all_imports())
    assert not problems, "\n".join(problems)


def test_no_private_name_crosses_a_package() -> None:
    problems = private_report(all_imports())
    assert not problems, "\n".join(problems)


def test_every_module_has_a_layer() -> None:
    for name in modules():
        layer_of(name)


#: Tests that reach a private module on purpose, as a seam, and why.
SEAMS = {
    ("test_schemas.py", "rxlens._event_decoding"): "the fast path's agreement with the schemas",
    ("test_schemas.py", "rxlens._event_types"): "the dataclasses' agreement with the schemas",
    ("test_security.py", "rxlens.cli._serve"): "runs `rxlens serve` in-process with a stop event",
    ("test_emulator_cli.py", "rxlens.cli._serve"): "runs `rxlens serve` in-process",
    ("test_hostile_input.py", "rxlens._rest"): "lowers the REST answer cap to test it cheaply",
    ("test_cli_usability.py", "rxlens.sse._transport"): "the transport's reason text, as built",
    ("test_connect.py", "rxlens.sse._decoder"): "the saturation bound of a huge retry: field",
    ("test_op_heartbeat_timeout.py", "rxlens._timers"): (
        "holds the shared timer thread's timers, to run heartbeat_timeout's path on it in steps"
    ),
}

#: A test file named ``test_<prefix>...`` may use the private modules of that package.
PACKAGE_PREFIXES = {
    "cli": "rxlens.cli.",
    "emulator": "rxlens.emulator.",
    "op": "rxlens.operators.",
    "sse": "rxlens.sse.",
    "testing": "rxlens.testing.",
}


def test_tests_import_private_modules_only_of_their_own_subject() -> None:
    known = modules()
    problems = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        stem = path.stem.removeprefix("test_")
        prefix = PACKAGE_PREFIXES.get(stem.split("_")[0], "")
        for edge in imports_of(f"tests.{path.stem}", path, known):
            private = [p for p in edge.target.split(".") if p.startswith("_") and p != "__init__"]
            if not private or private[-1].strip("_") in stem:
                continue
            if prefix and edge.target.startswith(prefix):
                continue
            if (path.name, edge.target) in SEAMS:
                continue
            problems.append(f"{path.name}:{edge.line} imports {edge.target}")
    assert not problems, "\n".join(problems)


# The checks themselves, on small made-up graphs: each must report what it exists to catch.


def test_a_cycle_is_found_however_it_is_made() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(edges) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize(
    ("importer", "target", "reported"),
    [
        ("rxlens.sse._connect", "rxlens.operators._typed", True),
        ("rxlens.notebook", "rxlens.cli._common", False),  # same layer
        ("rxlens.events", "rxlens.client", True),
        ("rxlens.emulator._server", "rxlens.client", True),
        ("rxlens.client", "rxlens.emulator", True),
        ("rxlens.cli._serve", "rxlens.emulator", False),
        ("rxlens.operators._typed", "rxlens.events", False),
    ],
)
def test_the_layer_check_reports_an_upward_import(
    importer: str, target: str, reported: bool
) -> None:
    assert bool(layer_report([Import(importer, target, (), 1)])) is reported


@pytest.mark.parametrize(
    ("importer", "target", "names", "reported"),
    [
        ("rxlens.client", "rxlens.sse._decoder", (), True),
        ("rxlens.sse._connect", "rxlens.sse._decoder", (), False),
        ("rxlens.operators._heartbeat_timeout", "rxlens._timers", (), False),
        ("rxlens.client", "rxlens.sse", ("_DEFAULT_MAX_EVENT_BYTES",), True),
        ("rxlens.sse._connect", "rxlens.sse", ("_helper",), False),
    ],
)
def test_the_private_check_reports_a_reach_through(
    importer: str, target: str, names: tuple[str, ...], reported: bool
) -> None:
    assert bool(private_report([Import(importer, target, names, 1)])) is reported
