"""8-byte keys of SHA-256 digests: what the store finds an event's id and content by.

SQLite keeps a signed 64-bit integer in 8 bytes, a tenth of a hex digest; a key names a
digest, never proves one, so whoever looks a key up still compares what it stands for.
"""

from __future__ import annotations

import hashlib


def digest_key(digest: bytes) -> int:
    """The first 8 bytes of a SHA-256 digest as a signed integer."""
    return int.from_bytes(digest[:8], "big", signed=True)


def text_key(data: bytes) -> int:
    """The key of the SHA-256 of ``data``."""
    return digest_key(hashlib.sha256(data).digest())
