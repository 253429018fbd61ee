"""Month seals (SPEC §6): each closed month's seal covers the SHA-256 of its journal files
and the previous month's seal, so the latest seal vouches for every closed month.

The seal of a month is the SHA-256 of this text, one line each, in byte order of path::

    previous <seal of the previous closed month, or 64 zeros for the first>
    <path> <sha256 of the file>

so anyone can recompute it with standard tools (docs/design.md gives the recipe).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

GENESIS_SEAL = "0" * 64  # the "previous seal" of the first month ever closed


def month_seal(previous_seal: str, files: dict[str, str]) -> str:
    """The seal of a month whose files (path -> SHA-256) follow ``previous_seal``."""
    lines = [f"previous {previous_seal}\n"]
    lines += [f"{path} {sha}\n" for path, sha in sorted(files.items())]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def seal_chain(months: Iterable[tuple[str, dict[str, str]]]) -> dict[str, str]:
    """The seal of every month, given ``(month, files)`` in the order they were closed."""
    seals, previous = {}, GENESIS_SEAL
    for month, files in months:
        previous = seals[month] = month_seal(previous, files)
    return seals
