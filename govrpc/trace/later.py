"""Spans ended off the call's path: where they only wait in batch processors' queues.

A span whose provider's processors are all ``BatchSpanProcessor``s is read by nothing
as it ends: it waits in a queue for the exporter's thread. Ending it (its outcome,
the decisions, into the queue) need not delay the call it describes, so
``otel.end_later`` hands that work on, with the end time of the moment:

- on a provider's worker thread, to the worker, which runs it once the call's answer
  is sent (``govrpc.rpc.executor.after_answer``);
- elsewhere (the consumer's calling thread, an asyncio loop), to the ``Ender``: one
  daemon thread per process that ends spans in the order they were handed on. It runs
  while the calling thread waits for its next answer (the GIL is free then).

Nothing is lost or late for the provider's own flushing: the first time spans are
handed to the ender for a provider, a ``Drain`` processor goes first in that
provider's list, so ``provider.force_flush()`` and ``provider.shutdown()`` (the SDK's
exit hook) end every span handed on before the batch processors flush. A backlog past
``Ender.LIMIT`` (the thread cannot keep up) is ended on the calling thread again;
after a fork the child starts an ender of its own.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Any, Callable

from opentelemetry.sdk.trace import SpanProcessor, SynchronousMultiSpanProcessor

__all__ = ["Drain", "Ender", "ENDER"]

_logger = logging.getLogger(__name__)


class Ender:
    """A thread that runs span endings handed on (``put``), in order; started at the first one."""

    LIMIT = 4096  # endings waiting: past it, the caller ends its span itself

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:  # also in a forked child: its parent's thread and queue are not its own
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None

    def put(self, end: Callable[..., None], args: tuple[Any, ...]) -> bool:
        """Run ``end(*args)`` on the ender's thread; False (nothing kept) when too many wait."""
        if self.thread is None:
            self._start()
        elif self.queue.qsize() >= self.LIMIT:
            return False
        self.queue.put((end, args))
        return True

    def _start(self) -> None:
        with self._lock:
            if self.thread is None:
                thread = threading.Thread(target=self._run, args=(self.queue,), name="govrpc-span-ender",
                                          daemon=True)
                thread.start()
                self.thread = thread

    @staticmethod
    def _run(endings: queue.SimpleQueue[Any]) -> None:
        while True:
            item = endings.get()
            if type(item) is threading.Event:  # drain: everything handed on before it is done
                item.set()
                continue
            end, args = item
            del item
            try:
                end(*args)
            except Exception:  # noqa: BLE001 - the call has returned: nothing else could report it
                _logger.exception("govrpc: ending a span off the call's path failed")
            del end, args

    def drain(self, timeout: float) -> bool:
        """Wait until every ending handed on so far has run; False if ``timeout`` seconds pass first."""
        if self.thread is None:
            return True
        done = threading.Event()
        self.queue.put(done)
        return done.wait(timeout)


ENDER = Ender()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=ENDER._reset)


class Drain(SpanProcessor):
    """First in a provider's processors once its spans are ended on the ``Ender``: flushing and shutting
    the provider down end the spans handed on first. It does nothing with a span itself (the light
    tracer's plans leave it out)."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return ENDER.drain(timeout_millis / 1e3)

    def shutdown(self) -> None:
        ENDER.drain(30.0)


def install(multi: SynchronousMultiSpanProcessor) -> None:
    """Put a ``Drain`` first in ``multi`` (a provider's processors), once; the list is replaced as the
    SDK replaces it, under its lock."""
    with multi._lock:
        members = multi._span_processors
        if not any(type(member) is Drain for member in members):
            multi._span_processors = (Drain(), *members)


def end_off_path(end: Callable[..., None], args: tuple[Any, ...], multi: Any) -> bool:
    """Hand ``end(*args)`` to the ender for a span of the provider whose processors are ``multi``;
    False when it is too busy (the caller ends the span itself)."""
    members = multi._span_processors
    if members and type(members[0]) is not Drain:
        install(multi)
    return ENDER.put(end, args)
