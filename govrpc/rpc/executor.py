"""Worker threads that a stopping server can walk away from.

``concurrent.futures.ThreadPoolExecutor`` joins its workers when the interpreter
exits, so one provider method blocked far past its deadline keeps a stopped
process alive until the method returns: a rolling deploy then waits for
SIGKILL. A ``WorkerPool`` behaves like that executor (threads made on demand up
to ``max_workers``, a pool still in use at exit finishes its work first) except
that once its owner shuts it down without waiting, the interpreter does not wait
either: its threads are daemons and a call still running is left behind.

A worker also runs what a call leaves for after its answer (``after_answer``) once the
call's future is done (a grpc call's response is sent by then): a caller waiting for
one answer at a time does not wait for that work (``govrpc.trace`` ends a server span
into a batch processor's queue so).
"""

from __future__ import annotations

import atexit
import itertools
import logging
import queue
import threading
import weakref
from concurrent.futures import Executor, Future
from typing import Any, Callable, TypeVar

__all__ = ["WorkerPool", "after_answer", "backlog"]

T = TypeVar("T")
_Work = tuple["Future[Any]", Callable[..., Any], tuple[Any, ...], dict[str, Any]]

_pools: weakref.WeakSet[WorkerPool] = weakref.WeakSet()
_exiting = False
_logger = logging.getLogger(__name__)
_worker = threading.local()  # a WorkerPool thread's ``later``: what its current call left for after its answer


def after_answer(fn: Callable[..., Any], *args: Any) -> bool:
    """Run ``fn(*args)`` on this thread once the call it is running has answered (its future is done: a
    grpc call's response sent), so that work no caller waits for (ending a server span into a batch
    processor's queue) does not delay the answer. False, and nothing kept, on a thread that is not a
    ``WorkerPool``'s: the caller runs ``fn`` itself."""
    later = getattr(_worker, "later", None)
    if later is None:
        return False
    later.append((fn, args))
    return True


def _run_later(later: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> None:
    """What the call just answered left for after its answer, in order; an error is logged, the rest runs."""
    for fn, args in later:  # what one of them leaves for later runs in this loop too
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - the answer is sent: nothing else could report it
            _logger.exception("govrpc: work left for after a call's answer failed")
    later.clear()


class WorkerPool(Executor):
    """A thread pool whose running calls do not hold the process once it is shut down.

    Args:
        max_workers: most threads running at once (> 0).
        name: prefix of the threads' names.

    ``shutdown(wait=True)`` is ThreadPoolExecutor's; ``shutdown(wait=False)`` gives
    up on the calls still running: they go on, but nothing (not even interpreter
    exit) waits for them. A pool never shut down is shut down with ``wait=True``
    at interpreter exit, as ThreadPoolExecutor's are.
    """

    _counter = itertools.count()

    def __init__(self, max_workers: int, name: str = "govrpc-worker") -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers <= 0:
            raise ValueError(f"max_workers must be a positive integer, not {max_workers!r}")
        self.max_workers = max_workers
        self.name = name
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._shutdown = False
        _pools.add(self)

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._shutdown or _exiting:
                raise RuntimeError(f"{self.name}: cannot run new work after shutdown")
            self._queue.put((future, fn, args, kwargs))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self.max_workers:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"{self.name}-{next(self._counter)}")
                self._threads.add(thread)
                thread.start()
        return future

    def _work(self) -> None:
        later: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        _worker.later = later
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    self._queue.put(None)  # wake the next worker: they all leave
                    return
                future, fn, args, kwargs = item
                del item
                if future.set_running_or_notify_cancel():
                    try:
                        result = fn(*args, **kwargs)
                    except BaseException as exc:  # noqa: BLE001 - it belongs to the future
                        future.set_exception(exc)
                    else:
                        future.set_result(result)
                del future, fn, args, kwargs  # a finished call's objects are not kept alive while idle
                if later:  # answered: now what the call left for after its answer (after_answer)
                    _run_later(later)
                self._idle.release()
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more work; with ``wait``, finish it all; without, give up on what still runs."""
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item[0].cancel()
            self._queue.put(None)
            threads = list(self._threads)
        _pools.discard(self)  # interpreter exit no longer waits for this pool
        if wait:
            for thread in threads:
                thread.join()

    @property
    def running(self) -> int:
        """Threads alive (busy or idle)."""
        with self._lock:
            return len(self._threads)

    @property
    def queued(self) -> int:
        """Work waiting for a thread (approximate: read without a lock)."""
        return self._queue.qsize()


def backlog(prefix: str = "govrpc-server") -> int:
    """Work waiting for a thread in this process's live pools named ``prefix``: the servers' queues
    (what adaptive flow control reads as "calls arrive faster than they are served")."""
    return sum(pool.queued for pool in list(_pools) if pool.name.startswith(prefix))


@atexit.register
def _finish_at_exit() -> None:
    """Pools still in use when the interpreter exits finish their work, as ThreadPoolExecutor's do."""
    global _exiting
    _exiting = True
    for pool in list(_pools):
        pool.shutdown(wait=True)
