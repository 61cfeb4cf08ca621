"""One place for per-provider state: ``ProviderState``, made by the directory for each provider.

What the cluster layer knows of one provider lives in one object: calls in
flight, latency (EWMA), consecutive failures, ejection, and the slots the
coming stages fill (``breaker``, ``permits``), and what the provider reports of
itself (``health``, ``serving``, ``load``: ``govrpc.monitor``). Balancers, outlier ejection and
the cluster's ``call`` read and write it; nothing else keeps a second count.

The success path takes no lock: in-flight calls are a list that ``begin``
appends to and ``end`` pops from (both atomic in CPython), and the EWMA and
"last answered" fields are plain writes (a sample lost to a race only smooths
the average a little). Failures and ejection, rare, change under the state's
own lock. There is no process-wide lock on the call path.

The directory also uses the in-flight list to close a provider that left only
once its last call has ended (``retire``), so a call never has its channel
closed under it.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any, Callable

from govrpc.invocation import Invoker

__all__ = ["EWMA_ALPHA", "ProviderState", "ProviderStats", "stats_of"]

EWMA_ALPHA = 0.3  # weight of the newest sample: reacts within a few calls, smooths jitter

_monotonic = time.monotonic


class ProviderState:
    """What the cluster layer knows of one provider: in flight, latency, failures, ejection.

    Also holds the provider's ``weight``, ``timestamp`` (ms since the epoch) and
    ``warmup`` (s) as the consumer sees them (configurators applied; the directory
    updates them when an override changes), and ``breaker`` / ``permits``: slots
    for the degradation and flow-control stages (None while nothing is configured).
    Thread-safe; one per provider per reference.
    """

    __slots__ = ("inflight", "ewma", "last_pick", "consecutive_failures", "ejected_until",
                 "times_ejected", "weight", "timestamp", "warmup", "breaker", "permits", "health", "load", "serving",
                 "lock", "retiring", "_on_idle", "__weakref__")

    def __init__(self, params: Any = None) -> None:
        self.inflight: list[None] = []  # one entry per call in flight: append/pop are atomic
        self.ewma = 0.0            # seconds; 0.0 means no sample yet
        self.last_pick = 0.0       # time.monotonic() of the last completed call
        self.consecutive_failures = 0
        self.ejected_until = 0.0   # time.monotonic(); 0.0 means not ejected
        self.times_ejected = 0
        self.breaker: Any = None
        self.permits: Any = None
        self.health: Any = None  # the provider's own health summary (govrpc.monitor), when watched
        self.load: Any = None  # its last ORCA load report (govrpc.monitor.orca.LoadReport), when read
        self.serving: bool | None = None  # what its grpc health service last said (None: not asked)
        self.lock = threading.Lock()
        self.retiring = False
        self._on_idle: Callable[[], None] | None = None
        self.weight = 100
        self.timestamp = 0
        self.warmup = 600
        if params is not None:
            self.configure(params)

    def configure(self, params: Any) -> None:
        """Take ``weight``, ``timestamp`` and ``warmup`` from a provider URL's parameters."""
        self.weight = _int(params.get("weight"), 100)
        self.timestamp = _int(params.get("timestamp"), 0)
        self.warmup = _int(params.get("warmup"), 600)

    @property
    def active(self) -> int:
        """Calls in flight now."""
        return len(self.inflight)

    def begin(self) -> float:
        """A call starts; returns its start time for ``end``."""
        self.inflight.append(None)
        return _monotonic()

    def end(self, started: float, failed: bool | None) -> None:
        """A call ended: ``failed`` True for a provider failure, False for an answer (a business
        error is one), None for a call that tells nothing of the provider (cancelled by us)."""
        self.inflight.pop()
        if failed is not None:
            now = _monotonic()
            self.last_pick = now
            if failed:  # a fast failure ("connection refused") must not look like a fast provider
                with self.lock:
                    self.consecutive_failures += 1
            else:
                elapsed = now - started
                ewma = self.ewma
                self.ewma = elapsed if not ewma else ewma + EWMA_ALPHA * (elapsed - ewma)
                if self.consecutive_failures:
                    with self.lock:
                        self.consecutive_failures = 0
        if self.retiring and not self.inflight:
            self._idle()

    def retire(self, on_idle: Callable[[], None]) -> None:
        """The provider left: run ``on_idle`` (close its transport) once no call is in flight."""
        self._on_idle = on_idle
        self.retiring = True
        if not self.inflight:
            self._idle()

    def _idle(self) -> None:
        with self.lock:
            on_idle, self._on_idle = self._on_idle, None
        if on_idle is not None:
            on_idle()

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

    def reports_unhealthy(self, now_wall: float) -> bool:
        """The provider says it is not serving: its grpc health answered NOT_SERVING, or its
        health summary (fresh at wall-clock ``now_wall``) says so. The directory then lists it
        only when no other provider is left."""
        if self.serving is False:
            return True
        health = self.health
        return health is not None and not health.serving and health.fresh(now_wall)

    def warm_until(self) -> float:
        """Wall-clock second when warm-up ends (0 if there is none)."""
        if self.timestamp and self.warmup > 0 and self.weight > 0:
            return self.timestamp / 1000.0 + self.warmup
        return 0.0


ProviderStats = ProviderState  # the name balancers and tests knew it by


def _int(text: str | None, default: int) -> int:
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        return default


_foreign: weakref.WeakKeyDictionary[Any, ProviderState] = weakref.WeakKeyDictionary()
_foreign_lock = threading.Lock()


def stats_of(invoker: Invoker) -> ProviderState:
    """The provider's state: the one its directory made (``invoker.state``), or, for an invoker
    no directory made (tests, a third party's cluster), one kept beside it."""
    state: ProviderState | None = getattr(invoker, "state", None)
    if state is not None:
        return state
    state = _foreign.get(invoker)
    if state is not None:
        return state
    with _foreign_lock:  # two threads' first calls must not make two states
        state = _foreign.get(invoker)
        if state is None:
            url = getattr(invoker, "url", None)
            state = _foreign[invoker] = ProviderState(url.params if url is not None else None)
        return state
