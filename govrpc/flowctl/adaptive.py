"""Adaptive protection: the process's own load decides a level, and each level sheds by priority.

``OverloadDetector`` is the pure decision (one per provider service with
``adaptive = true``). It is fed three signals: the process's CPU share of the
machine (psutil), the calls waiting for a server worker (the executor's
backlog), and the calls in flight against what the service has shown it can
carry, BBR's estimate: the most calls completed per second in the last
``windows`` windows times the shortest latency seen there. CPU is smoothed
(EWMA over samples taken at most every ``SAMPLE_EVERY`` s, the seed's "average
of several readings"), and a level is held at least ``HOLD`` s before it falls,
so it does not flap.

    level        when                                                  policy (lowest priority served)
    normal       otherwise                                             every call
    busy         CPU >= busy_cpu, or a backlog, or in flight > BBR     sheddable_plus and above
    overloaded   CPU >= overloaded_cpu, or in flight > BBR with a      critical and above
                 backlog or busy CPU

A level change is logged and counted (``level_changes``).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from typing import Callable, Mapping

from govrpc.flowctl.priority import Priority

__all__ = ["HOLD", "Level", "OverloadDetector", "POLICY", "SAMPLE_EVERY", "level_changes", "process_cpu"]

log = logging.getLogger("govrpc.flowctl")

SAMPLE_EVERY = 0.25
HOLD = 1.0


class Level(enum.Enum):
    NORMAL = "normal"
    BUSY = "busy"
    OVERLOADED = "overloaded"

    def __str__(self) -> str:
        return self.value


POLICY: Mapping[Level, Priority] = {
    Level.NORMAL: Priority.SHEDDABLE,
    Level.BUSY: Priority.SHEDDABLE_PLUS,
    Level.OVERLOADED: Priority.CRITICAL,
}
"""The lowest priority each level still serves."""

_RANK = {Level.NORMAL: 0, Level.BUSY: 1, Level.OVERLOADED: 2}
_changes_lock = threading.Lock()
_changes: dict[tuple[str, str, str], int] = {}


def level_changes() -> dict[tuple[str, str, str], int]:
    """Level changes so far: ``(service, from, to)`` -> count."""
    with _changes_lock:
        return dict(_changes)


_process: object = None


def process_cpu() -> float:
    """This process's CPU use since the last reading, as a share of the whole machine (0..1)."""
    global _process
    import psutil

    if _process is None:
        _process = psutil.Process()
        _process.cpu_percent(None)  # type: ignore[attr-defined]
        return 0.0
    return float(_process.cpu_percent(None)) / 100.0 / (psutil.cpu_count() or 1)  # type: ignore[attr-defined]


class OverloadDetector:
    """Signals in, a ``Level`` out. Thread-safe; ``begin``/``end`` bracket each call."""

    def __init__(self, service: str = "", *, busy_cpu: float = 0.7, overloaded_cpu: float = 0.9,
                 window: float = 0.1, windows: int = 10, cpu: Callable[[], float] = process_cpu,
                 backlog: Callable[[], int] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if backlog is None:
            from govrpc.rpc.executor import backlog as server_backlog

            backlog = server_backlog
        self.service = service
        self.busy_cpu, self.overloaded_cpu = busy_cpu, overloaded_cpu
        self.window, self.windows = window, windows
        self._cpu, self._backlog, self._clock = cpu, backlog, clock
        self._lock = threading.Lock()
        self.level = Level.NORMAL
        self.inflight = 0
        self.cpu = 0.0
        self._raised_at = float("-inf")
        self._sampled_at = float("-inf")
        self._bucket = 0       # index of the current window
        self._passed = [0] * windows
        self._min_rt = [float("inf")] * windows
        self._ids = [-1] * windows

    # -- per call -------------------------------------------------------------------
    def admits(self, priority: Priority) -> bool:
        """Does the current level serve ``priority``? (Samples the signals when a sample is due.)"""
        now = self._clock()
        if now - self._sampled_at >= SAMPLE_EVERY:
            self.sample(now)
        return priority >= POLICY[self.level]

    def begin(self) -> float:
        """An admitted call starts; returns its start for ``end``."""
        with self._lock:
            self.inflight += 1
        return self._clock()

    def end(self, started: float) -> None:
        now = self._clock()
        slot = int(now / self.window)
        index = slot % self.windows
        with self._lock:
            self.inflight -= 1
            if self._ids[index] != slot:
                self._ids[index], self._passed[index], self._min_rt[index] = slot, 0, float("inf")
            self._passed[index] += 1
            rt = now - started
            if rt < self._min_rt[index]:
                self._min_rt[index] = rt

    # -- signals ----------------------------------------------------------------------
    def bbr_limit(self, now: float | None = None) -> float:
        """Calls in flight the service has shown it carries: max completions per second x min latency
        over the recent windows (inf while it has no history)."""
        now = self._clock() if now is None else now
        oldest = int(now / self.window) - self.windows
        with self._lock:
            recent = [(p, r) for i, p, r in zip(self._ids, self._passed, self._min_rt) if i > oldest]
        if not recent:
            return float("inf")
        max_pass = max(p for p, _ in recent) / self.window
        min_rt = min(r for _, r in recent)
        return max(1.0, max_pass * min_rt)

    def sample(self, now: float | None = None) -> Level:
        """Read the signals, update the level (logging and counting a change) and return it."""
        now = self._clock() if now is None else now
        self._sampled_at = now
        cpu = self._cpu()
        self.cpu = cpu if self.cpu == 0.0 else 0.5 * cpu + 0.5 * self.cpu
        backlog = self._backlog()
        over_bbr = self.inflight > self.bbr_limit(now)
        if self.cpu >= self.overloaded_cpu or (over_bbr and (backlog > 0 or self.cpu >= self.busy_cpu)):
            level = Level.OVERLOADED
        elif self.cpu >= self.busy_cpu or backlog > 0 or over_bbr:
            level = Level.BUSY
        else:
            level = Level.NORMAL
        old = self.level
        if _RANK[level] < _RANK[old] and now - self._raised_at < HOLD:
            return old  # held: a level falls only after it has lasted a while
        if level is not old:
            if _RANK[level] > _RANK[old]:
                self._raised_at = now
            self.level = level
            with _changes_lock:
                key = (self.service, str(old), str(level))
                _changes[key] = _changes.get(key, 0) + 1
            log.warning("%s: protection level %s -> %s (cpu %.0f%%, backlog %d, in flight %d, bbr limit %.1f); "
                        "serving %s and above", self.service, old, level, self.cpu * 100, backlog, self.inflight,
                        self.bbr_limit(now), POLICY[level])
        return level
