"""Failcache: a failed call is kept and sent again later, in the background.

When the first attempt fails with a provider failure (``retryable``), the call
is queued and the caller gets a ``RetryAccepted`` at once instead of the
method's return value. A timer thread re-sends queued calls every
``failcache.period`` s (default 5), each up to ``failcache.retries`` times
(default 3), with a fresh deadline of ``failcache.timeout`` s (default: the
proxy's ``timeout=`` if given, else 1); a re-send that finds no provider listed
counts as a failed one, so the call waits for providers to come back for
``failcache.retries`` periods. A call that still fails is logged, counted
(``FailcacheClusterInvoker.given_up``) and passed to every callback added with
``on_give_up``. The queue holds at most ``failcache.size`` calls (default
1000, at most 1,000,000); when full, the call is refused at once with ``FailcacheFullError``.

Business exceptions are raised to the caller, never queued. The queue is in
memory: it survives providers going away and coming back, not the consumer
process ending. Use failcache for calls that are safe to repeat
(notifications, idempotent writes).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import threading
import time
from typing import Any, Callable, Sequence

from govrpc.cluster.base import ClusterInvoker
from govrpc.cluster.directory import Directory
from govrpc.cluster.drive import drive
from govrpc.cluster.loadbalance import LoadBalancer
from govrpc.cluster.policy import CallState, GiveUp, Return, Step
from govrpc.exceptions import GovRpcError, NoProviderError, RpcError
from govrpc.invocation import Invocation, Invoker
from govrpc.options import TIMEOUT, Option
from govrpc.url import URL

__all__ = ["FailcacheClusterInvoker", "FailcacheFullError", "RetryAccepted", "on_give_up"]

log = logging.getLogger("govrpc.cluster")

GiveUpCallback = Callable[[Invocation, BaseException], None]
_callbacks: list[GiveUpCallback] = []
_ids = itertools.count(1)
MAX_SIZE = 1_000_000  # the queue is memory: bounded by what one process can hold


def on_give_up(callback: GiveUpCallback) -> Callable[[], None]:
    """Call ``callback(invocation, last_error)`` for every call failcache gives up on.

    Returns a function that removes the callback.
    """
    _callbacks.append(callback)
    return lambda: _callbacks.remove(callback) if callback in _callbacks else None


@dataclasses.dataclass(frozen=True)
class RetryAccepted:
    """What a failcache call returns when it failed and was queued for re-sending.

    ``ticket`` identifies the call in the logs and in give-up reports; ``error``
    is the failure that queued it. It is falsy, so ``if result:`` tells a value
    from a queued call only when the method's values are truthy: compare with
    ``isinstance(result, RetryAccepted)`` instead.
    """

    ticket: int
    error: str

    def __bool__(self) -> bool:
        return False


class FailcacheFullError(RpcError):
    """The failcache queue is full: the call failed and could not be kept for later."""

    code = "RESOURCE_EXHAUSTED"


@dataclasses.dataclass
class _Pending:
    ticket: int
    invocation: Invocation
    attempts: int
    error: BaseException


class FailcacheClusterInvoker(ClusterInvoker):
    """One attempt now; on a provider failure, queue the call and re-send it in the background."""

    PERIOD = Option.seconds("failcache.period", 5.0, doc="seconds between re-sends of the queue")
    RETRIES = Option.integer("failcache.retries", 3, low=1, doc="re-sends of a queued call before giving up")
    SIZE = Option.integer("failcache.size", 1000, low=1, high=MAX_SIZE, doc="calls the queue holds at most")
    RESEND_TIMEOUT = Option.seconds("failcache.timeout", None,
                                    doc="deadline of a re-send (default: timeout, else 1 s)")
    options = (PERIOD, RETRIES, SIZE, RESEND_TIMEOUT, TIMEOUT)

    def __init__(self, directory: Directory, loadbalance: LoadBalancer, url: URL) -> None:
        super().__init__(directory, loadbalance, url)
        self.period: float = self.PERIOD.read(url)
        self.retries: int = self.RETRIES.read(url)
        self.size: int = self.SIZE.read(url)
        self.timeout: float = self.RESEND_TIMEOUT.read(url, TIMEOUT.read(url, 1.0))
        self._queue: collections.deque[_Pending] = collections.deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._successor: FailcacheClusterInvoker | None = None
        # how the timer thread re-sends one call: ``call``, or the asyncio driver's (the loop's) twin
        self.send: Callable[[Invoker, Invocation], Any] = self.call
        self.queued = 0       # counters (metrics): calls queued, re-sent with success, given up, refused
        self.recovered = 0
        self.given_up = 0
        self.refused = 0

    def do_invoke(self, invocation: Invocation, invokers: Sequence[Invoker]) -> Any:
        return drive(self, CallState(invocation, invokers))

    def decide(self, state: CallState) -> Step:
        """One attempt; a provider failure is queued (the call returns a ``RetryAccepted``)."""
        outcome = state.outcome
        exc = outcome.exception if outcome is not None else None
        if not isinstance(exc, GovRpcError) or not exc.retryable:
            return super().decide(state)
        try:
            return Return(self._enqueue(state.invocation, exc))
        except GovRpcError as error:  # the queue is full, or closed
            return GiveUp(error)

    def _enqueue(self, invocation: Invocation, exc: GovRpcError) -> RetryAccepted:
        successor = self._successor
        if successor is not None:  # replaced after a configurator change: the successor keeps it
            return successor._enqueue(invocation, exc)
        with self._lock:
            if self._stop.is_set():  # the reference is closed: nothing would ever re-send it
                raise exc
            if len(self._queue) >= self.size:
                self.refused += 1
                raise FailcacheFullError(
                    f"{invocation} failed ({exc.message or exc}) and the failcache queue is full "
                    f"({self.size} calls waiting; failcache.size)", invocation=invocation) from exc
            ticket = next(_ids)
            self._queue.append(_Pending(ticket, invocation, 0, exc))
            self.queued += 1
            self._start_timer()
        log.info("failcache: %s failed (%s); queued as #%d, re-sent every %.1f s up to %d times",
                 invocation, exc, ticket, self.period, self.retries)
        return RetryAccepted(ticket, str(exc))

    def _start_timer(self) -> None:
        """Start the re-send timer once (the caller holds the lock)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="govrpc-failcache", daemon=True)
            self._thread.start()

    @property
    def pending(self) -> int:
        return len(self._queue)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.resend()

    def resend(self) -> None:
        """Re-send every queued call once (the timer calls this every period)."""
        with self._lock:
            batch = list(self._queue)
            self._queue.clear()
        for done, pending in enumerate(batch):
            if self._stop.is_set():  # stopping: what is left goes back, for stop() to hand over or report
                with self._lock:
                    self._queue.extend(batch[done:])
                return
            invocation = dataclasses.replace(pending.invocation, deadline=time.monotonic() + self.timeout)
            pending.attempts += 1
            try:
                self.send(self.loadbalance.select(self.list(invocation), invocation), invocation)
            except Exception as exc:  # noqa: BLE001 - any failure counts against the call
                pending.error = exc
                # no provider listed right now: they may come back, as the queue promises to wait for
                retryable = isinstance(exc, NoProviderError) or (isinstance(exc, GovRpcError) and exc.retryable)
                if retryable and pending.attempts < self.retries:
                    with self._lock:
                        self._queue.append(pending)
                    continue
                self._give_up(pending)
            else:
                with self._lock:
                    self.recovered += 1
                log.info("failcache: #%d %s succeeded on re-send %d", pending.ticket, invocation, pending.attempts)

    def _give_up(self, pending: _Pending) -> None:
        with self._lock:
            self.given_up += 1
        log.error("failcache: gave up #%d %s after %d re-send(s): %s", pending.ticket, pending.invocation,
                  pending.attempts, pending.error)
        for callback in list(_callbacks):
            try:
                callback(pending.invocation, pending.error)
            except Exception:  # noqa: BLE001 - one bad callback must not stop the others
                log.exception("failcache give-up callback %r failed", callback)

    def stop(self, successor: ClusterInvoker | None = None) -> None:
        """Stop the timer. Calls still queued go to ``successor`` when it is a failcache
        (a configurator changed the options); otherwise they are given up and reported now."""
        heir = successor if isinstance(successor, FailcacheClusterInvoker) and successor is not self else None
        with self._lock:
            self._successor = heir
            self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.timeout + 1.0)  # at most one re-send in flight
        with self._lock:
            left = list(self._queue)
            self._queue.clear()
        if heir is not None:
            heir.adopt(left)
            return
        for pending in left:
            log.error("failcache: reference closed with #%d %s still queued", pending.ticket, pending.invocation)
            self._give_up(pending)

    def adopt(self, calls: Sequence[_Pending]) -> None:
        """Take over queued calls from the invoker this one replaced (beyond ``size``: given up)."""
        overflow = []
        with self._lock:
            for pending in calls:
                if len(self._queue) < self.size:
                    self._queue.append(pending)
                else:
                    overflow.append(pending)
            if self._queue:
                self._start_timer()
        for pending in overflow:
            self._give_up(pending)
