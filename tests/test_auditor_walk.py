"""The README's auditor walk, run literally on the committed sample books."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def walk_block() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("**From a GL line to the raw events**")
    return re.search(r"```sh\n(.*?)```", readme[start:], re.S).group(1)


def test_the_readme_walk_runs_as_written_and_every_step_answers():
    block = walk_block()
    steps = [line for line in block.splitlines() if line and not line.startswith(("#", " "))]
    assert len(steps) >= 5
    bin_dir = str(Path(sys.executable).parent)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.replace("\\\n", " ")],
        cwd=ROOT,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "GL summary gl.2026-10-27.usage.r1" in out
    assert "conversation ec-003: suggested_reply, included, 0.20 (as run 1 classified it)" in out
    assert "conversation ec-003: autopilot, charged, 0.20 (as run 4 classified it)" in out
    assert "sample_books/events/2026-12-late.jsonl:1, read in run 4" in out
    assert "Income:AI:Allowance:Included         0.20 EUR" in out
    assert "Books reconcile." in out
    assert (
        "  lot auto-top-up-2026-11-17 of customer acme-gmbh: auto_top_up, 25.00 credited "
        "2026-11-17, valid through 2026-12-31, 24.40 left"
    ) in out
    assert "    origin: the charges of 2026-11-17 that needed it" in out
    assert "Run 3: close 2026-10, " in out
    assert "  input: sample_books/events/2026-10-night.jsonl  sha256 f9eb88194ec1" in out
