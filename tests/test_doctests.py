"""The examples in the package's docstrings run, so a documented default or result cannot drift
from the code (``RetryPolicy()``'s repr pins its defaults, for one)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import rxlens


def module_names() -> list[str]:
    prefix = rxlens.__name__ + "."
    members = sorted(info.name for info in pkgutil.walk_packages(rxlens.__path__, prefix))
    return [rxlens.__name__, *members]


def test_the_docstrings_have_examples() -> None:
    # Guards the test below against finding nothing to run.
    finder = doctest.DocTestFinder()
    examples = sum(
        len(test.examples)
        for name in module_names()
        for test in finder.find(importlib.import_module(name))
    )
    assert examples >= 10


@pytest.mark.parametrize("name", module_names())
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
