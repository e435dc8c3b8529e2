"""Identifiers that can be minted offline.

Random rows get a time-ordered UUIDv7 (index-friendly, creatable on an edge with no
link). Rows that have a natural key (one enrollment per learner and course) get a
UUIDv5 of the table and the key, so two offline nodes that create "the same" row
converge on one id instead of colliding on a unique constraint at sync time.
"""

from __future__ import annotations

import hashlib
import uuid

import uuid_utils

# Fixed forever: changing it would change every deterministic id already stored.
SOMO_NAMESPACE = uuid.UUID("6f1c1d2e-8b0a-5e55-9c3e-50d0c0ffee00")

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id() -> uuid.UUID:
    """A fresh time-ordered UUIDv7."""
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)


def natural_id(table: str, *key: object) -> uuid.UUID:
    """A deterministic id for the row of ``table`` identified by ``key``."""
    if not key:
        raise ValueError("natural_id needs at least one key part")
    name = table + ":" + ":".join(str(part).lower() for part in key)
    return uuid.uuid5(SOMO_NAMESPACE, name)


def crockford_code(seed: bytes, length: int) -> str:
    """A human-typable code (no I, L, O, U) derived from ``seed``."""
    digest = int.from_bytes(hashlib.sha256(seed).digest(), "big")
    chars = []
    for _ in range(length):
        digest, rem = divmod(digest, 32)
        chars.append(_CROCKFORD[rem])
    return "".join(chars)


def luhn_check_digit(digits: str) -> str:
    """The Luhn digit that makes ``digits`` + it valid; catches most single typos."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return number.isdigit() and len(number) > 1 and luhn_check_digit(number[:-1]) == number[-1]
