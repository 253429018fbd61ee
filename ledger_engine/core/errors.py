"""Expected failures: one family, each with the exit code the CLI gives it (click's way).

Library code raises only these for failures a user can meet (bad books, a locked run, a
full disk); the CLI catches only :class:`LedgerError` and prints its first line as
``Error: ...``.  Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class LedgerError(Exception):
    """An expected failure with a one-line message."""

    exit_code = 1


class BooksLocked(LedgerError):
    """Another run holds the books' writer lock."""

    exit_code = 4


class NoBooks(LedgerError):
    """The directory holds no books (no store)."""


class BooksNotEmpty(LedgerError):
    """``init`` was pointed at a directory that already holds something."""


class StoreSchemaMismatch(LedgerError):
    """The store was made by a ledger-engine with another schema."""


class StoreTampered(LedgerError):
    """The store is not the engine's own (its schema was changed): the writers refuse."""


class StoreError(LedgerError):
    """The store could not be read or written (damaged file, full disk)."""


class BooksDamaged(LedgerError):
    """A journal file is missing or shorter than recorded: damage, not a torn run."""


class BooksTampered(LedgerError):
    """A sealed journal file differs from its seal: the writers refuse until it is restored."""


class BooksWriteError(LedgerError):
    """Appending to the journals failed (the run was undone)."""


class NotClosable(LedgerError):
    """The month cannot be closed now (already closed, out of order, not fully posted)."""


class UnknownCustomer(LedgerError):
    """A report asked for a customer the books do not know."""


class FutureDay(LedgerError):
    """``post --through`` a day after today without ``--allow-future``."""


class InputFileError(LedgerError):
    """An input file of ``post`` could not be read."""


class InputChanged(InputFileError):
    """An input changed while it was read (replaced, truncated, appended to, rewritten):
    what was read is not one version of it, so nothing of the run is kept."""


class InputTooLarge(InputFileError):
    """An input holds more bytes or lines than the limits of one input (an endless one)."""


class RulesError(LedgerError):
    """The rules file is unreadable or incomplete."""


class RulesChanged(LedgerError):
    """rules.toml would change what is in force on a day already posted (SPEC v3 §6)."""


class InvalidSetting(LedgerError):
    """A setting of the books (timezone, currency) is not usable."""
