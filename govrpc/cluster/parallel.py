"""Parallel calls: forking (several providers, first success wins) and broadcast (all of them).

Branches run on one shared, bounded thread pool, each under a copy of the
caller's context, all with the call's one deadline.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import logging
import threading
from typing import Any, Sequence

from govrpc.cluster.base import ClusterInvoker
from govrpc.cluster.directory import Directory
from govrpc.cluster.loadbalance import LoadBalancer
from govrpc.context import CancelScope, cancel_scope
from govrpc.exceptions import CallTimeoutError, GovRpcError
from govrpc.invocation import Invocation, Invoker
from govrpc.options import Option
from govrpc.url import URL

__all__ = ["BroadcastClusterInvoker", "ForkingClusterInvoker"]

log = logging.getLogger("govrpc.cluster")

_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
POOL_SIZE = 64


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = concurrent.futures.ThreadPoolExecutor(POOL_SIZE, thread_name_prefix="govrpc-parallel")
    return _pool


def _wait_time(invocation: Invocation) -> float | None:
    """Seconds to wait for branches: what is left of the deadline (None: no deadline at all)."""
    remaining = invocation.remaining()
    return None if remaining == float("inf") else max(remaining, 0.0)


def _with_addresses(exc: BaseException, invocation: Invocation, text: str) -> BaseException:
    """``exc``'s type with ``text`` (naming providers) as message; business errors stay as they are."""
    if not isinstance(exc, GovRpcError):
        return exc
    try:
        error = type(exc)(f"{invocation}: {text}; last error: {exc.message or exc}", invocation=invocation)
    except TypeError:
        return exc
    error.code = exc.code  # type: ignore[misc]
    return error


class ForkingClusterInvoker(ClusterInvoker):
    """``forks`` providers (default 2) called at once; the first success is returned.

    The other branches are cancelled: those not started yet never start, and
    the RPCs of those in flight are cancelled (through a ``CancelScope`` the
    transport registers them in). If every branch fails, the last error is raised,
    naming every provider tried. For reads where latency matters more than load.
    """

    FORKS = Option.integer("forks", 2, low=1, doc="providers called at once")
    options = (FORKS,)

    def __init__(self, directory: Directory, loadbalance: LoadBalancer, url: URL) -> None:
        super().__init__(directory, loadbalance, url)
        self.forks: int = self.FORKS.read(url)

    def do_invoke(self, invocation: Invocation, invokers: Sequence[Invoker]) -> Any:
        chosen: list[Invoker] = []
        left = list(invokers)
        while left and len(chosen) < self.forks:
            invoker = self.loadbalance.select(left, invocation)
            chosen.append(invoker)
            left = [i for i in left if i is not invoker]  # a new list: balancers cache by identity
        if len(chosen) == 1:
            return self.call(chosen[0], invocation)
        pool = _executor()
        scopes = {invoker: CancelScope() for invoker in chosen}
        futures = {pool.submit(contextvars.copy_context().run, self._branch, invoker, invocation, scopes[invoker]):
                   invoker for invoker in chosen}
        pending = set(futures)
        last: BaseException | None = None
        try:
            while pending:
                done, pending = concurrent.futures.wait(
                    pending, timeout=_wait_time(invocation), return_when=concurrent.futures.FIRST_COMPLETED)
                if not done:
                    raise CallTimeoutError(
                        f"{invocation}: deadline passed waiting for forked calls to "
                        f"{', '.join(i.url.address for i in chosen)}", invocation=invocation)
                for future in done:
                    error = future.exception()
                    if error is None:
                        return future.result()
                    last = error
        finally:
            for future in pending:
                if not future.cancel():  # running: cancel its RPC (the transport registered it)
                    scopes[futures[future]].cancel()
        assert last is not None
        addresses = ", ".join(i.url.address for i in chosen)
        raise _with_addresses(last, invocation, f"all {len(chosen)} forked calls failed [{addresses}]") from last

    def _branch(self, invoker: Invoker, invocation: Invocation, scope: CancelScope) -> Any:
        with cancel_scope(scope):
            return self.call(invoker, invocation)


class BroadcastClusterInvoker(ClusterInvoker):
    """Every provider is called (in parallel); the call fails when any provider fails.

    ``broadcast.fail.percent`` (0..100) relaxes that: the call fails only when
    at least that share of providers failed. Returns the value of the last
    provider, in list order, that succeeded. For cache refreshes and
    configuration pushes to every instance.
    """

    FAIL_PERCENT = Option.number("broadcast.fail.percent", None, low=0.0, high=100.0, low_open=True,
                                 expected="a percentage > 0 and <= 100",
                                 doc="share of failed providers that fails the call (unset: any)")
    options = (FAIL_PERCENT,)

    def __init__(self, directory: Directory, loadbalance: LoadBalancer, url: URL) -> None:
        super().__init__(directory, loadbalance, url)
        self.fail_percent: float | None = self.FAIL_PERCENT.read(url)

    def do_invoke(self, invocation: Invocation, invokers: Sequence[Invoker]) -> Any:
        pool = _executor()
        futures = [pool.submit(contextvars.copy_context().run, self.call, invoker, invocation)
                   for invoker in invokers]
        done, pending = concurrent.futures.wait(futures, timeout=_wait_time(invocation))
        for future in pending:
            future.cancel()
        failed: list[tuple[Invoker, BaseException]] = []
        value: Any = None
        for invoker, future in zip(invokers, futures):
            if future in pending:
                failed.append((invoker, CallTimeoutError(f"{invocation}: no answer from {invoker.url.address} "
                                                         f"before the deadline", invocation=invocation)))
                continue
            error = future.exception()
            if error is None:
                value = future.result()
            else:
                failed.append((invoker, error))
        if not failed:
            return value
        share = 100.0 * len(failed) / len(invokers)
        if self.fail_percent is None or share >= self.fail_percent:
            addresses = ", ".join(i.url.address for i, _ in failed)
            first = failed[0][1]
            raise _with_addresses(first, invocation, f"{len(failed)} of {len(invokers)} providers failed "
                                                     f"[{addresses}]") from first
        log.warning("broadcast %s: %d of %d providers failed (under broadcast.fail.percent=%s): %s",
                    invocation, len(failed), len(invokers), self.fail_percent,
                    ", ".join(f"{i.url.address}: {e}" for i, e in failed))
        return value
