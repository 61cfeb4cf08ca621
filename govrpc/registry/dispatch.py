"""Ordered delivery: every change a registry applies runs as one task on one delivery thread.

A registry's readers, watch callbacks and writers only enqueue; the
dispatcher runs the tasks one at a time, in order, holding no lock, so a
listener sees every change once and in order and may call the registry back.
``ThreadDispatcher`` owns a daemon thread (file and ZooKeeper registries);
``InlineDispatcher`` runs the tasks on the calling thread, one caller at a time
(the memory registry, whose changes reach listeners before ``register``
returns).
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import queue
import threading
import time
from typing import Callable

from govrpc.exceptions import RegistryError

__all__ = ["Dispatcher", "InlineDispatcher", "ThreadDispatcher"]

log = logging.getLogger("govrpc.registry")

Task = Callable[[], None]


def _noop() -> None:
    pass


class Dispatcher:
    """Runs a registry's tasks one at a time, in submission order, outside any lock.

    Contract: thread-safe; ``submit`` and ``later`` never block; ``call`` waits
    (bounded by ``wait_limit`` seconds) and runs inline when already on the
    delivery thread, so a listener may call its registry back.
    """

    def __init__(self, name: str, wait_limit: float) -> None:
        self.name = name
        self.wait_limit = wait_limit
        self.closed = False

    def submit(self, task: Task) -> None:
        """Run ``task`` after those already queued."""
        raise NotImplementedError

    def later(self, delay: float, task: Task) -> None:
        """Run ``task`` on the delivery thread in ``delay`` seconds."""
        raise NotImplementedError

    def on_thread(self) -> bool:
        """True when the caller is the delivery thread."""
        raise NotImplementedError

    def call(self, task: Task, what: str) -> None:
        """Run ``task`` on the delivery thread and wait for it; its exception is raised here."""
        if self.on_thread():
            task()
            return
        if self.closed:
            raise RegistryError(f"{self.name} is closed")
        done = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                task()
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                failure.append(exc)
            finally:
                done.set()

        self.submit(run)
        if not done.wait(self.wait_limit):
            # the caller would otherwise go on as if it had happened (no first notification)
            raise RegistryError(f"{self.name}: {what} is still queued behind a slow listener after "
                                f"{self.wait_limit:.0f} s")
        if failure:
            raise failure[0]

    def close(self, join_timeout: float = 0.0) -> None:
        """Stop accepting work; queued tasks are dropped. Waits up to ``join_timeout`` for the
        delivery thread, never from that thread itself."""
        self.closed = True

    def _run(self, task: Task) -> None:
        try:
            task()
        except Exception:  # noqa: BLE001 - the dispatcher must outlive any one task
            log.exception("%s: dispatcher task failed", self.name)


class ThreadDispatcher(Dispatcher):
    """One daemon thread with a task queue and a timer heap."""

    def __init__(self, name: str, wait_limit: float, thread_name: str) -> None:
        super().__init__(name, wait_limit)
        self._tasks: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._timers: list[tuple[float, int, Task]] = []
        self._seq = itertools.count()
        self._timer_lock = threading.Lock()  # guards the heap only; never held while a task runs
        self._thread = threading.Thread(target=self._loop, name=thread_name, daemon=True)
        self._thread.start()

    def submit(self, task: Task) -> None:
        self._tasks.put(task)

    def later(self, delay: float, task: Task) -> None:
        with self._timer_lock:
            heapq.heappush(self._timers, (time.monotonic() + max(0.0, delay), next(self._seq), task))
        self._tasks.put(_noop)  # wake the loop so it recomputes its wait

    def on_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def close(self, join_timeout: float = 0.0) -> None:
        super().close(join_timeout)
        self._tasks.put(None)
        if join_timeout > 0 and not self.on_thread():
            self._thread.join(timeout=join_timeout)

    def _loop(self) -> None:
        while True:
            timeout = None
            with self._timer_lock:
                if self._timers:
                    timeout = max(0.0, self._timers[0][0] - time.monotonic())
            try:
                task = self._tasks.get(timeout=timeout)
            except queue.Empty:
                task = _noop
            if task is None or self.closed:
                return
            self._run(task)
            while not self.closed:
                with self._timer_lock:
                    if not self._timers or self._timers[0][0] > time.monotonic():
                        break
                    _, _, due = heapq.heappop(self._timers)
                self._run(due)


class InlineDispatcher(Dispatcher):
    """Runs tasks on the caller's thread; callers from several threads take turns, in order."""

    def __init__(self, name: str, wait_limit: float) -> None:
        super().__init__(name, wait_limit)
        self._queue: collections.deque[Task] = collections.deque()
        self._lock = threading.Lock()  # guards the queue and the drainer only
        self._drainer: threading.Thread | None = None

    def submit(self, task: Task) -> None:
        with self._lock:
            self._queue.append(task)
        self._drain()

    def later(self, delay: float, task: Task) -> None:
        timer = threading.Timer(delay, self.submit, args=(task,))
        timer.daemon = True
        timer.start()

    def on_thread(self) -> bool:
        return self._drainer is threading.current_thread()

    def _drain(self) -> None:
        me = threading.current_thread()
        with self._lock:
            if self._drainer is not None:
                return  # the thread draining now runs ours too, in order
            self._drainer = me
        while True:
            with self._lock:
                if not self._queue or self.closed:
                    self._drainer = None
                    return
                task = self._queue.popleft()
            self._run(task)
