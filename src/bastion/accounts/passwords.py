"""Argon2 hashes for passwords and API client secrets."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


class Argon2Hasher:
    """Implements :class:`bastion.accounts.rules.Hasher`."""

    def __init__(self, fast: bool = False) -> None:
        # The fast profile keeps argon2id but with less memory and time, for test suites.
        self._hasher = (
            PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
            if fast
            else PasswordHasher()
        )

    def hash(self, secret: str) -> str:
        return self._hasher.hash(secret)

    def verify(self, hashed: str, secret: str) -> bool:
        try:
            return self._hasher.verify(hashed, secret)
        except (VerificationError, InvalidHashError):
            return False
