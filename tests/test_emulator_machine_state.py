"""The emulator's Machine State lens goes through regimes: stretches of one label, seeded."""

from __future__ import annotations

import random
from itertools import groupby
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxlens.emulator import LensEmulator
from rxlens.emulator._lenses import LENSES, generate

SPEC = LENSES["machine-state"]


def labels(seed: int, n: int, **options: Any) -> list[str]:
    rng = random.Random(seed)
    options.setdefault("unknown_rate", 0.0)
    return [generate(SPEC, rng, i, options)["event_data"]["response"][0] for i in range(n)]


def runs(sequence: list[str]) -> list[tuple[str, int]]:
    return [(label, len(list(group))) for label, group in groupby(sequence)]


def test_broken_comes_in_stretches_of_several_results() -> None:
    seq = labels(seed=3, n=2000)
    stretches = runs(seq)
    broken = [length for label, length in stretches if label == "BROKEN"]
    assert broken, "the machine never broke"
    assert max(broken) >= 8
    # Mean stretch length near the default of 8 results (independent draws give about 2).
    mean = sum(length for _, length in stretches) / len(stretches)
    assert 5.0 <= mean <= 12.0


def test_mean_stretch_per_class() -> None:
    seq = labels(seed=5, n=4000, mean_stretch={"HEALTHY": 40, "BROKEN": 4})
    healthy = [n for label, n in runs(seq) if label == "HEALTHY"]
    broken = [n for label, n in runs(seq) if label == "BROKEN"]
    assert sum(healthy) / len(healthy) > 3 * (sum(broken) / len(broken))
    assert seq[0] == "HEALTHY"  # the first regime is the first class unless `initial` says


def test_mean_stretch_zero_draws_independently() -> None:
    seq = labels(seed=3, n=2000, mean_stretch=0)
    stretches = runs(seq)
    assert sum(n for _, n in stretches) / len(stretches) < 3.0


@given(seed=st.integers(0, 2**32), n=st.integers(1, 60))
@settings(max_examples=40, deadline=None)
def test_same_seed_same_events(seed: int, n: int) -> None:
    first = [generate(SPEC, r, i, {}) for r in [random.Random(seed)] for i in range(n)]
    second = [generate(SPEC, r, i, {}) for r in [random.Random(seed)] for i in range(n)]
    assert first == second


def test_error_draws_do_not_reset_the_regime() -> None:
    seq: list[str] = []
    rng = random.Random(11)
    for i in range(2000):
        payload = generate(SPEC, rng, i, {"error_rate": 0.3, "unknown_rate": 0.0})
        if payload["type"] == "inference.result":
            seq.append(payload["event_data"]["response"][0])
    assert "BROKEN" in seq
    stretches = runs(seq)
    assert sum(n for _, n in stretches) / len(stretches) >= 4.0


@pytest.mark.timeout(60)
def test_emulator_sessions_with_the_same_seed_show_the_same_broken_stretches(
    lens_emulator: LensEmulator,
) -> None:
    a = lens_emulator.create_session("machine-state", rate=0, seed=9, count=200)
    b = lens_emulator.create_session("machine-state", rate=0, seed=9, count=200)
    lens_emulator.step(a, 200)
    lens_emulator.step(b, 200)
    la = [data for _, data in lens_emulator.events(a)]
    lb = [data for _, data in lens_emulator.events(b)]
    assert la == lb
    assert any(d["event_data"]["response"][0] == "BROKEN" for d in la)
