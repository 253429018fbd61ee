"""Crash safety and one writer at a time (SPEC §6, §7): a fault at every write point of a
real run, kill -9 of a real process, disk full, two runs at once."""

from __future__ import annotations

import ctypes
import datetime
import errno
import json
import os
import subprocess
import sys
import time

import pytest
from builders import init_books, journal_bytes, sub, use

from ledger_engine.books import files as books_module
from ledger_engine.close import close_month
from ledger_engine.core.errors import BooksLocked, BooksWriteError
from ledger_engine.post import post
from ledger_engine.reconcile import reconcile

THROUGH = datetime.date(2026, 11, 30)


class Fault(Exception):
    pass


def night(path):
    events = [sub(c, "2026-11-01T08:00:00Z", "boost", commitment="1.00") for c in "abc"]
    events += [
        use(
            c,
            f"2026-11-0{2 + i % 3}T10:0{i}:00Z",
            f"k{i % 4}",
            "autopilot" if i % 3 == 0 else "suggested_reply",
            id=f"{c}{i}",
        )
        for c in "abc"
        for i in range(8)
    ]
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    return path


def late(path):
    path.write_text(json.dumps(use("a", "2026-11-05T10:00:00Z", "k1", "autopilot")) + "\n")
    return path


@pytest.fixture
def reference(tmp_path):
    """Books after an uninterrupted night and a late run, and the inputs."""
    inputs = (night(tmp_path / "night.jsonl"), late(tmp_path / "late.jsonl"))
    books = init_books(tmp_path / "reference")
    post(books, [str(inputs[0])], THROUGH)
    post(books, [str(inputs[1])], THROUGH)
    return inputs, journal_bytes(books)


def count_write_points(books, paths) -> list[str]:
    seen = []
    books_module.WRITE_POINT_HOOK = seen.append
    try:
        post(books, [str(p) for p in paths], THROUGH)
    finally:
        books_module.WRITE_POINT_HOOK = None
    return seen


def fail_at(index: int, error: BaseException):
    counter = iter(range(10**6))

    def hook(label):
        if next(counter) == index:
            raise error

    return hook


def test_a_fault_at_every_write_point_leaves_nothing_half_done(tmp_path, reference):
    (night_file, late_file), expected = reference
    points_first = count_write_points(init_books(tmp_path / "count"), [night_file])
    assert len(points_first) >= 10  # appends, the sync, the commit, after the commit
    for run, paths in ((0, [night_file]), (1, [late_file])):
        count_books = init_books(tmp_path / f"count{run}")
        if run:
            post(count_books, [str(night_file)], THROUGH)
        points = count_write_points(count_books, paths)
        for index, label in enumerate(points):
            books = init_books(tmp_path / f"books-{run}-{index}")
            if run:
                post(books, [str(night_file)], THROUGH)
            before = journal_bytes(books)
            books_module.WRITE_POINT_HOOK = fail_at(index, Fault(label))
            try:
                with pytest.raises(Fault):
                    post(books, [str(p) for p in paths], THROUGH)
            finally:
                books_module.WRITE_POINT_HOOK = None
            if label != "after commit":
                assert journal_bytes(books) == before, f"half-written at {label}"
                # The next run completes the work.  (After the commit there is nothing left
                # to do, and a no-op run would only shift later run numbers in GL links.)
                post(books, [str(p) for p in paths], THROUGH)
            if not run:
                post(books, [str(late_file)], THROUGH)
            assert journal_bytes(books) == expected, f"differs after a fault at {label}"
            assert reconcile(books).ok


def test_disk_full_ends_the_run_with_an_error_and_no_partial_state(tmp_path, monkeypatch):
    books = init_books(tmp_path / "books")
    before = journal_bytes(books)
    real_write = os.write
    calls = iter(range(10**6))

    def full_disk(descriptor, data):
        if next(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(descriptor, data)

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(BooksWriteError, match="No space left"):
        post(books, [str(night(tmp_path / "n.jsonl"))], THROUGH)
    monkeypatch.setattr(os, "write", real_write)
    assert journal_bytes(books) == before
    assert not list((books / "customers").glob("*"))
    assert reconcile(books).ok


def test_disk_full_through_the_cli_is_one_error_line(tmp_path):
    books = init_books(tmp_path / "books")
    code = (
        "import errno, os, sys\n"
        "from ledger_engine.books import files\n"
        "def hook(label):\n"
        "    if label == 'sync directories':\n"
        "        raise OSError(errno.ENOSPC, 'No space left on device')\n"
        "files.WRITE_POINT_HOOK = hook\n"
        "from ledger_engine.cli import main\n"
        "sys.exit(main())\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "post",
            str(books),
            str(night(tmp_path / "n.jsonl")),
            "--through",
            "2026-11-30",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: [Errno 28] No space left on device"
    assert reconcile(books).ok


def cli(*args, env=None, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "ledger_engine", *map(str, args)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_kill_9_at_every_write_point_of_a_real_process(tmp_path, reference):
    (night_file, _), _ = reference
    uninterrupted = init_books(tmp_path / "uninterrupted")
    post(uninterrupted, [str(night_file)], THROUGH)
    expected = journal_bytes(uninterrupted)
    points = len(count_write_points(init_books(tmp_path / "count"), [night_file]))
    for kill_at in range(1, points + 1):
        books = init_books(tmp_path / f"killed-{kill_at}")
        process = cli(
            "post",
            books,
            night_file,
            "--through",
            "2026-11-30",
            env={books_module.KILL_AT_ENV: str(kill_at)},
        )
        process.communicate(timeout=120)
        assert process.returncode == -9
        rerun = cli("post", books, night_file, "--through", "2026-11-30", "--json")
        out, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err
        assert journal_bytes(books) == expected, f"differs after kill at write point {kill_at}"
        assert reconcile(books).ok


def test_kill_9_at_random_moments(tmp_path):
    events = tmp_path / "big.jsonl"
    lines = [json.dumps(sub(f"c{i}", "2026-11-01T08:00:00Z", "pro")) for i in range(200)]
    lines += [
        json.dumps(use(f"c{i % 200}", f"2026-11-02T{i % 24:02d}:00:00Z", f"k{i % 7}", id=f"e{i}"))
        for i in range(6000)
    ]
    events.write_text("\n".join(lines) + "\n")
    durations = []
    for attempt in range(2):  # the first run pays for cold caches: time a warm one too
        uninterrupted = init_books(tmp_path / f"uninterrupted-{attempt}")
        started = time.monotonic()
        timed = cli("post", uninterrupted, events, "--through", "2026-11-30")
        timed.communicate(timeout=120)
        durations.append(time.monotonic() - started)
    duration = min(durations)
    expected = journal_bytes(uninterrupted)
    killed = 0
    for fraction in (0.2, 0.4, 0.6, 0.75, 0.9):
        books = init_books(tmp_path / f"killed-{fraction}")
        process = cli("post", books, events, "--through", "2026-11-30")
        time.sleep(duration * fraction)
        process.kill()
        process.communicate(timeout=60)
        killed += process.returncode == -9
        rerun = cli("post", books, events, "--through", "2026-11-30")
        _, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err
        assert journal_bytes(books) == expected, f"differs after a kill at {fraction:.0%}"
        assert reconcile(books).ok
    assert killed >= 3  # most kills really interrupted a run


def test_a_second_run_waits_or_exits_4(tmp_path, reference):
    (night_file, _), _ = reference
    books = init_books(tmp_path / "books")
    with books_module.locked(books):
        refused = cli("post", books, night_file, "--through", "2026-11-30")
        _, err = refused.communicate(timeout=60)
        assert refused.returncode == 4
        assert err.startswith("Error: the books at") and "locked by another run" in err
        waiting = cli("post", books, night_file, "--through", "2026-11-30", "--wait", "30")
        time.sleep(1.0)
        assert waiting.poll() is None  # still waiting for the lock
    _, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    with books_module.locked(books), pytest.raises(BooksLocked):
        close_month(books, "2026-11")


def test_two_concurrent_runs_end_with_correct_books(tmp_path, reference):
    (night_file, _), _ = reference
    alone = init_books(tmp_path / "alone")
    post(alone, [str(night_file)], THROUGH)
    books = init_books(tmp_path / "books")
    runs = [
        cli("post", books, night_file, "--through", "2026-11-30", "--wait", "60", "--json")
        for _ in range(2)
    ]
    results = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], results
    written = sorted(json.loads(out)["transactions_written"] for out, _ in results)
    assert written[0] == 0 and written[1] > 0  # one posted, the other found nothing to do
    assert journal_bytes(books) == journal_bytes(alone)


def many_customers(path, count=70):
    events = [sub(f"c{i:03d}", "2026-11-01T08:00:00Z", "boost") for i in range(count)]
    events += [use(f"c{i:03d}", "2026-11-02T10:00:00Z", "k") for i in range(count)]
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    return path


def test_a_night_of_many_files_is_made_durable_with_one_syncfs(tmp_path, monkeypatch):
    assert books_module._SYNCFS is not None  # Linux: the path below is the one users take
    calls = []
    real = books_module._SYNCFS
    monkeypatch.setattr(books_module, "_SYNCFS", lambda fd: calls.append(fd) or real(fd))
    books = init_books(tmp_path / "books")
    post(books, [str(many_customers(tmp_path / "n.jsonl"))], THROUGH)
    assert len(calls) == 1
    assert reconcile(books).ok


def test_a_failing_syncfs_leaves_the_books_as_before(tmp_path, monkeypatch):
    def full(fd):
        ctypes.set_errno(errno.ENOSPC)
        return -1

    monkeypatch.setattr(books_module, "_SYNCFS", full)
    books = init_books(tmp_path / "books")
    before = journal_bytes(books)
    with pytest.raises(BooksWriteError, match="No space left"):
        post(books, [str(many_customers(tmp_path / "n.jsonl"))], THROUGH)
    assert journal_bytes(books) == before
    assert not list((books / "customers").glob("*"))
    assert reconcile(books).ok
