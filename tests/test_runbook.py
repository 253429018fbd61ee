"""The README's runbook, run as written: the nightly job, the month-end close, a price
change and a manual adjustment, on books made from the sample's October and November with
October closed (as an operator's books would be at the start of December)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "sample_books" / "events"


def runbook_block() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("## Runbook")
    return re.search(r"```sh\n(.*?)```\n", readme[start:], re.S).group(1)


def cli(*args) -> str:
    engine = Path(sys.executable).parent / "ledger-engine"
    result = subprocess.run([str(engine), *map(str, args)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_readme_runbook_runs_as_written(tmp_path):
    books = tmp_path / "books"
    cli("init", books, "--timezone", "Europe/Berlin")
    cli("post", books, EVENTS / "2026-10-night.jsonl", "--through", "2026-10-31")
    cli("post", books, EVENTS / "2026-11-night.jsonl", "--through", "2026-11-30")
    cli("close", books, "2026-10")
    bin_dir = str(Path(sys.executable).parent)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", runbook_block()],
        cwd=ROOT,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "B": str(books)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Books reconcile." in out
    assert "close would close it; the seal it would print:" in out
    assert re.search(r"Closed 2026-11: \d+ files sealed", out)
    assert "adj-2026-12-001" in out
    # The price change is in force from 2027-01-01, a day not yet posted: recorded, and
    # nothing of 2026 repriced; the adjustment posted with its reason.
    runs = json.loads(cli("runs", books, "--json"))
    assert runs[-1]["command"] == "post" and runs[-2]["rules_sha256"] != runs[0]["rules_sha256"]
    acme = (books / "customers/C-acme-2Dgmbh/2026-12.beancount").read_text()
    assert 'reason: "goodwill credit for the outage of 2026-12-14"' in acme
    assert '"2026.1"' in acme and '"2027.1"' not in acme
    assert not (books / "recovered").exists()
    assert cli("reconcile", books).endswith("Books reconcile.\n")
