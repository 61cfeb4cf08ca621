"""Repair after a ZooKeeper failure: one thread that does again what could not be done.

A lost connection drops every kazoo watch and, past the session timeout, every
ephemeral node of ours. The ``RepairLoop`` thread wakes when something failed
or a connection came back and runs one pass, retried with a tenacity backoff
(capped at ``retry_max_delay``) until it succeeds or the registry closes; a
reconnect or ``close`` cuts a pause short. A pass (``ZookeeperRegistry._repair_once``)
deletes own nodes whose removal failed, re-creates own nodes this session lacks
(``ensure_own``) and re-reads every watch that is dirty.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import tenacity

__all__ = ["NotConnected", "RepairLoop", "forget_zxid"]

log = logging.getLogger("govrpc.registry.zookeeper")


class NotConnected(Exception):
    """Raised inside a repair pass to wait for a connection."""


class RepairLoop:
    """Runs ``attempt`` on its own thread whenever ``want()`` was called, until it succeeds.

    ``retry_on``: the exceptions that mean "try again later"; anything else is
    logged and the pass runs again after ``retry_max_delay``.
    """

    def __init__(self, display: str, attempt: Callable[[], None], retry_on: tuple[type[BaseException], ...],
                 retry_max_delay: float, closing: threading.Event) -> None:
        self.display = display
        self.retry_max_delay = retry_max_delay
        self._attempt = attempt
        self._closing = closing
        self._wanted = threading.Event()
        self._wake = threading.Event()
        self._busy = False
        self._retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type((NotConnected, *retry_on)),
            wait=tenacity.wait_exponential_jitter(multiplier=0.05, max=retry_max_delay, jitter=0.1),
            stop=lambda state: closing.is_set(),
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        self._thread = threading.Thread(target=self._loop, name="govrpc-zk-repair", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def want(self) -> None:
        """Ask for a pass (any thread, never blocks)."""
        self._wanted.set()

    @property
    def idle(self) -> bool:
        """No pass running or asked for (tests wait for it before changing ZooKeeper behind a process)."""
        return not self._busy and not self._wanted.is_set()

    def wake(self) -> None:
        """Cut the current backoff pause short (a connection came back)."""
        self._wake.set()

    def stop(self, timeout: float) -> None:
        self._wanted.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        while True:
            self._wanted.wait()
            if self._closing.is_set():
                return
            self._busy = True
            self._wanted.clear()
            try:
                self._retrying(self._attempt)
            except Exception as exc:  # noqa: BLE001 - the repair thread must outlive any one failure
                if not self._closing.is_set():
                    log.warning("zookeeper registry %s: repair failed (%s); trying again in %.0f s",
                                self.display, exc, self.retry_max_delay)
                    # a pass that stopped half-way must run again, not wait for the next reconnect
                    if not self._closing.wait(self.retry_max_delay):
                        self._wanted.set()
            finally:
                self._busy = False

    def _sleep(self, seconds: float) -> None:
        if self._wake.wait(seconds):
            self._wake.clear()

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if state.attempt_number in (1, 5) or state.attempt_number % 20 == 0:
            log.info("zookeeper registry %s: will retry (attempt %d): %s", self.display, state.attempt_number,
                     type(exc).__name__ if exc else "")


def forget_zxid(client: Any, disconnected_since: float | None, session_timeout: float, display: str) -> None:
    """After a disconnection longer than the session timeout, accept a server that is behind us.

    ZooKeeper refuses a client that has seen a newer transaction than the
    server has (a server rebuilt empty, a restored backup), and kazoo would
    retry that server forever. By then our session is gone anyway (or the
    server will tell us so), and kazoo forgets the zxid itself when it learns
    that a session expired: do the same a little earlier.
    """
    since = disconnected_since
    if since is not None and time.monotonic() - since > session_timeout and client.last_zxid:
        log.warning("zookeeper registry %s: disconnected for over %g s; reconnecting without the last "
                    "seen transaction id 0x%x (the ensemble may have been rebuilt)",
                    display, session_timeout, client.last_zxid)
        client.last_zxid = 0
