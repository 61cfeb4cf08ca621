"""Checks of constructor options: a bad value is refused at once, naming the option.

``True`` is not a number here (it is an int to Python, never what a caller meant),
strings are not parsed, and nothing is clamped or wrapped: ``port=70000`` is an
error, not port 4464.
"""

from __future__ import annotations

from typing import Any

from govrpc.exceptions import ConfigurationError

__all__ = ["MAX_MESSAGE_SIZE", "check_int"]

MAX_MESSAGE_SIZE = 2**31 - 1  # grpc's message lengths are signed 32-bit


def check_int(name: str, value: Any, *, minimum: int, maximum: int | None = None) -> int:
    """``value`` if it is a whole number in ``[minimum, maximum]``, else ``ConfigurationError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum \
            or (maximum is not None and value > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigurationError(f"{name} must be a whole number {bounds}, not {value!r}")
    return value

