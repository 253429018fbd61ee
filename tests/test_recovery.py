"""Recovery never destroys (SPEC §6): bytes and files no run committed are moved under
recovered/, never deleted; a sealed file that differs from its seal stops post and close."""

from __future__ import annotations

from builders import journal_bytes, sub, use
from click.testing import CliRunner

from ledger_engine.cli import main
from ledger_engine.reconcile import reconcile

TAIL = '2026-11-30 * "added by hand" "kept as evidence"\n'


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def november(poster):
    poster(
        [sub("acme", "2026-11-01T08:00:00Z", "boost"), use("acme", "2026-11-02T10:00:00Z", "a")],
        "2026-11-30",
    )


def recovered(books) -> dict[str, str]:
    return {
        p.relative_to(books).as_posix(): p.read_text()
        for p in sorted((books / "recovered").rglob("*"))
        if p.is_file()
    }


def test_a_tail_in_an_open_month_is_moved_to_recovered_with_its_bytes(poster, books):
    november(poster)
    path = books / "customers/C-acme/2026-11.beancount"
    before = path.read_bytes()
    with path.open("a") as stream:
        stream.write(TAIL)
    result = run_cli("post", books, poster.write([]), "--through", "2026-11-30")
    assert result.exit_code == 0, result.output
    assert path.read_bytes() == before
    assert recovered(books) == {"recovered/run-2/customers/C-acme/2026-11.beancount.tail": TAIL}
    assert (
        "Recovered: moved 48 bytes past the committed end of customers/C-acme/2026-11.beancount"
        " to recovered/run-2/customers/C-acme/2026-11.beancount.tail" in result.output
    )
    assert reconcile(books).ok


def test_files_no_run_wrote_are_moved_not_deleted(poster, books):
    november(poster)
    dropped = {
        "gl/2026/2026-09.beancount": "; a GL month someone added\n",
        "customers/C-acme/notes.beancount": "; a note\n",
        "customers/C-stranger/customer.beancount": "; a customer the store does not know\n",
    }
    for relative, text in dropped.items():
        (books / relative).parent.mkdir(parents=True, exist_ok=True)
        (books / relative).write_text(text)
    report = reconcile(books)
    named = {d.file for d in report.differences if "unknown to the store" in d.message}
    assert named == set(dropped)
    poster([], "2026-11-30")
    assert recovered(books) == {
        f"recovered/run-2/{relative}.file": text for relative, text in dropped.items()
    }
    assert not (books / "customers/C-stranger").exists()  # its empty folder is gone
    assert reconcile(books).ok


def test_a_sealed_file_with_text_appended_stops_post_and_close(poster, books):
    november(poster)
    assert run_cli("close", books, "2026-11").exit_code == 0
    sealed = books / "customers/C-acme/2026-11.beancount"
    original = sealed.read_bytes()
    sealed.write_bytes(original + TAIL.encode())
    before = journal_bytes(books)
    events = poster.write([use("acme", "2026-12-02T10:00:00Z", "b")])
    for args in (
        ("post", books, events, "--through", "2026-12-31", "--allow-future"),
        ("close", books, "2026-12"),
    ):
        result = CliRunner().invoke(main, [str(a) for a in args])
        assert result.exit_code == 1
        assert result.stderr == (
            "Error: sealed file customers/C-acme/2026-11.beancount differs from its seal; "
            "restore it before posting or closing (ledger-engine reconcile lists them)\n"
        )
    assert journal_bytes(books) == before and not (books / "recovered").exists()
    sealed.write_bytes(original)  # restored from a backup: the books post again
    assert (
        run_cli("post", books, events, "--through", "2026-12-31", "--allow-future").exit_code == 0
    )
    assert reconcile(books).ok


def test_a_sealed_file_edited_in_place_stops_post(poster, books):
    november(poster)
    assert run_cli("close", books, "2026-11").exit_code == 0
    sealed = books / "gl/2026/2026-11.beancount"
    text = sealed.read_text()
    sealed.write_text(text.replace("customers: 1", "customers: 9", 1))  # same size
    assert len(sealed.read_text()) == len(text)
    result = run_cli("post", books, poster.write([]), "--through", "2026-12-31", "--allow-future")
    assert result.exit_code == 1 and "gl/2026/2026-11.beancount differs from its seal" in (
        result.output
    )
