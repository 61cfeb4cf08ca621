"""Circuit breakers: the decision, pure and synchronous, shared by the sync and asyncio paths.

One ``CircuitBreaker`` per provider and method (``breaker.scope = service``: per
provider) on the consumer. Its state is an object with ``on_success`` /
``on_failure`` (pybreaker's shape: ``ClosedState``, ``OpenState``,
``HalfOpenState``), a new object per period, so a call's outcome counts only for
the period that admitted it. It trips on any of:

- ``breaker.failures`` consecutive failures;
- an error ratio >= ``breaker.ratio`` over the last ``breaker.window`` seconds,
  once ``breaker.min_calls`` calls were made in it;
- a slow-call ratio >= ``breaker.slow.ratio`` (calls longer than ``breaker.slow`` s),
  with the same window and minimum.

Open, it refuses calls for ``breaker.open`` seconds; then it is half-open and lets
``breaker.probes`` calls through; it closes when all of them succeeded and opens
again on the first failed one (several probes, as Resilience4j's
``permittedNumberOfCallsInHalfOpenState``; pybreaker and Sentinel send one).

What comes from where, and why: pybreaker 1.4 holds one lock around the protected
call itself (eight threads through one breaker took 0.81 s instead of 0.10 s),
counts consecutive failures only and has no asyncio, so the decision is this small
state machine in pybreaker's shape, taking no lock on a closed breaker's success
(the window's counters are plain increments; a lost increment under a race only
smooths the ratio). pybreaker is used where it serialises nothing: its
``CircuitBreakerListener`` objects receive ``state_change`` (and ``failure`` /
``success``), and a ``CircuitBreakerStorage`` (``CircuitRedisStorage`` to share
state across processes) mirrors every transition and is read at creation and on
each failure, never on the success path.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any, Callable, ClassVar, Iterable, Mapping

from govrpc.exceptions import ConfigurationError
from govrpc.options import Option
from govrpc.url import URL

__all__ = [
    "BREAKER_OPTIONS",
    "NOT_CLOSED",
    "BreakerSettings",
    "BreakerTable",
    "CircuitBreaker",
    "ClosedState",
    "HalfOpenState",
    "OpenState",
    "add_listener",
    "remove_listener",
]

log = logging.getLogger("govrpc.degrade")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


def _switch(text: str) -> str:
    lowered = text.lower()
    if lowered not in ("on", "off"):
        raise ValueError()
    return lowered


def _scope(text: str) -> str:
    lowered = text.lower()
    if lowered not in ("method", "service"):
        raise ValueError()
    return lowered


SWITCH = Option("breaker", _switch, None, "off: no circuit breaker here (on: the defaults)", "on or off")
FAILURES = Option.integer("breaker.failures", None, low=1, doc="consecutive failures that open the breaker")
RATIO = Option.number("breaker.ratio", None, low=0.0, high=1.0, low_open=True,
                      expected="a ratio > 0 and <= 1", doc="error ratio over the window that opens the breaker")
MIN_CALLS = Option.integer("breaker.min_calls", 10, low=1, doc="calls in the window before a ratio counts")
WINDOW = Option.seconds("breaker.window", 10.0, doc="sliding window of the ratios, seconds")
SLOW = Option.seconds("breaker.slow", None, doc="a call longer than this (seconds) is slow")
SLOW_RATIO = Option.number("breaker.slow.ratio", 0.5, low=0.0, high=1.0, low_open=True,
                           expected="a ratio > 0 and <= 1", doc="slow-call ratio over the window that opens it")
OPEN_SECONDS = Option.seconds("breaker.open", 10.0, doc="seconds the breaker stays open")
PROBES = Option.integer("breaker.probes", 3, low=1, doc="calls let through while half-open; all must succeed")
BUSINESS = Option.boolean("breaker.business", False, doc="true: business exceptions count as failures too")
SCOPE = Option("breaker.scope", _scope, "method", "method: one breaker per provider and method; service: "
               "one per provider", "method or service")
BREAKER_OPTIONS = (SWITCH, FAILURES, RATIO, MIN_CALLS, WINDOW, SLOW, SLOW_RATIO, OPEN_SECONDS, PROBES,
                   BUSINESS, SCOPE)
_NAMES = frozenset(o.name for o in BREAKER_OPTIONS)
DEFAULT_FAILURES = 5
NOT_CLOSED = [0]
"""How many breakers of this process are open or half-open now (one-element list, read without a
lock): the cluster's ``list`` looks at providers' breakers only while it is not zero. A breaker
dropped while open leaves it high, which costs that look and nothing else."""
_count_lock = threading.Lock()
BUCKETS = 10  # the window is this many buckets: a bucket's worth of history is forgotten at once


@dataclasses.dataclass(frozen=True)
class BreakerSettings:
    """When a breaker opens, how long it stays open, how it probes (see the module docstring).

    With no trigger given, ``failures`` is 5. Raises ``ConfigurationError`` for values out of range.
    """

    failures: int | None = None
    ratio: float | None = None
    min_calls: int = 10
    window: float = 10.0
    slow: float | None = None
    slow_ratio: float = 0.5
    open: float = 10.0
    probes: int = 3
    business: bool = False
    scope: str = "method"

    def __post_init__(self) -> None:
        if self.failures is None and self.ratio is None and self.slow is None:
            object.__setattr__(self, "failures", DEFAULT_FAILURES)
        checks = ((FAILURES, self.failures), (RATIO, self.ratio), (MIN_CALLS, self.min_calls),
                  (WINDOW, self.window), (SLOW, self.slow), (SLOW_RATIO, self.slow_ratio),
                  (OPEN_SECONDS, self.open), (PROBES, self.probes))
        for option, value in checks:
            if value is not None:
                option.check(str(value))  # the same limits as the configurator keys, naming the key
        if self.scope not in ("method", "service"):
            raise ConfigurationError(f"breaker.scope must be method or service, not {self.scope!r}")

    @property
    def windowed(self) -> bool:
        return self.ratio is not None or self.slow is not None

    @classmethod
    def from_url(cls, url: URL, method: str | None = None) -> BreakerSettings | None:
        """The settings ``url`` gives (``method``'s ``{method}.breaker.*`` over the general ones),
        or None when it sets no ``breaker.*`` key or says ``breaker = off``."""
        params = dict(url.params)
        if method is not None:
            prefix = f"{method}."
            params.update({k[len(prefix):]: v for k, v in url.params.items()
                           if k.startswith(prefix) and k[len(prefix):] in _NAMES})
        given = {k: v for k, v in params.items() if k in _NAMES}
        if method is not None and f"{method}.breaker" not in url.params and any(
                k.startswith(f"{method}.breaker.") for k in url.params):
            given.pop("breaker", None)  # the method's own breaker keys switch it on for that method
        if not given or given.get("breaker", "").lower() == "off":
            return None
        read = URL("consumer", "", 0, url.path, given)
        return cls(FAILURES.read(read), RATIO.read(read), MIN_CALLS.read(read), WINDOW.read(read),
                   SLOW.read(read), SLOW_RATIO.read(read), OPEN_SECONDS.read(read), PROBES.read(read),
                   BUSINESS.read(read), SCOPE.read(read))

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> dict[str, str]:
        """``{"failures": 5, "open": 10}`` (``client.proxy(breaker=...)``) as ``breaker.*`` URL params."""
        params: dict[str, str] = {}
        for key, value in settings.items():
            name = f"breaker.{key}"
            if name not in _NAMES:
                known = ", ".join(sorted(n.split(".", 1)[1] for n in _NAMES if "." in n))
                raise ConfigurationError(f"breaker={{...}}: unknown key {key!r}; keys: {known}")
            text = str(value).lower() if isinstance(value, bool) else str(value)
            params[name] = text
        return params


# -- listeners: the process's, and each breaker's --------------------------------------------------
Listener = Callable[["CircuitBreaker", str, str], None]
_listeners: list[Any] = []


def add_listener(listener: Any) -> None:
    """Tell ``listener`` of every breaker's state change in this process: a callable
    ``(breaker, old, new)`` (state names), or a ``pybreaker.CircuitBreakerListener``."""
    _listeners.append(listener)


def remove_listener(listener: Any) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


class _Window:
    """Calls, failures and slow calls over the last ``seconds``, in ``BUCKETS`` buckets.

    ``record`` takes a lock only when it starts a new bucket (once per bucket width)."""

    __slots__ = ("rate", "width", "stamps", "calls", "failures", "slows", "lock")

    def __init__(self, seconds: float) -> None:
        self.width = seconds / BUCKETS
        self.rate = BUCKETS / seconds  # buckets per second: a multiplication on the hot path
        self.stamps = [-1] * BUCKETS
        self.calls = [0] * BUCKETS
        self.failures = [0] * BUCKETS
        self.slows = [0] * BUCKETS
        self.lock = threading.Lock()

    def roll(self, slot: int, tick: int) -> None:
        with self.lock:
            if self.stamps[slot] != tick:
                self.calls[slot] = self.failures[slot] = self.slows[slot] = 0
                self.stamps[slot] = tick

    def record(self, now: float, failed: bool, slow: bool) -> None:
        tick = int(now * self.rate)
        slot = tick % BUCKETS
        if self.stamps[slot] != tick:
            self.roll(slot, tick)
        self.calls[slot] += 1
        if failed:
            self.failures[slot] += 1
        if slow:
            self.slows[slot] += 1

    def totals(self, now: float) -> tuple[int, int, int]:
        oldest = int(now * self.rate) - BUCKETS + 1
        calls = failures = slows = 0
        for slot in range(BUCKETS):
            if self.stamps[slot] >= oldest:
                calls += self.calls[slot]
                failures += self.failures[slot]
                slows += self.slows[slot]
        return calls, failures, slows


class BreakerState:
    """One period of a breaker's life; the breaker's ``state`` is replaced whole on a change."""

    name: ClassVar[str] = ""
    closed: ClassVar[bool] = False
    since: float = 0.0

    def admits(self, breaker: CircuitBreaker, now: float) -> bool:
        """Would a call be let through now (no side effect: what load balancing asks)?"""
        return True

    def acquire(self, breaker: CircuitBreaker, now: float) -> bool:
        """Let one call through (True) or refuse it (False)."""
        return True

    def on_success(self, breaker: CircuitBreaker, elapsed: float, now: float) -> None:
        """A call this state admitted was answered, in ``elapsed`` seconds."""

    def on_failure(self, breaker: CircuitBreaker, now: float) -> None:
        """A call this state admitted failed (transport failure or timeout)."""

    def on_ignore(self, breaker: CircuitBreaker) -> None:
        """A call this state admitted tells nothing (refused by a limiter, cancelled by us)."""


class ClosedState(BreakerState):
    """Calls go through; failures and slow calls are counted."""

    name = CLOSED
    closed = True
    __slots__ = ("since", "consecutive", "window", "slow")

    def __init__(self, breaker: CircuitBreaker, now: float) -> None:
        self.since = now
        self.consecutive = 0
        self.window = _Window(breaker.settings.window) if breaker.settings.windowed else None
        self.slow = breaker.settings.slow

    def on_success(self, breaker: CircuitBreaker, elapsed: float, now: float) -> None:
        # the hot path: plain writes and increments, no lock (see the module docstring)
        if self.consecutive:
            self.consecutive = 0
        window = self.window
        if window is None:
            return
        tick = int(now * window.rate)
        slot = tick % BUCKETS
        if window.stamps[slot] != tick:
            window.roll(slot, tick)
        window.calls[slot] += 1
        slow = self.slow
        if slow is not None and elapsed > slow:
            window.slows[slot] += 1
            with breaker.lock:
                self._check(breaker, now)

    def on_failure(self, breaker: CircuitBreaker, now: float) -> None:
        breaker.sync_from_storage(now)
        with breaker.lock:
            if breaker.state is not self:
                return
            self.consecutive += 1
            if self.window is not None:
                self.window.record(now, True, False)
            self._check(breaker, now)

    def _check(self, breaker: CircuitBreaker, now: float) -> None:
        """Open when a threshold is reached (the breaker's lock is held)."""
        if breaker.state is not self:
            return
        settings = breaker.settings
        reason = ""
        if settings.failures is not None and self.consecutive >= settings.failures:
            reason = f"{self.consecutive} consecutive failures"
        elif self.window is not None:
            calls, failures, slows = self.window.totals(now)
            if calls >= settings.min_calls:
                if settings.ratio is not None and failures / calls >= settings.ratio:
                    reason = f"{failures} of {calls} calls failed in {settings.window:g} s"
                elif settings.slow is not None and slows / calls >= settings.slow_ratio:
                    reason = f"{slows} of {calls} calls took over {settings.slow:g} s in {settings.window:g} s"
        if reason:
            breaker._become(OpenState(now), reason)


class OpenState(BreakerState):
    """Calls are refused until ``breaker.open`` seconds have passed; then half-open."""

    name = OPEN
    __slots__ = ("since",)

    def __init__(self, now: float) -> None:
        self.since = now

    def admits(self, breaker: CircuitBreaker, now: float) -> bool:
        return now >= self.since + breaker.settings.open

    def acquire(self, breaker: CircuitBreaker, now: float) -> bool:
        if now < self.since + breaker.settings.open:
            breaker.rejected += 1
            return False
        with breaker.lock:
            if breaker.state is self:
                breaker._become(HalfOpenState(now), f"{breaker.settings.open:g} s open")
        return breaker.state.acquire(breaker, now)


class HalfOpenState(BreakerState):
    """``breaker.probes`` calls go through; all succeeded: closed; one failed: open again."""

    name = HALF_OPEN
    __slots__ = ("since", "permits", "successes")

    def __init__(self, now: float) -> None:
        self.since = now
        self.permits = 0
        self.successes = 0

    def admits(self, breaker: CircuitBreaker, now: float) -> bool:
        return self.permits < breaker.settings.probes

    def acquire(self, breaker: CircuitBreaker, now: float) -> bool:
        with breaker.lock:
            if breaker.state is self and self.permits < breaker.settings.probes:
                self.permits += 1
                return True
        breaker.rejected += 1
        return False

    def on_success(self, breaker: CircuitBreaker, elapsed: float, now: float) -> None:
        slow = breaker.settings.slow
        if slow is not None and elapsed > slow:  # a slow probe is a failed one
            self.on_failure(breaker, now)
            return
        with breaker.lock:
            if breaker.state is self:
                self.successes += 1
                if self.successes >= breaker.settings.probes:
                    breaker._become(ClosedState(breaker, now), f"{self.successes} probe(s) succeeded")

    def on_failure(self, breaker: CircuitBreaker, now: float) -> None:
        with breaker.lock:
            if breaker.state is self:
                breaker._become(OpenState(now), "a probe failed")

    def on_ignore(self, breaker: CircuitBreaker) -> None:
        with breaker.lock:
            if breaker.state is self and self.permits > 0:
                self.permits -= 1


class CircuitBreaker:
    """One breaker: ``state`` (a ``BreakerState``), its settings, counters and listeners.

    Contract: thread-safe; no lock on a closed breaker's success; never blocks.
    ``name`` says what it guards (``service.method@host:port``). ``clock`` is
    ``time.monotonic`` unless a test gives another. ``storage`` is an optional
    ``pybreaker.CircuitBreakerStorage`` mirrored on every change.
    """

    def __init__(self, name: str, settings: BreakerSettings, *, clock: Callable[[], float] = time.monotonic,
                 listeners: Iterable[Any] = (), storage: Any = None,
                 on_change: Callable[[CircuitBreaker], None] | None = None,
                 service: str = "", method: str = "", address: str = "") -> None:
        self.name = name
        self.service, self.method, self.address = service, method, address
        self.settings = settings
        self.clock = clock
        self.lock = threading.Lock()
        self.listeners = list(listeners)
        self.storage = storage
        self.on_change = on_change
        self.transitions = {OPEN: 0, HALF_OPEN: 0, CLOSED: 0}
        self.rejected = 0
        self._pending: list[tuple[str, str, str]] = []
        now = clock()
        self.state: BreakerState = ClosedState(self, now)
        if storage is not None:
            self.sync_from_storage(now)

    @property
    def current_state(self) -> str:
        """``closed``, ``open`` or ``half-open`` (pybreaker's spelling of the name)."""
        return self.state.name

    # -- what the filter calls --------------------------------------------------------------------
    def admits(self, now: float | None = None) -> bool:
        return self.state.admits(self, self.clock() if now is None else now)

    def acquire(self) -> BreakerState | None:
        """The state that admitted a call, or None when the breaker refuses it."""
        state = self.state
        if state.closed:
            return state
        admitted = state.acquire(self, self.clock())
        if self._pending:  # open -> half-open happened here
            self._flush()
        if admitted:
            return self.state if state.name == OPEN else state
        return None

    def record(self, state: BreakerState, failed: bool | None, elapsed: float, now: float | None = None) -> None:
        """The outcome of a call ``state`` admitted: failed, answered (False) or neither (None);
        ``now`` is when it ended (read from ``clock`` when not given)."""
        if now is None:
            now = self.clock()
        if failed is False:
            state.on_success(self, elapsed, now)
        elif failed is None:
            state.on_ignore(self)
        else:
            state.on_failure(self, now)
        if self._pending:
            self._flush()

    # -- transitions ------------------------------------------------------------------------------
    def _become(self, state: BreakerState, reason: str) -> None:
        """Switch to ``state`` (the lock is held); listeners hear of it after the lock is left."""
        old = self.state.name
        self.state = state
        self.transitions[state.name] += 1
        if (old == CLOSED) != (state.name == CLOSED):
            with _count_lock:
                NOT_CLOSED[0] += 1 if old == CLOSED else -1
        self._pending.append((old, state.name, reason))

    def _flush(self) -> None:
        with self.lock:
            pending, self._pending = self._pending, []
        for old, new, reason in pending:
            level = logging.WARNING if new == OPEN else logging.INFO
            log.log(level, "circuit breaker %s: %s -> %s (%s)", self.name, old, new, reason)
            if self.storage is not None:
                try:
                    self.storage.state = new
                    if new == OPEN:
                        import datetime

                        self.storage.opened_at = datetime.datetime.now(datetime.timezone.utc)
                except Exception:  # noqa: BLE001 - a shared store that is down must not stop calls
                    log.exception("circuit breaker %s: cannot write its state to %r", self.name, self.storage)
            for listener in (*self.listeners, *_listeners):
                try:
                    if hasattr(listener, "state_change"):
                        listener.state_change(self, _PybreakerState(old), _PybreakerState(new))
                    else:
                        listener(self, old, new)
                except Exception:  # noqa: BLE001 - one listener's bug must not stop the others
                    log.exception("circuit breaker listener %r failed", listener)
            if self.on_change is not None:
                self.on_change(self)

    def sync_from_storage(self, now: float) -> None:
        """Adopt an ``open`` that another process wrote into the shared storage (rare path)."""
        storage = self.storage
        if storage is None:
            return
        try:
            shared = storage.state
        except Exception:  # noqa: BLE001
            log.exception("circuit breaker %s: cannot read its state from %r", self.name, storage)
            return
        if shared == OPEN and self.state.name == CLOSED:
            with self.lock:
                if self.state.name == CLOSED:
                    self._become(OpenState(now), "opened by another process (shared storage)")
            self._flush()

    def snapshot(self) -> dict[str, Any]:
        """What ``Admin.breakers`` shows: state, seconds in it, counters."""
        state = self.state
        seconds = max(self.clock() - state.since, 0.0)
        return {"service": self.service, "method": self.method or "*", "address": self.address,
                "state": state.name, "since": round(time.time() - seconds, 3), "for": round(seconds, 3),
                "opened": self.transitions[OPEN], "rejected": self.rejected}

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name} {self.state.name}>"


class _PybreakerState:
    """What a pybreaker listener reads of a state: its ``name``."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class BreakerTable:
    """One provider's breakers: method -> ``CircuitBreaker``, made on a method's first call.

    Lives in ``ProviderState.breaker``; the cluster's ``list`` asks ``blocks(method)`` before
    the pick. ``settings`` maps a method (None: the default) to its settings (None: no breaker).
    """

    def __init__(self, service: str, address: str, default: BreakerSettings | None,
                 methods: Mapping[str, BreakerSettings | None], *, listeners: Iterable[Any] = (),
                 storage: Callable[[str], Any] | None = None,
                 on_change: Callable[[CircuitBreaker], None] | None = None) -> None:
        self.service = service
        self.address = address
        self.default = default
        self.methods = dict(methods)
        self.listeners = tuple(listeners)
        self.storage = storage
        self.on_change = on_change
        self.breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def same_settings(self, other: BreakerTable) -> bool:
        return self.default == other.default and self.methods == other.methods

    def settings_for(self, method: str) -> BreakerSettings | None:
        return self.methods.get(method, self.default)

    def get(self, method: str) -> CircuitBreaker | None:
        """``method``'s breaker (made now if needed), or None when it has none."""
        settings = self.methods.get(method, self.default)
        if settings is None:
            return None
        key = "*" if settings.scope == "service" else method
        breaker = self.breakers.get(key)
        if breaker is None:
            with self._lock:
                breaker = self.breakers.get(key)
                if breaker is None:
                    name = f"{self.service}@{self.address}" if key == "*" else \
                        f"{self.service}.{method}@{self.address}"
                    breaker = CircuitBreaker(name, settings, listeners=self.listeners,
                                             storage=self.storage(name) if self.storage else None,
                                             on_change=self.on_change, service=self.service,
                                             method="" if key == "*" else method, address=self.address)
                    self.breakers[key] = breaker
        return breaker

    def blocks(self, method: str, now: float) -> bool:
        """True when ``method``'s breaker refuses calls now (asked before a provider is picked)."""
        breakers = self.breakers
        if not breakers:
            return False
        breaker = breakers.get(method) or breakers.get("*")
        return breaker is not None and breaker.state.name != CLOSED and not breaker.state.admits(breaker, now)
