"""The benchmark harness runs end to end (``python -m benchmarks --quick``) and its figures are
sane. No assertion on speed: CI machines are noisy, and only ratios within one run mean
anything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=200,  # the mailbox measure added about 25 s
    )
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads((out / "latest.json").read_text())
    return data, (out / "latest.md").read_text()


@pytest.mark.slow
@pytest.mark.timeout(210)
def test_every_installed_contender_streams_every_event(run: tuple[dict[str, Any], str]) -> None:
    data, _ = run
    assert set(data["contenders"]) >= {
        "rxlens-typed",
        "rxlens-raw",
        "rxlens-raw-loads",
        "limit",
        "limit-scan",
    }
    for key, result in data["results"].items():
        throughput = result["throughput"]
        assert throughput["error"] is None, key
        assert throughput["events_per_s"] > 0, key
        assert throughput["runs"] and all(r and r > 0 for r in throughput["runs"]), key
    assert data["results"]["limit"]["throughput"]["ratio_to_limit"] == 1.0
    # The reference rows run the throughput measure only.
    for key in ("rxlens-raw-loads", "limit-scan"):
        assert set(data["results"][key]) == {"throughput"}, key


@pytest.mark.slow
@pytest.mark.timeout(210)
def test_rxlens_figures_are_sane(run: tuple[dict[str, Any], str]) -> None:
    data, _ = run
    for key in ("rxlens-typed", "rxlens-raw"):
        r = data["results"][key]
        # A measured ratio, not a speed goal: present, positive and finite (an upper bound
        # failed once when the limit's own run was starved by the machine's load).
        ratio = r["throughput"]["ratio_to_limit"]
        assert isinstance(ratio, float) and 0 < ratio < float("inf")
        latency = r["latency"]
        assert latency["error"] is None and latency["events"] == latency["expected"]
        assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
        assert r["large"]["error"] is None and r["large"]["2MiB_ms"] > 0
        assert r["large"]["8MiB_ms"] > 0
        assert r["first_event"]["error"] is None and r["first_event"]["ms"] > 0
        dispose = r["dispose"]
        assert dispose["error"] is None
        assert 0 <= dispose["close_returned_ms"] <= dispose["ms"]
        resume = r["resume"]
        assert resume["error"] is None
        assert resume["lost"] == 0 and resume["duplicated"] == 0
        assert resume["drops"] >= 1 and resume["with_cursor"] == resume["reconnects"]
        memory = r["memory"]
        assert memory["error"] is None and memory["events"] == memory["expected"]
        assert memory["base_mb"] > 0 and memory["growth_mb"] is not None


@pytest.mark.slow
@pytest.mark.timeout(210)
def test_fan_in_and_goals_are_reported(run: tuple[dict[str, Any], str]) -> None:
    data, markdown = run
    (row,) = data["fanin"]["rxlens-typed"]
    assert row["ready"] == row["sessions"] == 50
    assert row["delivered"] > 0 and row["sent"] > 0
    assert row["threads"] >= row["sessions"] and row["rss_mb"] > 0 and row["cpu_percent"] >= 0
    (aio,) = data["fanin"]["rxlens-asyncio"]
    assert aio["ready"] == aio["sessions"] == 100
    assert aio["delivered"] > 0 and aio["duplicates"] == 0 and aio["gaps"] == 0
    assert aio["threads"] < 10 and aio["nofile"] > 100
    assert len(data["goals"]) == 12
    references = [g for g in data["goals"] if g["target"] == "(reference)"]
    assert len(references) == 2 and all(g["met"] is None for g in references)
    assert all(g["measured"] is not None for g in data["goals"])
    assert data["machine"]["cores"] >= 1 and data["machine"]["date"]
    for label in data["contenders"].values():
        assert f"| {label} |" in markdown
    assert "Quick run" in markdown


@pytest.mark.slow
@pytest.mark.timeout(210)
def test_recording_load_is_measured_for_every_installed_loader(
    run: tuple[dict[str, Any], str],
) -> None:
    data, markdown = run
    loads = data["recording_load"]
    for loader, row in loads["loaders"].items():
        if row["error"] == "not installed":
            continue
        assert row["error"] is None, loader
        assert row["rows"] == loads["n"], loader
        assert row["events_per_s"] > 0 and row["peak_rss_mb"] > 0, loader
    assert loads["speedup_vs_typed"] > 0
    assert "### Recording load" in markdown


@pytest.mark.slow
@pytest.mark.timeout(210)
def test_mailbox_is_reported_beside_sse(run: tuple[dict[str, Any], str]) -> None:
    data, markdown = run
    mailbox = data["mailbox"]
    readers = mailbox["readers"]
    assert set(readers) == {"rxlens-sse", "rxlens-mailbox", "rxlens-mailbox-fast", "vendor-mailbox"}
    for key in ("rxlens-sse", "rxlens-mailbox", "rxlens-mailbox-fast"):
        throughput, latency = readers[key]["throughput"], readers[key]["latency"]
        assert throughput["error"] is None, (key, throughput)
        # Exactly once: every result delivered, none twice.
        assert throughput["events"] == throughput["expected"] == mailbox["n"]
        assert throughput["lost"] == 0 and throughput["duplicated"] == 0
        assert throughput["events_per_s"] > 0
        # Whose CPU the drain took: the reader's process and the emulator's.
        assert throughput["reader_cpu_us_per_event"] > 0
        assert throughput["server_cpu_us_per_event"] > 0
        assert latency["error"] is None, (key, latency)
        assert latency["events"] == latency["expected"] == mailbox["latency_n"]
        assert latency["lost"] == 0 and latency["duplicated"] == 0
        assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    vendor = readers["vendor-mailbox"]
    if vendor["throughput"].get("events_per_s") is None:
        # Not measurable within its bounds: then the table says so, with the reason.
        assert vendor["throughput"]["error"]
        assert "| n/a | n/a | n/a | n/a | n/a: " in markdown
    else:
        assert vendor["throughput"]["lost"] == 0 and vendor["throughput"]["duplicated"] == 0
    assert "### Mailbox beside SSE" in markdown
    for row in readers.values():
        assert f"| {row['label']} |" in markdown
    # Beside the SSE figures of the main table (rxlens typed from the lean server).
    assert "rxlens typed over SSE from the lean benchmark server" in markdown


def test_mailbox_markdown_reports_an_unmeasured_reader_as_n_a() -> None:
    from benchmarks.mailbox import markdown

    row = {
        "label": "vendor SDK, mailbox",
        "throughput": {"error": "killed after 90 s"},
        "latency": {"error": "killed after 90 s"},
    }
    text = markdown({"n": 10, "latency_n": 5, "rate": 100.0, "server": "x", "readers": {"v": row}})
    assert "| vendor SDK, mailbox | n/a | n/a | n/a | n/a | n/a: killed after 90 s |" in text


def test_recording_load_child_loads_every_event(tmp_path: Path) -> None:
    from benchmarks.recording_load import child, generate

    path = str(tmp_path / "r.jsonl")
    generate(path, 500)
    for loader in ("rxlens-columnar", "rxlens-typed"):
        row = child(loader, path)
        assert row["rows"] == 500 and row["events_per_s"] > 0


def test_decoder_benchmark_runs() -> None:
    from benchmarks.decoder import main

    assert main(["-n", "2000"]) == 0
