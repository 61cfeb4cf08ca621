"""The asyncio driver: carries out a strategy's steps (``govrpc.cluster.policy``) on the loop.

The strategy object is the very one a ``Client`` would use (``ConfiguredClusterInvoker``
and its ``ClusterInvoker``s: directory, routers, balancer, retry budget, outlier
ejection, provider state); only carrying out differs from ``govrpc.cluster.drive``:
attempts are awaited (``acall``), waits are ``asyncio.sleep``, a fan-out's branches
are tasks (each with a copy of the caller's context), and branches still running
when a forking branch wins or the deadline passes are cancelled, which cancels their RPCs.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Sequence

from govrpc.cluster.base import ClusterInvoker
from govrpc.cluster.configured import ConfiguredClusterInvoker
from govrpc.cluster.drive import record_branches, wait_time
from govrpc.cluster.failcache import FailcacheClusterInvoker
from govrpc.cluster.failover import FailoverClusterInvoker
from govrpc.cluster.policy import Attempt, CallState, FanOut, GiveUp, Return, Step, Wait
from govrpc.cluster.stats import stats_of
from govrpc.context import current_recorder
from govrpc.exceptions import CallTimeoutError, CancelledError, GovRpcError, RateLimitedError
from govrpc.invocation import Invocation, Invoker, Result

__all__ = ["AsyncClusterInvoker", "acall", "adrive"]

_monotonic = time.monotonic


async def acall(cluster: ClusterInvoker, invoker: Invoker, invocation: Invocation) -> Any:
    """The twin of ``ClusterInvoker.call``: ``await invoker.ainvoke(invocation)``, recording the
    in-flight count, latency and failures in the same ``ProviderState``."""
    if invocation.deadline <= _monotonic():
        raise CallTimeoutError(f"{invocation}: deadline passed before calling {invoker.url.address}",
                               invocation=invocation)
    stats = getattr(invoker, "state", None) or stats_of(invoker)
    recorder = current_recorder()
    if recorder is not None:
        recorder.chose(invocation, type(cluster.loadbalance).__name__, invoker.url.address)
    stats.inflight.append(None)  # ProviderState.begin written out, as ClusterInvoker.call does
    started = _monotonic()
    try:
        result = await invoker.ainvoke(invocation)  # type: ignore[attr-defined]
    except GovRpcError as exc:
        failed = None if isinstance(exc, (CancelledError, RateLimitedError)) else exc.retryable
        stats.end(started, failed)
        if failed:
            cluster.outlier.on_failure(invoker, stats, len(cluster.directory.invokers))
        raise
    except asyncio.CancelledError:  # our caller gave up: says nothing about the provider
        stats.end(started, None)
        raise
    except BaseException:
        stats.end(started, False)
        raise
    stats.end(started, False)
    return result


async def adrive(cluster: ClusterInvoker, state: CallState, step: Step | None = None) -> Any:
    """Carry out ``cluster.decide(state)`` steps until the strategy returns or gives up."""
    invocation = state.invocation
    if step is None:
        step = cluster.decide(state)
    while True:
        kind = type(step)
        if kind is Attempt:
            invoker = step.invoker  # type: ignore[attr-defined]
            try:
                outcome = Result(await acall(cluster, invoker, cluster.for_attempt(invocation)))
            except Exception as exc:  # noqa: BLE001 - the strategy decides what a failure means
                outcome = Result(exception=exc)
            state.record(invoker, outcome)
        elif kind is Wait:
            await asyncio.sleep(step.seconds)  # type: ignore[attr-defined]
            state.waited = True
        elif kind is FanOut:
            state.branches = await _fan_out(cluster, step, invocation)  # type: ignore[arg-type]
        elif kind is Return:
            return step.value  # type: ignore[attr-defined]
        elif kind is GiveUp:
            raise step.error  # type: ignore[attr-defined]
        else:
            raise TypeError(f"{type(cluster).__name__}.decide returned {step!r}, not a Step")
        step = cluster.decide(state)


_FAILOVER_FIRST = FailoverClusterInvoker.do_invoke


async def _failover(cluster: FailoverClusterInvoker, invocation: Invocation, invokers: Sequence[Invoker]) -> Any:
    """``FailoverClusterInvoker.do_invoke`` awaited: a fresh call's first steps (attempt one
    provider; on success, return) without a state object; a failure goes on in ``adrive``."""
    invoker = cluster.loadbalance.select(invokers, invocation)
    try:
        result = await acall(cluster, invoker, invocation if cluster.attempt_timeout is None
                             else cluster.for_attempt(invocation))
    except GovRpcError as exc:
        return await adrive(cluster, CallState(invocation, invokers, [invoker], Result(exception=exc)))
    budget = cluster.budget
    if budget.tokens < budget.max_tokens:  # a full bucket (the usual case) has nothing to add
        budget.on_success()
    return result


async def _fan_out(cluster: ClusterInvoker, step: FanOut,
                   invocation: Invocation) -> list[tuple[Invoker, Result | None]]:
    tasks = [asyncio.ensure_future(acall(cluster, invoker, invocation)) for invoker in step.invokers]
    index = {task: i for i, task in enumerate(tasks)}
    results: list[Result | None] = [None] * len(tasks)
    pending = set(tasks)
    when = asyncio.FIRST_COMPLETED if step.first else asyncio.ALL_COMPLETED
    try:
        while pending:
            done, pending = await asyncio.wait(pending, timeout=wait_time(invocation), return_when=when)
            if not done:
                break
            if record_branches(done, index, results) and step.first:
                break
    finally:
        for task in pending:
            task.cancel()  # cancels its RPC
        if pending:
            await asyncio.wait(pending)  # their ProviderState is settled before the call returns
    return list(zip(step.invokers, results))


def _on_loop(cluster: ClusterInvoker, loop: asyncio.AbstractEventLoop) -> Callable[[Invoker, Invocation], Any]:
    """Failcache's re-send for its timer thread: the attempt is awaited on the loop, the thread waits."""
    def send(invoker: Invoker, invocation: Invocation) -> Any:
        if loop.is_closed():
            raise CallTimeoutError(f"{invocation}: the event loop of its AsyncClient is closed",
                                   invocation=invocation)
        future = asyncio.run_coroutine_threadsafe(acall(cluster, invoker, invocation), loop)
        return future.result(max(invocation.remaining(), 0.0) + 1.0)
    return send


class AsyncClusterInvoker(Invoker):
    """A reference's cluster awaited: the method's strategy (shared with the sync side), driven here."""

    def __init__(self, configured: ConfiguredClusterInvoker) -> None:
        self.configured = configured
        self.url = configured.url

    def invoke(self, invocation: Invocation) -> Any:
        raise TypeError("AsyncClusterInvoker is awaited: use ainvoke")

    async def ainvoke(self, invocation: Invocation) -> Any:
        cluster = self.configured.cluster_for(invocation.method)
        if type(cluster) is FailcacheClusterInvoker and cluster.send == cluster.call:
            cluster.send = _on_loop(cluster, asyncio.get_running_loop())
        try:
            invokers = cluster.list(invocation)
        except Exception as exc:  # noqa: BLE001 - no provider: the strategy says what that becomes
            return await adrive(cluster, CallState(invocation), cluster.unlisted(invocation, exc))
        if type(cluster).do_invoke is _FAILOVER_FIRST:
            return await _failover(cluster, invocation, invokers)  # type: ignore[arg-type]
        return await adrive(cluster, CallState(invocation, invokers))

    @property
    def available(self) -> bool:
        return self.configured.available

    def close(self) -> None:
        self.configured.close()
