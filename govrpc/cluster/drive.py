"""The sync driver: carries out a strategy's steps (``policy.py``) on the caller's thread.

Attempts are ``ClusterInvoker.call``; waits are ``time.sleep``; a fan-out runs its
branches on one shared, bounded thread pool, each under a copy of the caller's
context and a ``CancelScope``, all within the call's one deadline: branches still
running when it ends (or when a forking branch won) have their RPCs cancelled.
The asyncio twin is ``govrpc.aio.cluster``.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import threading
import time
from typing import TYPE_CHECKING, Any

from govrpc.cluster.policy import Attempt, CallState, FanOut, GiveUp, Return, Step, Wait
from govrpc.context import CancelScope, cancel_scope
from govrpc.invocation import Invocation, Invoker, Result

if TYPE_CHECKING:
    from govrpc.cluster.base import ClusterInvoker

__all__ = ["POOL_SIZE", "drive", "record_branches", "wait_time"]

POOL_SIZE = 64
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = concurrent.futures.ThreadPoolExecutor(POOL_SIZE, thread_name_prefix="govrpc-parallel")
    return _pool


def wait_time(invocation: Invocation) -> float | None:
    """Seconds to wait for branches: what is left of the deadline (None: no deadline at all)."""
    remaining = invocation.remaining()
    return None if remaining == float("inf") else max(remaining, 0.0)


def drive(cluster: ClusterInvoker, state: CallState, step: Step | None = None) -> Any:
    """Carry out ``cluster.decide(state)`` steps from ``step`` (default: the first decision)
    until the strategy returns (the value) or gives up (raised)."""
    invocation = state.invocation
    if step is None:
        step = cluster.decide(state)
    while True:
        kind = type(step)
        if kind is Attempt:
            invoker = step.invoker  # type: ignore[attr-defined]
            try:
                outcome = Result(cluster.call(invoker, cluster.for_attempt(invocation)))
            except Exception as exc:  # noqa: BLE001 - the strategy decides what a failure means
                outcome = Result(exception=exc)
            state.record(invoker, outcome)
        elif kind is Wait:
            time.sleep(step.seconds)  # type: ignore[attr-defined]
            state.waited = True
        elif kind is FanOut:
            state.branches = _fan_out(cluster, step, invocation)  # type: ignore[arg-type]
        elif kind is Return:
            return step.value  # type: ignore[attr-defined]
        elif kind is GiveUp:
            raise step.error  # type: ignore[attr-defined]
        else:
            raise TypeError(f"{type(cluster).__name__}.decide returned {step!r}, not a Step")
        step = cluster.decide(state)


def record_branches(done: Any, index: dict[Any, int], results: list[Result | None]) -> bool:
    """Put the outcome of each finished branch (a future or task) in its place; True if one succeeded."""
    won = False
    for future in done:
        error = future.exception()
        results[index[future]] = Result(future.result()) if error is None else Result(exception=error)
        won = won or error is None
    return won


def _branch(cluster: ClusterInvoker, invoker: Invoker, invocation: Invocation, scope: CancelScope) -> Any:
    with cancel_scope(scope):
        return cluster.call(invoker, invocation)


def _fan_out(cluster: ClusterInvoker, step: FanOut, invocation: Invocation) -> list[tuple[Invoker, Result | None]]:
    pool = _executor()
    scopes = [CancelScope() for _ in step.invokers]
    futures = [pool.submit(contextvars.copy_context().run, _branch, cluster, invoker, invocation, scope)
               for invoker, scope in zip(step.invokers, scopes)]
    index = {future: i for i, future in enumerate(futures)}
    results: list[Result | None] = [None] * len(futures)
    pending = set(futures)
    when = concurrent.futures.FIRST_COMPLETED if step.first else concurrent.futures.ALL_COMPLETED
    try:
        while pending:
            done, pending = concurrent.futures.wait(pending, timeout=wait_time(invocation), return_when=when)
            if not done:
                break
            if record_branches(done, index, results) and step.first:
                break
    finally:
        for future in pending:
            if not future.cancel():  # running: cancel its RPC (the transport registered it)
                scopes[index[future]].cancel()
    return list(zip(step.invokers, results))
