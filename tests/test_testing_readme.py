"""The README's "Testing your pipelines" sample runs as pasted: a user's test file, under pytest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def section_sample() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Testing your pipelines\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert blocks, "the section has no python sample"
    return str(blocks[0])


# A shared machine can be slow: no per-example deadline, and no example database to reuse.
CONFTEST = """
from hypothesis import settings

settings.register_profile("here", deadline=None, database=None)
settings.load_profile("here")
"""


def write_project(tmp_path: Path, sample: str, conftest: str = CONFTEST) -> None:
    (tmp_path / "test_my_pipeline.py").write_text(sample, encoding="utf-8")
    (tmp_path / "conftest.py").write_text(conftest, encoding="utf-8")


def test_the_readme_sample_is_a_passing_test_file(tmp_path: Path) -> None:
    sample = section_sample()
    write_project(tmp_path, sample)
    env = dict(os.environ)
    # The user's project sees this rxlens (the worktree or the installed one), nothing else.
    env["PYTHONPATH"] = str(README.parent) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b3 passed\b", done.stdout), done.stdout


def test_the_readme_sample_catches_a_broken_pipeline(tmp_path: Path) -> None:
    # The same file with the alert's threshold lowered: hypothesis must find a stream it fails.
    sample = section_sample().replace(
        "majority_vote(min_share=0.75)", "majority_vote(min_share=0.5)"
    )
    assert "min_share=0.5)" in sample
    # Finding is enough here: shrinking drawn sessions is the slow part, and not under test.
    no_shrink = CONFTEST.replace("database=None", "database=None, phases=[Phase.generate]").replace(
        "import settings", "import Phase, settings"
    )
    write_project(tmp_path, sample, no_shrink)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(README.parent) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(tmp_path),
            "-k",
            "one_alert_per_broken_episode",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Falsifying example" in done.stdout
