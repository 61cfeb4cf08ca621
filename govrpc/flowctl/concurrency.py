"""Concurrency limits: calls executing at once (provider bulkhead) or in flight (consumer ``actives``)."""

from __future__ import annotations

import threading

from govrpc.exceptions import ConfigurationError

__all__ = ["ConcurrencyLimiter"]


class ConcurrencyLimiter:
    """At most ``limit`` holders at once; one over it is refused at once, never queued.

    Thread-safe; ``acquire`` never blocks. ``headroom`` (0..1) keeps that share of the
    slots for higher priorities (rounded down, so a small limit serves every level).
    """

    __slots__ = ("limit", "active", "_lock")

    def __init__(self, limit: int) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"concurrency must be an integer >= 1, not {limit!r}")
        self.limit = limit
        self.active = 0
        self._lock = threading.Lock()

    def acquire(self, headroom: float = 0.0) -> bool:
        with self._lock:
            if self.active < self.limit - int(self.limit * headroom):
                self.active += 1
                return True
            return False

    def release(self) -> None:
        with self._lock:
            self.active -= 1

    def __repr__(self) -> str:
        return f"ConcurrencyLimiter({self.active}/{self.limit})"
