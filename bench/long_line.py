"""Peak memory of ``post`` given one very long line among good lines (SPEC v3 §6: memory stays
bounded whatever the input; a line longer than the line limit is quarantined without being
held whole).

Usage (from the repository root, with the project's virtualenv)::

    python bench/long_line.py                  # a 100 MB line among 20,000 good lines
    python bench/long_line.py --megabytes 200 --engine /path/to/other/ledger-engine

Writes ``OUT/long-line.jsonl`` (``--out``, default ``bench/out``): 10,000 good lines, one line
of ``--megabytes`` MB (letters from a fixed seed, which compress about as badly as real
garbage), 10,000 good lines.  Then, each on fresh books, posts it three ways and prints one
table of the wall time and the peak RSS (``/usr/bin/time -v``, "Maximum resident set size":
of the run and of its largest child, the worker when there is one): from the file, from a
pipe (``cat FILE | ledger-engine post BOOKS -``), and from the file with the worker forced
(``LEDGER_ENGINE_READER=process``).  Target: under 200 MB.  Each run must exit 0 with the long
line quarantined (``malformed_json``) and the good lines accepted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import string
import subprocess
import sys
import time
from pathlib import Path

TARGET_BYTES = 200 * 1000 * 1000
GOOD_LINES = 10_000  # before the long line, and as many after it
TIME = "/usr/bin/time"


def good_line(number: int) -> str:
    if number == 0:
        return json.dumps({"id": "s", "type": "subscription", "customer": "acme",
                           "at": "2026-11-01T00:00:00Z", "plan": "pro",
                           "interval": "monthly"})  # fmt: skip
    return json.dumps({"id": f"u{number}", "type": "ai_usage", "customer": "acme",
                       "at": "2026-11-02T10:00:00Z", "feature": "suggested_reply",
                       "conversation": f"c{number % 500}"})  # fmt: skip


def write_input(path: Path, megabytes: int) -> None:
    rng = random.Random(20261204)
    letters = string.ascii_letters.encode()
    with path.open("wb") as out:
        out.writelines((good_line(n) + "\n").encode() for n in range(GOOD_LINES))
        out.write(b'{"id": "huge", "pad": "')
        for _ in range(megabytes):
            out.write(bytes(rng.choices(letters, k=1000 * 1000)))
        out.write(b'"}\n')
        out.writelines((good_line(n) + "\n").encode() for n in range(GOOD_LINES, 2 * GOOD_LINES))


def peak_rss(report: str) -> int:
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", report)
    return int(found.group(1)) * 1024 if found else 0


def post(engine: str, books: Path, path: Path, route: str) -> tuple[float, int, dict]:
    subprocess.run([engine, "init", str(books)], check=True, capture_output=True)
    env = dict(os.environ)
    source = str(path)
    stdin = None
    if route == "pipe":
        source, stdin = "-", subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE).stdout
    elif route == "worker":
        env["LEDGER_ENGINE_READER"] = "process"
    command = [TIME, "-v", engine, "post", str(books), source, "--through", "2026-11-02",
               "--json"]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, stdin=stdin, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{route}: post exited {done.returncode}: {done.stderr[-2000:]}")
    return seconds, peak_rss(done.stderr), json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    parser.add_argument("--engine", default=str(Path(sys.executable).with_name("ledger-engine")))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "long-line.jsonl"
    write_input(path, args.megabytes)
    print(f"input: {path.stat().st_size:,} bytes, one line of {args.megabytes} MB; "
          f"engine {args.engine}")  # fmt: skip
    print(f"{'route':<8} {'wall':>8} {'peak RSS':>10}  {'result':<6} counts")
    failed = False
    for route in ("file", "pipe", "worker"):
        books = args.out / f"long-line-books-{route}"
        shutil.rmtree(books, ignore_errors=True)
        seconds, rss, counts = post(args.engine, books, path, route)
        ok = counts["rejected"] == {"malformed_json": 1} and counts["accepted"] == 2 * GOOD_LINES
        verdict = "PASS" if ok and rss < TARGET_BYTES else "MISS"
        failed |= verdict != "PASS"
        print(f"{route:<8} {seconds:>7.2f}s {rss / 2**20:>7.0f} MiB  {verdict:<6} "
              f"read {counts['read']}, accepted {counts['accepted']}, "
              f"rejected {counts['rejected']}")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
