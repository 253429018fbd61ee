"""Both cores for one night: the run's worker process reads and dedupes the inputs and
derives its share of the customers, and a large run keeps its new events in memory instead
of reading them back.  Either way the books (every journal byte, every stored row) are
those of the reference path: one process, every event read back from the store.

Also: the worker survives being stopped and continued, a worker that dies is one clear
error with the books untouched, and a killed run takes its worker with it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from builders import init_books, journal_bytes, read_store, sub, use
from hypothesis import HealthCheck, given, settings
from test_incremental import START, arrival, derived_rows, seasons

from ledger_engine import ingest, worker
from ledger_engine.close import close_month
from ledger_engine.core import dates
from ledger_engine.post import post
from ledger_engine.reading import READER_VARIABLE
from ledger_engine.reconcile import reconcile

MODES = ("reference", "memory", "worker")


@contextlib.contextmanager
def mode(name: str):
    """Posts in this block take the named path: ``reference`` (in this process, events
    read back from the store), ``memory`` (in this process, new events kept in memory) or
    ``worker`` (a worker process for every file)."""
    saved = os.environ.get(READER_VARIABLE), ingest.MEMORY_MIN_BYTES
    os.environ[READER_VARIABLE] = "process" if name == "worker" else "inline"
    ingest.MEMORY_MIN_BYTES = 0 if name == "memory" else 1 << 40
    try:
        yield
    finally:
        if saved[0] is None:
            os.environ.pop(READER_VARIABLE)
        else:
            os.environ[READER_VARIABLE] = saved[0]
        ingest.MEMORY_MIN_BYTES = saved[1]


class Triplets:
    """The same nights posted to three books, one per path."""

    def __init__(self, scratch: Path):
        self.scratch = scratch
        self.books = {name: init_books(scratch / name) for name in MODES}
        self.nights = 0

    def night(self, events: list[dict], through: datetime.date) -> None:
        self.nights += 1
        path = self.scratch / f"night-{self.nights}.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
        results = {}
        for name, books in self.books.items():
            with mode(name):
                results[name] = post(books, [str(path)], through).as_json()
        assert results["memory"] == results["reference"] == results["worker"]

    def close(self, month: str) -> None:
        seals = {close_month(books, month).seal_sha256 for books in self.books.values()}
        assert len(seals) == 1

    def assert_same(self) -> None:
        reference = self.books["reference"]
        for name in ("memory", "worker"):
            assert journal_bytes(self.books[name]) == journal_bytes(reference), name
            assert derived_rows(self.books[name]) == derived_rows(reference), name
            assert stored_events(self.books[name]) == stored_events(reference), name


def stored_events(books: Path) -> list:
    with read_store(books) as db:
        return db.execute("SELECT * FROM events ORDER BY id").fetchall()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(season=seasons())
def test_the_worker_and_the_memory_give_the_books_of_the_reference_path(tmp_path_factory, season):
    """Random nights (late events, continued conversations, plan changes, trials, money,
    a month close) posted three ways."""
    events, throughs, delays, closes, _ = season
    triplets = Triplets(tmp_path_factory.mktemp("triplets"))
    nights = [arrival(e, d, throughs) for e, d in zip(events, delays, strict=True)]
    closed: set[str] = set()
    for index, offset in enumerate(throughs):
        through = START + datetime.timedelta(days=offset)
        triplets.night([e for e, n in zip(events, nights, strict=True) if n == index], through)
        month = dates.month_of(START)
        if closes and through >= datetime.date(2026, 12, 1) and month not in closed:
            triplets.close(month)
            closed.add(month)
        triplets.assert_same()


def test_many_customers_split_between_the_processes(tmp_path):
    """Enough customers that both processes derive some, with repeats inside the file and
    across nights (a duplicate, an id conflict), late events and a kind that changes."""
    triplets = Triplets(tmp_path)
    customers = [f"c{i:03d}" for i in range(60)]
    assert {worker.in_worker_share(c) for c in customers} == {True, False}
    first = [sub(c, "2026-11-01T00:00:00Z", "pro" if i % 3 else "essentials")
             for i, c in enumerate(customers)]  # fmt: skip
    first += [use(c, f"2026-11-02T{i % 24:02d}:00:00Z", f"v{i % 7}", id=f"{c}-{i}")
              for c in customers for i in range(30)]  # fmt: skip
    first += [first[70], {**first[71], "feature": "autopilot"}]
    triplets.night(first, datetime.date(2026, 11, 2))
    second = [use(c, "2026-11-03T10:00:00Z", "v1", "autopilot", id=f"{c}-ap") for c in customers]
    second += [use(c, "2026-11-02T23:00:00Z", "late", id=f"{c}-late") for c in customers[::5]]
    second += [first[80]]
    triplets.night(second, datetime.date(2026, 11, 3))
    triplets.assert_same()
    # A night as large as all before it: its events load without the index by customer.
    third = [use(c, f"2026-11-04T{i % 24:02d}:30:00Z", f"w{i % 5}", id=f"{c}-n3-{i}")
             for c in customers for i in range(32)]  # fmt: skip
    third += [second[3], {**first[90], "feature": "autopilot"}]
    triplets.night(third, datetime.date(2026, 11, 4))
    triplets.assert_same()
    assert reconcile(triplets.books["worker"]).ok


def night_file(tmp_path: Path, customers: int = 400, per_customer: int = 40) -> Path:
    lines = [json.dumps(sub(f"k{c}", "2026-11-01T00:00:00Z", "boost")) for c in range(customers)]
    lines += [json.dumps(use(f"k{c}", f"2026-11-02T{i % 24:02d}:{i % 60:02d}:00Z", f"v{i % 9}",
                             id=f"k{c}-{i}"))
              for i in range(per_customer) for c in range(customers)]  # fmt: skip
    path = tmp_path / "night.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def post_process(books: Path, path: Path, **env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ledger_engine", "post", str(books), str(path),
         "--through", "2026-11-02", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, READER_VARIABLE: "process", **env},
    )  # fmt: skip


def worker_of(process: subprocess.Popen, timeout: float = 30) -> int:
    """The pid of the worker process of a running post."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True,
                               text=True).stdout.split()  # fmt: skip
        if found:
            return int(found[0])
        time.sleep(0.01)
    raise AssertionError("no worker process")


def test_a_stopped_and_continued_worker_changes_nothing(tmp_path):
    path = night_file(tmp_path)
    quiet = init_books(tmp_path / "quiet")
    assert post_process(quiet, path).wait(timeout=300) == 0
    books = init_books(tmp_path / "stopped")
    process = post_process(books, path)
    helper = worker_of(process)
    with contextlib.suppress(ProcessLookupError):
        while process.poll() is None:
            os.kill(helper, signal.SIGSTOP)
            time.sleep(0.02)
            os.kill(helper, signal.SIGCONT)
            time.sleep(0.02)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert journal_bytes(books) == journal_bytes(quiet)
    assert derived_rows(books) == derived_rows(quiet)


def test_a_worker_that_dies_is_one_clear_error_and_the_next_run_completes(tmp_path):
    path = night_file(tmp_path)
    books = init_books(tmp_path / "books")
    before = journal_bytes(books)
    process = post_process(books, path)
    os.kill(worker_of(process), signal.SIGKILL)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1
    assert err.startswith("Error: the run's worker process stopped") and "Traceback" not in err
    assert journal_bytes(books) == before
    reference = init_books(tmp_path / "reference")
    with mode("reference"):
        expected = post(reference, [str(path)], datetime.date(2026, 11, 2))
    again = post_process(books, path)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert json.loads(out) == {**expected.as_json(), "run": json.loads(out)["run"]}
    assert journal_bytes(books) == journal_bytes(reference)


def test_a_killed_run_takes_its_worker_with_it(tmp_path):
    books = init_books(tmp_path / "books")
    process = post_process(books, night_file(tmp_path))
    helper = worker_of(process)
    process.kill()
    process.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(helper, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(helper, os.WNOHANG)
        time.sleep(0.05)
    pytest.fail("the worker outlived its run")
