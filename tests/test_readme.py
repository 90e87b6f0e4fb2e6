"""Every code block of the README runs, so a sample cannot rot.

Each ``python`` block runs as it is written, in a fresh Python process (so a subscription a
sample leaves open ends with it), in a temporary directory, against an emulator started by
the test on 127.0.0.1. What a block needs from a real account is substituted, always the
same way:

- the environment has ``ATAI_API_KEY`` (the emulator's key) and ``ATAI_API_ENDPOINT`` (its
  base URL), so ``LensClient()`` with no arguments reaches the emulator;
- a string ``"lsn-..."`` becomes the id of a live Machine State session of that emulator,
  ``http://127.0.0.1:8765/api`` its base URL and ``"Bearer ..."`` ``"Bearer <its key>"``;
- a block that continues the text above it may use ``client`` (that ``LensClient()``),
  ``sid`` (that session), ``results`` (``client.events(sid).pipe(only_results())``) and
  ``lens_config`` (a lens configuration to register); nothing else is defined for it, so a
  missing import fails.

Every ``rxlens`` command in a ``bash`` block is parsed by the real argument parser, so an
option that does not exist (or a value it refuses) fails here.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import reactivex

from rxlens import LensClient, collect
from rxlens.cli import build_parser
from rxlens.emulator import LensEmulator
from rxlens.operators import majority_vote, only_results, window_results

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

#: The names a continuing block may use; built in the block's own process.
PRELUDE = """\
import os as _os
from rxlens import LensClient as _LensClient
from rxlens.operators import only_results as _only_results
client = _LensClient()
sid = _os.environ["RXLENS_README_SESSION"]
results = client.events(sid).pipe(_only_results())
lens_config = {"lens_name": "readme-lens", "emulator_lens": "machine-state"}
"""


@dataclass(frozen=True)
class Block:
    line: int
    lang: str
    code: str


def readme_blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    found = []
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(line, match.group(1), match.group(2)))
    return found


PYTHON = [b for b in readme_blocks() if b.lang == "python"]
SHELL = [b for b in readme_blocks() if b.lang in ("bash", "sh", "shell", "console")]


def test_the_readme_has_its_samples() -> None:
    # A change of fence or of extraction must not turn this file into a test of nothing.
    assert len(PYTHON) >= 10 and len(SHELL) >= 5
    assert all(b.lang in ("python", "bash", "text") for b in readme_blocks())


@dataclass(frozen=True)
class Server:
    emu: LensEmulator
    sid: str


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with LensEmulator(heartbeat_interval=0.5, replay="all", seed=1) as emu:
        sid = emu.create_session("machine-state", rate=20, seed=1)
        yield Server(emu, sid)


def substitute(code: str, server: Server) -> str:
    emu = server.emu
    code = code.replace('"lsn-..."', repr(server.sid))
    code = code.replace("lsn-...", server.sid)  # inside a URL
    code = code.replace("http://127.0.0.1:8765/api", emu.base_url)
    return code.replace('"Bearer ..."', repr(f"Bearer {emu.api_key}"))


@pytest.mark.parametrize("block", PYTHON, ids=[f"line-{b.line}" for b in PYTHON])
def test_python_block_runs(block: Block, server: Server, tmp_path: Path) -> None:
    ast.parse(block.code)  # a syntax error is reported as one, with the README line
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATAI_")}
    env.update(
        ATAI_API_KEY=server.emu.api_key,
        ATAI_API_ENDPOINT=server.emu.base_url,
        RXLENS_README_SESSION=server.sid,
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        MPLBACKEND="Agg",
    )
    source = PRELUDE + "\n" + substitute(block.code, server)
    run = subprocess.run(
        [sys.executable, "-c", source],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, (
        f"README.md line {block.line}: the sample failed\n{run.stdout[-2000:]}\n"
        f"{run.stderr[-4000:]}"
    )
    assert "Traceback" not in run.stderr, run.stderr[-4000:]


def rxlens_commands(block: Block) -> list[list[str]]:
    """The argument lists of every ``rxlens ...`` command in a shell block."""
    commands = []
    for raw in block.code.splitlines():
        words = shlex.split(raw, comments=True)
        current: list[str] = []
        for word in [*words, "&&"]:
            if word in ("&&", "&", "||", "|", ";"):
                if current and current[0] == "rxlens":
                    commands.append(current[1:])
                current = []
            else:
                current.append(word.rstrip("&;") if word.endswith(("&", ";")) else word)
    return commands


@pytest.mark.parametrize("block", SHELL, ids=[f"line-{b.line}" for b in SHELL])
def test_shell_block_rxlens_commands_parse(
    block: Block, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in rxlens_commands(block):
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:
            err = capsys.readouterr().err
            pytest.fail(f"README.md line {block.line}: rxlens {shlex.join(argv)}: {exc}\n{err}")
        assert args.command is not None, argv


def test_shell_parsing_finds_the_commands() -> None:
    text = "rxlens serve &   # note\npython -m pip install -e . && rxlens demo\n"
    sample = Block(1, "bash", text)
    assert rxlens_commands(sample) == [["serve"], ["demo"]]


# --- the headline vote prints labels on emulator data ------------------------------------------


def test_the_headline_majority_vote_gives_labels_on_emulator_data() -> None:
    """The README's "most common label of each window" line, on 10 s of each scripted lens.

    The README's vote (with its ``min_share=``) is applied to windows of what the emulator's
    lenses send in 10 s at ``rxlens serve``'s rate (5 results/s); most windows must get a
    label, not ``None``.
    """
    text = README.read_text(encoding="utf-8")
    line = next(li for li in text.splitlines() if "majority_vote(" in li and "subscribe" in li)
    call = re.search(r"majority_vote\(.*?\)", line)
    assert call is not None
    parsed = ast.parse(call.group(0), mode="eval").body
    assert isinstance(parsed, ast.Call) and not parsed.args
    options = {k.arg: ast.literal_eval(k.value) for k in parsed.keywords if k.arg}
    vote = majority_vote(**options)
    with LensEmulator(replay="all") as emu:
        client = LensClient(api_key=emu.api_key, base_url=emu.base_url)
        for lens in ("activity-monitor", "machine-state"):
            sid = emu.create_session(lens, rate=0, seed=1)
            emu.step(sid, 300)
            emu.destroy(sid)
            got = collect(client.events(sid).pipe(only_results()), timeout=30)
            votes = collect(reactivex.from_iterable(got).pipe(window_results(count=50), vote))
            labelled = [v for v in votes if v is not None]
            assert len(labelled) >= len(votes) - 1, (lens, votes)


def test_every_example_in_the_commands_help_parses() -> None:
    """The examples each command's ``--help`` prints are commands a user copies, too."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    checked = 0
    for name, command in subparsers.choices.items():  # type: ignore[union-attr]
        lines = [li.split("#")[0].strip() for li in (command.epilog or "").splitlines()]
        example = Block(0, "bash", "\n".join(li for li in lines if li.startswith("rxlens ")))
        for argv in rxlens_commands(example):
            try:
                build_parser().parse_args(argv)
            except SystemExit as exc:
                pytest.fail(f"rxlens {name} --help example: rxlens {shlex.join(argv)}: {exc}")
            checked += 1
    assert checked >= 10
