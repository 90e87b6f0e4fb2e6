"""What a new user meets at the terminal: the real ``rxlens`` console script in a subprocess.

Each test runs the installed ``rxlens`` entry point with ``PYTHONPATH`` pointing at this
checkout, against an emulator on 127.0.0.1 (port 0), and reads what a person would read:
stdout, stderr and the exit code.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rxlens.cli import EXIT_AUTH, EXIT_ERROR, EXIT_NOT_FOUND, EXIT_USAGE, build_parser
from rxlens.emulator import LensEmulator

ROOT = Path(__file__).resolve().parent.parent


def rxlens_command() -> list[str]:
    """The console script when it is on PATH, else the same entry point through Python."""
    script = shutil.which("rxlens")
    if script is not None:
        return [script]
    return [sys.executable, "-c", "import sys; from rxlens.cli import main; sys.exit(main())"]


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATAI_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def rxlens(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*rxlens_command(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(**env),
        check=False,
    )


def conn(emu: LensEmulator) -> list[str]:
    return ["--base-url", emu.base_url, "--api-key", emu.api_key]


@pytest.fixture
def emu() -> Iterator[LensEmulator]:
    with LensEmulator(heartbeat_interval=0.3, replay="all", seed=1) as emulator:
        yield emulator


def ended_session(emu: LensEmulator, n: int) -> str:
    """A session whose log holds ``n`` results, destroyed so that its stream ends."""
    sid = emu.create_session("machine-state", rate=0, seed=3)
    emu.step(sid, n)
    emu.destroy(sid)
    return sid


def result_ids(path: Path) -> list[str]:
    ids = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record.get("type") == "inference.result":
            ids.append(record["id"])
    return ids


# --- 1. record does not overwrite a recording by accident ----------------------------------------


def test_record_refuses_to_overwrite_an_existing_recording(
    emu: LensEmulator, tmp_path: Path
) -> None:
    path = tmp_path / "run.jsonl"
    first = rxlens("record", ended_session(emu, 15), "-o", str(path), *conn(emu))
    assert first.returncode == 0, first.stderr
    before = path.read_bytes()
    assert len(result_ids(path)) == 15

    again = rxlens("record", ended_session(emu, 5), "-o", str(path), *conn(emu))
    assert again.returncode == EXIT_ERROR
    assert path.read_bytes() == before  # the first recording is intact
    (line,) = again.stderr.strip().splitlines()
    assert str(path) in line and "--append" in line and "--force" in line


def test_record_force_overwrites_and_append_continues(emu: LensEmulator, tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    assert rxlens("record", ended_session(emu, 15), "-o", str(path), *conn(emu)).returncode == 0
    forced = rxlens("record", ended_session(emu, 5), "-o", str(path), "--force", *conn(emu))
    assert forced.returncode == 0, forced.stderr
    assert result_ids(path) == ["1", "2", "3", "4", "5"]

    both = rxlens("record", "lsn-x", "-o", str(path), "--force", "--append", *conn(emu))
    assert both.returncode == EXIT_USAGE
    assert "not allowed with" in both.stderr
    help_text = rxlens("record", "--help").stdout
    assert "--force" in help_text and "--append" in help_text


# --- 2. ports are checked by the parser --------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--port", "80000"],
        ["serve", "--port", "-5"],
        ["serve", "--port", "http"],
        ["replay", "missing.jsonl", "--port", "70000"],
    ],
    ids=["serve-80000", "serve-negative", "serve-word", "replay-70000"],
)
def test_a_port_out_of_range_is_a_usage_error(args: list[str]) -> None:
    run = rxlens(*args)
    assert run.returncode == EXIT_USAGE
    assert "Traceback" not in run.stderr
    (line,) = run.stderr.strip().splitlines()  # one line, no usage block
    assert line.startswith(f"rxlens {args[0]}: error: argument --port")
    assert "0 to 65535" in line and f"'rxlens {args[0]} --help'" in line


# --- 3. a retrying tail says why, in words -----------------------------------------------------


def test_tail_follow_retry_lines_say_connection_refused(emu: LensEmulator) -> None:
    # A server of our own, so that stopping it does not touch the shared fixture.
    server = LensEmulator(heartbeat_interval=0.3)
    server.start()
    sid = server.create_session("machine-state", rate=5, seed=1)
    process = subprocess.Popen(
        [*rxlens_command(), "tail", sid, "--follow", *conn(server)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        assert "sse.stream.start" in process.stdout.readline()
        server.close()
        retries: list[str] = []
        deadline = time.monotonic() + 60
        while len(retries) < 3 and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            if "reconnecting" in line:
                retries.append(line)
    finally:
        process.kill()
        process.communicate()
    assert len(retries) == 3, retries
    # The first drop may be the broken stream itself; the reconnects after it are refused.
    for line in retries[1:]:
        assert "connection refused" in line, line
    for line in retries:
        assert "NewConnectionError" not in line and "_Tracked" not in line and "…" not in line


# --- 4. a missing key: the command-line hint and its own exit code ------------------------------


def test_a_missing_key_names_the_option_and_the_variable_once(emu: LensEmulator) -> None:
    sid = ended_session(emu, 3)
    for command in (["tail", sid], ["record", sid, "-o", os.devnull + ".x"]):
        run = rxlens(*command, "--base-url", emu.base_url)
        assert run.returncode == EXIT_AUTH, run.stderr
        (line,) = run.stderr.strip().splitlines()  # one failure, one line
        assert "--api-key" in line and "ATAI_API_KEY" in line
        assert "api_key=" not in line and "LensClient" not in line


def test_help_lists_every_exit_code_once() -> None:
    run = rxlens("--help")
    assert run.returncode == 0
    codes = {}
    section = run.stdout.split("exit codes:", 1)[1]
    for line in section.splitlines():
        parts = line.split(None, 1)
        if parts and parts[0].isdigit():
            assert parts[0] not in codes, f"exit code {parts[0]} listed twice"
            codes[parts[0]] = parts[1]
    assert set(codes) == {"0", "1", "2", "3", "4", "5", "130"}
    assert "API key" in codes["3"] and "missing" in codes["3"]
    assert "key" not in codes["1"]
    for name in ("tail", "record", "replay", "serve", "demo"):
        assert "rxlens --help" in rxlens(name, "--help").stdout, name


def test_the_readme_exit_code_table_matches_the_cli() -> None:
    readme = (ROOT / "README.md").read_text()
    after = readme.split("\nExit codes", 1)[1].splitlines()
    start = next(i for i, line in enumerate(after) if line.startswith("|"))
    table = itertools.takewhile(lambda line: line.startswith("|"), after[start:])
    rows = [line.split("|")[1:3] for line in table]
    codes = {code.strip(): meaning.strip() for code, meaning in rows if code.strip().isdigit()}
    assert set(codes) == {"0", "1", "2", "3", "4", "5", "130"}
    assert "missing" in codes["3"]
    assert "key" not in codes["1"]
    assert int("3") == EXIT_AUTH and int("4") == EXIT_NOT_FOUND
    assert build_parser().epilog is not None and "130" in build_parser().epilog


# --- 5. one report per failure; -n says where it stopped --------------------------------------


def test_an_unknown_session_is_reported_once(emu: LensEmulator) -> None:
    run = rxlens("tail", "lsn-nope", *conn(emu))
    assert run.returncode == EXIT_NOT_FOUND
    (line,) = run.stderr.strip().splitlines()
    assert "lsn-nope" in line and "warning" not in line


def test_count_says_it_stopped_at_n(emu: LensEmulator, tmp_path: Path) -> None:
    sid = ended_session(emu, 10)
    tail = rxlens("tail", sid, "--results-only", "-n", "3", *conn(emu))
    assert tail.returncode == 0, tail.stderr
    assert "stream ended" not in tail.stderr
    assert "stopped after 3 events (-n 3)" in tail.stderr

    record = rxlens("record", sid, "-o", str(tmp_path / "r.jsonl"), "-n", "4", *conn(emu))
    assert record.returncode == 0, record.stderr
    assert "stream ended" not in record.stderr
    assert "stopped after 4 frames (-n 4;" in record.stderr


def test_a_stream_that_ends_before_n_says_it_ended(emu: LensEmulator) -> None:
    sid = ended_session(emu, 2)
    tail = rxlens("tail", sid, "--results-only", "-n", "5", *conn(emu))
    assert tail.returncode == 0, tail.stderr
    assert "stream ended: 2 events" in tail.stderr


# --- 3, each cause: the errors the transport really raises, put in words ------------------------


def _failure_of(url: str, timeout: tuple[float, float] = (5.0, 5.0)) -> BaseException:
    """The error one real connection attempt to ``url`` ends with."""
    import rxlens.sse
    from rxlens import collect

    with pytest.raises(Exception) as caught:
        collect(rxlens.sse.connect(url, timeout=timeout), n=1, timeout=30)
    return caught.value


def test_the_cause_in_words_for_refused_tls_and_timeout(emu: LensEmulator) -> None:
    import socket

    from rxlens.cli._common import describe_failure

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert describe_failure(_failure_of(f"http://127.0.0.1:{port}/x")) == "connection refused"

    # TLS spoken to a plain HTTP server: the handshake fails.
    tls = _failure_of(emu.consumer_url("lsn-x").replace("http://", "https://"))
    assert describe_failure(tls) == "TLS error", tls

    with socket.socket() as silent:  # accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/x"
        assert describe_failure(_failure_of(url, timeout=(5.0, 0.3))) == "timed out"


def test_the_cause_in_words_for_a_dns_failure() -> None:
    # The transport keeps urllib3's innermost reason, as it would for a name that does not
    # resolve; built here because a sandbox may have no resolver at all.
    import urllib3

    from rxlens.cli._common import describe_failure
    from rxlens.errors import TransportError
    from rxlens.sse._transport import _reason

    failure = urllib3.exceptions.NameResolutionError(
        "lens.example", None, socket_error("[Errno -2] Name or service not known")  # type: ignore[arg-type]
    )
    error = TransportError(f"cannot connect to https://lens.example/api/x: {_reason(failure)}")
    assert describe_failure(error) == "DNS failure (the host name did not resolve)"
    # A word inside the URL is not a cause.
    plain = TransportError("connection to https://ssl-timeout.example/api broke: IncompleteRead")
    assert describe_failure(plain) == "the server closed the connection"


def socket_error(text: str) -> OSError:
    import socket

    return socket.gaierror(-2, text)


def test_the_give_up_line_starts_with_the_cause_in_words() -> None:
    import socket

    from rxlens.cli import error_line
    from rxlens.errors import RetriesExhausted

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    refused = _failure_of(f"http://127.0.0.1:{port}/x")
    line = error_line("tail", RetriesExhausted(7, 120.4, refused))
    assert line.startswith("rxlens tail: error: gave up after 7 attempt(s) in 120 s: "
                           "connection refused (last error: ")
    assert "\n" not in line
