"""Per-provider call statistics recorded by the cluster layer, read by balancers.

Each invoker gets one ``ProviderStats`` on first use (kept on the invoker, or
in a weak map for invokers with ``__slots__``). In-flight counts live in one
process-wide list, ``ACTIVE``, indexed by ``ProviderStats.slot``, so a balancer
can gather the counts of a whole provider list with one C-level
``operator.itemgetter`` call instead of a Python loop.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

from govrpc.invocation import Invoker

__all__ = ["ACTIVE", "ProviderStats", "stats_of"]

ACTIVE: list[int] = []
"""In-flight calls per stats slot (read without a lock; written under ``_lock``)."""

_lock = threading.Lock()
_create_lock = threading.Lock()
_free: list[int] = []
_slotless: weakref.WeakKeyDictionary[Any, ProviderStats] = weakref.WeakKeyDictionary()
_ATTR = "_govrpc_stats"

EWMA_ALPHA = 0.3  # weight of the newest sample: reacts within a few calls, smooths jitter


def _release(slot: int) -> None:
    with _lock:
        ACTIVE[slot] = 0
        _free.append(slot)


class ProviderStats:
    """What the cluster layer knows of one invoker: in flight, latency, failures, ejection.

    Also holds the invoker's published ``weight``, ``timestamp`` (ms since the
    epoch) and ``warmup`` (s), parsed once since an invoker's URL never changes.
    """

    __slots__ = ("slot", "ewma", "last_pick", "consecutive_failures", "ejected_until",
                 "times_ejected", "weight", "timestamp", "warmup", "__weakref__")

    def __init__(self, invoker: Invoker) -> None:
        with _lock:
            if _free:
                self.slot = _free.pop()
            else:
                self.slot = len(ACTIVE)
                ACTIVE.append(0)
        self.ewma = 0.0            # seconds; 0.0 means no sample yet
        self.last_pick = 0.0       # time.monotonic() of the last completed call
        self.consecutive_failures = 0
        self.ejected_until = 0.0   # time.monotonic(); 0.0 means not ejected
        self.times_ejected = 0
        url = getattr(invoker, "url", None)
        params = url.params if url is not None else {}
        self.weight = _int(params.get("weight"), 100)
        self.timestamp = _int(params.get("timestamp"), 0)
        self.warmup = _int(params.get("warmup"), 600)

    @property
    def active(self) -> int:
        return ACTIVE[self.slot]

    def begin(self) -> float:
        """A call starts; returns its start time for ``end``."""
        with _lock:
            ACTIVE[self.slot] += 1
        return time.monotonic()

    def end(self, started: float, failed: bool | None) -> None:
        """A call ended: ``failed`` True for a provider failure, False for an answer (a business
        error is one), None for a call that tells nothing of the provider (cancelled by us)."""
        now = time.monotonic()
        with _lock:  # one lock for all of it: many threads end calls on one provider at once
            ACTIVE[self.slot] -= 1
            if failed is None:
                return
            self.last_pick = now
            if failed:  # a fast failure ("connection refused") must not look like a fast provider
                self.consecutive_failures += 1
                return
            elapsed = now - started
            self.ewma = elapsed if not self.ewma else self.ewma + EWMA_ALPHA * (elapsed - self.ewma)
            self.consecutive_failures = 0

    def effective_weight(self, now: float) -> int:
        """The weight after warm-up at wall-clock ``now`` (seconds): a linear ramp, at least 1."""
        weight = self.weight
        if weight <= 0:
            return 0
        if self.timestamp and self.warmup > 0:
            uptime = now - self.timestamp / 1000.0
            if uptime < self.warmup:
                return max(1, int(weight * max(uptime, 0.0) / self.warmup))
        return weight

    def warm_until(self) -> float:
        """Wall-clock second when warm-up ends (0 if there is none)."""
        if self.timestamp and self.warmup > 0 and self.weight > 0:
            return self.timestamp / 1000.0 + self.warmup
        return 0.0


def _int(text: str | None, default: int) -> int:
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        return default


def stats_of(invoker: Invoker) -> ProviderStats:
    """The invoker's stats, created on first use and freed with the invoker."""
    stats: ProviderStats | None = getattr(invoker, _ATTR, None)
    if stats is not None:
        return stats
    with _create_lock:  # two threads' first calls must not make two stats
        stats = getattr(invoker, _ATTR, None) or _slotless.get(invoker)
        if stats is not None:
            return stats
        stats = ProviderStats(invoker)
        try:
            setattr(invoker, _ATTR, stats)
        except AttributeError:  # __slots__: keep it beside the invoker instead
            _slotless[invoker] = stats
        weakref.finalize(invoker, _release, stats.slot)
        return stats
