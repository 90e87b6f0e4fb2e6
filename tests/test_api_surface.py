"""What a new user of the Python API meets: a session status that says "not found", the
DataFrame's sensor time, the pandas hint, and one report per failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from rxlens import LensClient, collect, to_dataframe
from rxlens.emulator import LensEmulator
from rxlens.errors import ConfigurationError, LensAPIError, NotFound
from rxlens.operators import only_results

ROOT = Path(__file__).resolve().parent.parent


# --- client.sessions.status ----------------------------------------------------------------------


def test_status_of_an_unknown_session_is_not_found(lens_emulator: LensEmulator) -> None:
    client = LensClient(api_key=lens_emulator.api_key, base_url=lens_emulator.base_url)
    with client:
        with pytest.raises(NotFound) as caught:
            client.sessions.status("lsn-nope")
        assert "lsn-nope" in str(caught.value)
        assert "200" not in str(caught.value)
        sid = lens_emulator.create_session("manual")
        assert client.sessions.status(sid).endswith("RUNNING")


def test_status_keeps_other_api_errors(lens_emulator: LensEmulator) -> None:
    client = LensClient(api_key="wrong", base_url=lens_emulator.base_url)
    with client, pytest.raises(LensAPIError) as caught:
        client.sessions.status("lsn-nope")
    assert caught.value.status == 401


# --- one failure, one report ---------------------------------------------------------------------


@pytest.mark.parametrize("case", ["no-key", "unknown-session"])
def test_a_failure_is_reported_once_not_warned_first(
    lens_emulator: LensEmulator, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    monkeypatch.delenv("ATAI_API_KEY", raising=False)
    key = None if case == "no-key" else lens_emulator.api_key
    client = LensClient(api_key=key, base_url=lens_emulator.base_url)
    with client, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises((ConfigurationError, NotFound)):
            collect(client.events("lsn-nope"), n=1, timeout=10)
    assert [str(w.message) for w in caught] == []


# --- to_dataframe ---------------------------------------------------------------------------------


@pytest.mark.lens_emulator(replay="all")
def test_dataframe_has_the_query_timestamp_of_machine_state_rows(
    lens_emulator: LensEmulator,
) -> None:
    pytest.importorskip("pandas")
    sid = lens_emulator.create_session("machine-state", rate=0, seed=1)
    lens_emulator.step(sid, 3)
    lens_emulator.destroy(sid)
    client = LensClient(api_key=lens_emulator.api_key, base_url=lens_emulator.base_url)
    with client:
        results = collect(client.events(sid).pipe(only_results()), timeout=10)
    frame = to_dataframe(results)
    assert "query_timestamp" in frame.columns
    dtype = str(frame["query_timestamp"].dtype)
    assert dtype.startswith("datetime64[") and dtype.endswith(", UTC]")
    expected = [r.query_timestamp for r in results]
    assert all(isinstance(t, float) for t in expected)
    got = [t.timestamp() for t in frame["query_timestamp"]]
    assert got == pytest.approx(expected)
    # A row without one (a heartbeat, a plain value) has a missing value, not an error.
    mixed = to_dataframe([results[0], "plain"])
    assert mixed["query_timestamp"].isna().tolist() == [False, True]


# --- the pandas hint -----------------------------------------------------------------------------


class _Dist:
    def __init__(self, direct_url: dict[str, object] | None) -> None:
        self.direct_url = direct_url

    def read_text(self, name: str) -> str | None:
        if name != "direct_url.json" or self.direct_url is None:
            return None
        return json.dumps(self.direct_url)


def test_install_hint_follows_how_rxlens_was_installed(tmp_path: Path) -> None:
    from rxlens.sinks import install_hint

    clone = tmp_path / "rx lens"
    editable = _Dist({"url": clone.as_uri(), "dir_info": {"editable": True}})
    hint = install_hint("pandas", editable)
    assert "pip install -e '.[pandas]'" in hint and str(clone) in hint

    from_dir = _Dist({"url": clone.as_uri(), "dir_info": {}})
    assert "pip install '.[pandas]'" in install_hint("pandas", from_dir)
    assert str(clone) in install_hint("pandas", from_dir)

    assert install_hint("pandas", _Dist(None)) == "pip install 'rxlens[pandas]'"
    vcs = _Dist({"url": "https://example.org/rxlens.git", "vcs_info": {"vcs": "git"}})
    assert install_hint("pandas", vcs) == "pip install pandas"


def test_the_missing_pandas_error_gives_the_hint_of_this_install() -> None:
    from importlib.metadata import distribution

    text = distribution("rxlens").read_text("direct_url.json")
    editable = bool(text) and json.loads(text).get("dir_info", {}).get("editable", False)
    code = (
        "import sys; sys.modules['pandas'] = None\n"
        "from rxlens import to_dataframe\n"
        "try:\n    to_dataframe([])\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert out.startswith("MissingDependency")
    if editable:
        assert "pip install -e '.[pandas]'" in out
        assert "rxlens[pandas]" not in out
    else:
        assert "rxlens[pandas]" in out or "pip install" in out
