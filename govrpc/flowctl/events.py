"""Refusals are never silent: each is counted, reported to listeners, logged (rate-limited).

``refuse`` turns a ``Refusal`` (what refused which call, and why) into the
``RateLimitedError`` the caller receives, after counting it per
service/method/reason (``refusal_counts``), calling every listener registered
with ``add_refusal_listener`` (the seed's "at least notify the user") and
logging it: at most one line per service and reason per ``LOG_INTERVAL``
seconds, with how many were left out, so a storm does not flood the log.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Callable

from govrpc.exceptions import RateLimitedError
from govrpc.invocation import Invocation

__all__ = ["LOG_INTERVAL", "Refusal", "add_refusal_listener", "refusal_counts", "refuse",
           "remove_refusal_listener", "reset_refusal_counts"]

log = logging.getLogger("govrpc.flowctl")

LOG_INTERVAL = 1.0
"""Seconds between two log lines about refusals of one service for one reason."""


@dataclasses.dataclass(frozen=True)
class Refusal:
    """One refused call: where (``side``: provider or consumer), by what and at which level.

    ``reason`` is ``rate``, ``concurrency``, ``actives``, ``connections``, ``cluster`` or
    ``shed``; ``limit`` the key that refused (``tps``, ``find.concurrency``...) and
    ``value`` its setting; ``level`` the protection level (``normal``, ``busy``,
    ``overloaded``); ``retry_after`` seconds (None: a retry here is pointless).
    """

    service: str
    method: str
    side: str
    reason: str
    limit: str
    value: str
    priority: str
    level: str = "normal"
    retry_after: float | None = None

    @property
    def message(self) -> str:
        verb = "shed" if self.reason == "shed" else "limited"
        after = (f"retry after {self.retry_after * 1000:.0f} ms" if self.retry_after is not None
                 else "a retry cannot succeed in time")
        return (f"{self.service}.{self.method}: {verb} on the {self.side} by {self.limit} = {self.value} "
                f"({self.reason}) at priority {self.priority}, level {self.level}; {after}")


Listener = Callable[[Refusal], None]

_lock = threading.Lock()
_listeners: list[Listener] = []
_counts: dict[tuple[str, str, str], int] = {}
_logged: dict[tuple[str, str], list[float]] = {}  # (service, reason) -> [last log time, left out]


def add_refusal_listener(listener: Listener) -> None:
    """Call ``listener(refusal)`` for every call flow control refuses in this process."""
    with _lock:
        _listeners.append(listener)


def remove_refusal_listener(listener: Listener) -> None:
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


def refusal_counts() -> dict[tuple[str, str, str], int]:
    """Refusals so far: ``(service, method, reason)`` -> count."""
    with _lock:
        return dict(_counts)


def reset_refusal_counts() -> None:
    with _lock:
        _counts.clear()
        _logged.clear()


def refuse(refusal: Refusal, invocation: Invocation | None = None) -> RateLimitedError:
    """Count, report and log ``refusal``; returns the error to raise for it."""
    now = time.monotonic()
    with _lock:
        key = (refusal.service, refusal.method, refusal.reason)
        _counts[key] = _counts.get(key, 0) + 1
        listeners = list(_listeners)
        seen = _logged.setdefault((refusal.service, refusal.reason), [float("-inf"), 0])
        if now - seen[0] >= LOG_INTERVAL:
            left_out, seen[0], seen[1] = int(seen[1]), now, 0
        else:
            left_out = -1
            seen[1] += 1
    if left_out >= 0:
        log.warning("%s%s", refusal.message,
                    f" ({left_out} more refusals of this kind in the last {LOG_INTERVAL:g} s not logged)"
                    if left_out else "")
    for listener in listeners:
        try:
            listener(refusal)
        except Exception:  # noqa: BLE001 - a listener's bug must not turn a refusal into a crash
            log.exception("refusal listener %r failed", listener)
    return RateLimitedError(refusal.message, invocation=invocation, reason=refusal.reason, limit=refusal.limit,
                            priority=refusal.priority, level=refusal.level, retry_after=refusal.retry_after,
                            retryable=refusal.retry_after is not None)
