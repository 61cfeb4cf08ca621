"""WorkerPool: a thread pool whose running calls stop holding the process once it is shut down."""

from __future__ import annotations

import subprocess
import sys
import threading
import textwrap
from concurrent.futures import CancelledError
from typing import Any

import pytest

from govrpc.rpc.executor import WorkerPool, after_answer


def test_runs_work_on_at_most_max_workers_threads() -> None:
    pool = WorkerPool(2, "unit-pool")
    release = threading.Event()
    names: list[str] = []

    def work(n: int) -> int:
        names.append(threading.current_thread().name)
        release.wait(10)
        return n * 2

    futures = [pool.submit(work, n) for n in range(5)]
    assert pool.running == 2
    release.set()
    assert [f.result(timeout=10) for f in futures] == [0, 2, 4, 6, 8]
    assert len(set(names)) == 2 and all(name.startswith("unit-pool-") for name in names)
    failing = pool.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(timeout=10)
    pool.shutdown(wait=True)
    assert pool.running == 0


def test_shutdown_refuses_new_work_and_cancels_queued_work() -> None:
    pool = WorkerPool(1, "unit-pool")
    release = threading.Event()
    running = pool.submit(release.wait, 10)
    queued = pool.submit(lambda: "never")
    pool.shutdown(wait=False, cancel_futures=True)
    with pytest.raises(CancelledError):
        queued.result(timeout=10)
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(lambda: None)
    release.set()
    assert running.result(timeout=10) is True  # what ran went on


def test_bad_sizes_are_refused() -> None:
    for size in (0, -1, True, "4"):
        with pytest.raises(ValueError, match="max_workers"):
            WorkerPool(size)  # type: ignore[arg-type]


def _run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=30)


def test_a_pool_given_up_on_does_not_hold_the_interpreter_at_exit() -> None:
    done = _run("""
        import threading
        from govrpc.rpc.executor import WorkerPool, after_answer
        pool = WorkerPool(1)
        started = threading.Event()
        pool.submit(lambda: (started.set(), threading.Event().wait(600)))
        started.wait(10)
        pool.shutdown(wait=False)
        print("leaving")
    """)  # before WorkerPool (ThreadPoolExecutor), this process lived 600 s: run() would time out
    assert done.returncode == 0, done.stderr
    assert done.stdout == "leaving\n"


def test_a_pool_still_in_use_finishes_its_work_at_exit() -> None:
    done = _run("""
        import threading, time
        from govrpc.rpc.executor import WorkerPool, after_answer
        pool = WorkerPool(1)
        started = threading.Event()
        def work():
            started.set()
            time.sleep(0.2)
            print("finished", flush=True)
        pool.submit(work)
        pool.submit(print, "queued ran too")
        started.wait(10)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "finished\nqueued ran too\n"


def test_work_left_for_after_the_answer_runs_once_the_future_is_done_in_order(caplog: pytest.LogCaptureFixture) -> None:
    pool = WorkerPool(1, "unit-pool")
    seen: list[tuple[str, bool]] = []
    ran, go = threading.Event(), threading.Event()
    outer: list[Any] = []

    def later(what: str) -> None:
        seen.append((what, outer[0].done()))  # the answer is out before this runs
        if what == "second":
            raise RuntimeError("a failure after the answer is logged")
        if what == "third":
            ran.set()

    def work() -> int:
        assert go.wait(10)
        assert after_answer(later, "first") and after_answer(later, "second") and after_answer(later, "third")
        assert seen == []  # nothing runs before the answer
        return 7

    outer.append(pool.submit(work))
    go.set()
    assert outer[0].result(timeout=10) == 7
    assert ran.wait(10)
    assert seen == [("first", True), ("second", True), ("third", True)]
    assert "work left for after a call's answer failed" in caplog.text
    # the next call's work starts with nothing left over
    assert pool.submit(lambda: after_answer(later, "first")).result(timeout=10) is True
    pool.shutdown(wait=True)
    assert seen[-1] == ("first", True)


def test_outside_a_worker_nothing_is_left_for_later() -> None:
    called: list[int] = []
    assert after_answer(called.append, 1) is False
    assert called == []  # the caller runs it itself
