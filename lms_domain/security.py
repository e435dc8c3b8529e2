"""Password and PIN hashing with argon2id (argon2-cffi).

PINs are only four digits, so the hash alone cannot protect them; the lockout after
three wrong tries is what does. argon2 still keeps a leaked table from being a list.
"""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from lms_domain.errors import InvalidInput


@dataclass(frozen=True)
class Hasher:
    """Argon2id with OWASP's minimum profile by default (19 MiB, t=2, p=1)."""

    time_cost: int = 2
    memory_cost_kib: int = 19_456
    parallelism: int = 1

    def _argon(self) -> PasswordHasher:
        return PasswordHasher(time_cost=self.time_cost, memory_cost=self.memory_cost_kib, parallelism=self.parallelism)

    def hash(self, secret: str) -> str:
        return self._argon().hash(secret)

    def verify(self, stored_hash: str, secret: str) -> bool:
        try:
            return self._argon().verify(stored_hash, secret)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


DEFAULT_HASHER = Hasher()


def check_password_strength(password: str) -> None:
    if len(password) < 8:
        raise InvalidInput("a password needs at least 8 characters", code="weak_password")


def check_pin_format(pin: str) -> None:
    if len(pin) != 4 or not (pin.isascii() and pin.isdigit()):
        raise InvalidInput("a PIN is exactly 4 digits", code="invalid_pin_format")
