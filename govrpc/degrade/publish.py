"""Breaker states made visible: each consumer publishes its open and half-open breakers.

Registry node ``{service}/breakers/{application}@{host}:{pid}``, text = JSON::

    {"consumer": "web@host:4242", "updated": 1764620000.0, "total": 1, "breakers": [
        {"service": "demo.Greeter", "method": "hello", "address": "10.0.0.5:50051",
         "state": "open", "since": 1764619990.2, "for": 9.8, "opened": 1, "rejected": 12}]}

At most ``LIMIT`` entries (``total`` says how many there were); written by one
background thread at most every ``PERIOD`` seconds after a change (never on the
call path), deleted when the last of its breakers closes and when the client closes.
``Admin.breakers(service)`` and ``govrpc breakers SERVICE`` read them.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import weakref
from typing import Any

from govrpc.degrade.breaker import CLOSED, CircuitBreaker

__all__ = ["BREAKERS", "BreakerPublisher", "LIMIT", "PERIOD"]

log = logging.getLogger("govrpc.degrade")

BREAKERS = "breakers"
LIMIT = 100
PERIOD = 0.2


class BreakerPublisher:
    """One client's breakers, published to its registry after each change."""

    def __init__(self, registry: Any, application: str) -> None:
        self.registry = registry
        self.name = f"{application}@{socket.gethostname()}:{os.getpid()}"
        self._breakers: weakref.WeakSet[CircuitBreaker] = weakref.WeakSet()
        self._dirty: set[str] = set()
        self._written: set[str] = set()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def changed(self, breaker: CircuitBreaker) -> None:
        """A breaker changed state (its listener hook): publish its service soon."""
        with self._lock:
            if self._closed:
                return
            self._breakers.add(breaker)
            self._dirty.add(breaker.service)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="govrpc-breakers", daemon=True)
                self._thread.start()
        self._wake.set()

    def document(self, service: str) -> dict[str, Any] | None:
        """What this consumer publishes for ``service`` now (None: nothing open or half-open)."""
        entries = [b.snapshot() for b in list(self._breakers) if b.service == service and b.state.name != CLOSED]
        if not entries:
            return None
        entries.sort(key=lambda e: (e["method"], e["address"]))
        return {"consumer": self.name, "updated": round(time.time(), 3), "total": len(entries),
                "breakers": entries[:LIMIT]}

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait()
            if self._closed:
                return
            self._wake.clear()
            with self._lock:
                dirty, self._dirty = self._dirty, set()
            for service in sorted(dirty):
                self._publish(service)
            time.sleep(PERIOD)  # bounded rate: at most one write per service per period

    def _publish(self, service: str) -> None:
        document = self.document(service)
        try:
            if document is None:
                if service in self._written:
                    self.registry.delete_rule(service, BREAKERS, self.name)
                    self._written.discard(service)
            else:
                self.registry.put_rule(service, BREAKERS, self.name, json.dumps(document, sort_keys=True))
                self._written.add(service)
        except Exception:  # noqa: BLE001 - visibility must never break calls; the next change retries
            log.warning("cannot publish the breaker states of %s", service, exc_info=True)

    def close(self) -> None:
        """Stop publishing and remove what was published."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(timeout=2.0)
        for service in sorted(self._written):
            try:
                self.registry.delete_rule(service, BREAKERS, self.name)
            except Exception:  # noqa: BLE001
                log.warning("cannot remove the breaker states of %s", service, exc_info=True)
        self._written.clear()


class ClientDegradation:
    """What a ``Client`` holds of this package: its breakers' publisher and its switch watcher."""

    def __init__(self, registry: Any, application: str, filters: Any) -> None:
        from govrpc.degrade.filters import BreakerFilter
        from govrpc.degrade.switches import watch_switches

        self.publisher = BreakerPublisher(registry, application)
        for f in filters:
            if isinstance(f, BreakerFilter) and f.on_change is None:
                f.on_change = self.publisher.changed
        self.switches = watch_switches(registry)

    def close(self) -> None:
        self.publisher.close()
        self.switches.close()
