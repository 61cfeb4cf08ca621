"""Rate limiters: how many calls per second a service or method admits.

One abstract ``RateLimiter`` (entry-point group ``govrpc.limiter``) and the
built-ins, registered in ``setup.cfg`` like anyone's: ``tokenbucket`` (rate and
burst), ``slidingwindow`` (Sentinel's buckets over one second), ``warmup`` (a
token bucket whose rate climbs from a third of the limit to all of it over the
warm-up period, Sentinel's cold factor 3) and ``queueing`` (a leaky bucket: a
call waits for its slot, up to a maximum time, instead of being refused).

They are small on purpose: one check is a lock, a clock read and a few floats
(under 1 µs; ``benchmarks/limiters.py`` measures them against the ``limits``
library in the same run). Pure and synchronous: the decision says "go now",
"wait this long" or "refused"; the filter around it does the waiting.
"""

from __future__ import annotations

import abc
import threading
import time
from typing import Callable, ClassVar

from govrpc.exceptions import ConfigurationError

__all__ = ["QueueingLimiter", "RateLimiter", "SlidingWindowLimiter", "TokenBucketLimiter", "WarmupLimiter"]

Clock = Callable[[], float]

COLD_FACTOR = 3.0
"""A warm-up limiter starts at ``rate / COLD_FACTOR`` (Sentinel's default)."""


class RateLimiter(abc.ABC):
    """A rate decision (entry-point group ``govrpc.limiter``, default ``tokenbucket``).

    Contract: one instance per limited service or method; thread-safe; never blocks.
    ``rate`` is calls per second (> 0); ``burst`` how many may come at once
    (default: one second's worth); ``warmup`` and ``queue`` are seconds, read by
    the limiters they concern.
    """

    name: ClassVar[str] = ""

    def __init__(self, rate: float, burst: float | None = None, *, warmup: float = 10.0, queue: float = 0.5,
                 clock: Clock = time.monotonic) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < float("inf"):
            raise ConfigurationError(f"tps must be a positive number of calls per second, not {rate!r}")
        if burst is not None and (isinstance(burst, bool) or not isinstance(burst, (int, float))
                                  or not 1 <= burst < float("inf")):
            raise ConfigurationError(f"tps.burst must be a number >= 1, not {burst!r}")
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else max(1.0, self.rate)
        self.warmup = float(warmup)
        self.queue = float(queue)
        self._clock = clock
        self._lock = threading.Lock()

    @abc.abstractmethod
    def acquire(self, headroom: float = 0.0) -> bool:
        """Take one permit now; False when refused. ``headroom`` (0..1) is the share of the
        limit that must stay free after this call (how lower priorities are refused first)."""

    def reserve(self, max_wait: float, headroom: float = 0.0) -> float | None:
        """Take one permit within ``max_wait`` seconds: the seconds to wait before going
        (0.0: at once), or None when refused. Only queueing limiters ever ask to wait."""
        return 0.0 if self.acquire(headroom) else None

    def retry_after(self) -> float:
        """Seconds until a permit is likely free again (what a refused caller is told)."""
        return 1.0 / self.rate

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rate={self.rate:g}, burst={self.burst:g})"


class TokenBucketLimiter(RateLimiter):
    """Tokens drip in at ``rate`` per second up to ``burst``; a call takes one."""

    name = "tokenbucket"

    def __init__(self, rate: float, burst: float | None = None, **kw: float | Clock) -> None:
        super().__init__(rate, burst, **kw)  # type: ignore[arg-type]
        self._tokens = self.burst
        self._last = self._clock()
        self._steady = True  # the refill rate is ``rate`` (no ``_refill`` call per acquire)

    def _refill(self, now: float) -> float:
        return self.rate

    def acquire(self, headroom: float = 0.0) -> bool:
        with self._lock:  # the clock read inside: a stale instant would take tokens back
            now = self._clock()
            tokens = self._tokens + (now - self._last) * (self.rate if self._steady else self._refill(now))
            if tokens > self.burst:
                tokens = self.burst
            self._last = now
            if tokens >= 1.0 + headroom * self.burst:
                self._tokens = tokens - 1.0
                return True
            self._tokens = tokens
            return False

    def retry_after(self) -> float:
        return max(0.0, (1.0 - self._tokens)) / self.rate or 1.0 / self.rate


class WarmupLimiter(TokenBucketLimiter):
    """A token bucket whose rate climbs linearly from ``rate / 3`` to ``rate`` over ``warmup``
    seconds after it is made (a provider start, or a new limit), and which starts empty:
    a cold service is not hit by a full burst."""

    name = "warmup"

    def __init__(self, rate: float, burst: float | None = None, **kw: float | Clock) -> None:
        super().__init__(rate, burst, **kw)
        self._start = self._last
        self._tokens = 1.0
        self._steady = False  # until the warm-up is over

    def _refill(self, now: float) -> float:
        elapsed = now - self._start
        if elapsed >= self.warmup:
            self._steady = True
            return self.rate
        cold = self.rate / COLD_FACTOR
        return cold + (self.rate - cold) * elapsed / self.warmup

    def current_rate(self) -> float:
        """The rate admitted right now (climbing during the warm-up)."""
        return self._refill(self._clock())


class SlidingWindowLimiter(RateLimiter):
    """At most ``rate`` calls in any window of one second, counted in ``BUCKETS`` buckets
    (Sentinel's leap array): a call counts until its bucket leaves the window."""

    name = "slidingwindow"
    BUCKETS = 10

    def __init__(self, rate: float, burst: float | None = None, **kw: float | Clock) -> None:
        super().__init__(rate, burst, **kw)  # type: ignore[arg-type]
        self._per_second = float(self.BUCKETS)
        self._counts = [0] * self.BUCKETS
        self._ids = [-1] * self.BUCKETS
        self._slot = -1
        self._total = 0

    def _roll(self, slot: int) -> None:
        oldest = slot - self.BUCKETS
        for i, bucket in enumerate(self._ids):
            if bucket <= oldest:
                self._counts[i] = 0
        index = slot % self.BUCKETS
        if self._ids[index] != slot:
            self._counts[index] = 0
            self._ids[index] = slot
        self._slot = slot
        self._total = sum(self._counts)

    def acquire(self, headroom: float = 0.0) -> bool:
        with self._lock:
            slot = int(self._clock() * self._per_second)
            if slot != self._slot:
                self._roll(slot)
            if self._total + 1 <= self.rate * (1.0 - headroom):
                self._counts[slot % self.BUCKETS] += 1
                self._total += 1
                return True
            return False

    def retry_after(self) -> float:
        return 1.0 / self.BUCKETS


class QueueingLimiter(RateLimiter):
    """Calls leave evenly, one every ``1 / rate`` s (Sentinel's rate limiter controller): a
    call waits for its slot up to ``queue`` seconds (and never past its deadline: the
    filter passes the smaller of the two) and is refused when the slot is further away."""

    name = "queueing"

    def __init__(self, rate: float, burst: float | None = None, **kw: float | Clock) -> None:
        super().__init__(rate, burst, **kw)  # type: ignore[arg-type]
        self._interval = 1.0 / self.rate
        self._next = 0.0

    def reserve(self, max_wait: float, headroom: float = 0.0) -> float | None:
        with self._lock:
            now = self._clock()
            slot = self._next if self._next > now else now
            wait = slot - now
            if wait > max_wait * (1.0 - headroom):
                return None
            self._next = slot + self._interval
            return wait

    def acquire(self, headroom: float = 0.0) -> bool:
        return self.reserve(0.0, headroom) == 0.0

    def retry_after(self) -> float:
        return max(self._interval, self._next - self._clock())
