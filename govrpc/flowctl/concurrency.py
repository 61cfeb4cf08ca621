"""Concurrency limits: calls executing at once (provider bulkhead) or in flight (consumer ``actives``),
and the client connections a provider serves (``connections``)."""

from __future__ import annotations

import threading
import time
from typing import Any

from govrpc.exceptions import ConfigurationError

__all__ = ["CONNECTION_IDLE", "ConcurrencyLimiter", "ConnectionLimiter"]


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


CONNECTION_IDLE = 30.0
"""Seconds after its last call that a client connection stops counting toward ``connections``."""


class ConnectionLimiter:
    """At most ``limit`` client connections served at once, told apart by the caller's peer address.

    A connection counts from its first call until it has made none for ``idle`` seconds;
    a call on another connection while ``limit`` count is refused at once (the caller's
    failover takes another provider). gRPC does not tell a server when a client goes away,
    so "connected" means "called within ``idle``". Thread-safe.
    """

    __slots__ = ("limit", "idle", "_seen", "_lock", "_clock")

    def __init__(self, limit: int, idle: float = CONNECTION_IDLE, clock: Any = time.monotonic) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"connections must be an integer >= 1, not {limit!r}")
        self.limit = limit
        self.idle = idle
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def admit(self, peer: str) -> bool:
        with self._lock:
            now = self._clock()
            seen = self._seen
            if peer in seen:
                seen[peer] = now
                return True
            if len(seen) >= self.limit:
                for other, last in list(seen.items()):
                    if now - last >= self.idle:
                        del seen[other]
                if len(seen) >= self.limit:
                    return False
            seen[peer] = now
            return True

    @property
    def connected(self) -> int:
        return len(self._seen)
