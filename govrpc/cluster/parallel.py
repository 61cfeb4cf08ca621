"""Parallel calls: forking (several providers, first success wins) and broadcast (all of them).

Each strategy decides (``decide``: fan out, then what the branches' results
mean); the driver runs the branches (``drive.py``: a shared, bounded thread pool,
each under a copy of the caller's context; ``govrpc.aio.cluster``: tasks), all
within the call's one deadline.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from govrpc.cluster.base import ClusterInvoker
from govrpc.cluster.directory import Directory
from govrpc.cluster.drive import drive
from govrpc.cluster.loadbalance import LoadBalancer
from govrpc.cluster.policy import Attempt, CallState, FanOut, Return, Step, give_up
from govrpc.exceptions import CallTimeoutError, GovRpcError
from govrpc.invocation import Invocation, Invoker, Result
from govrpc.options import Option
from govrpc.url import URL

__all__ = ["BroadcastClusterInvoker", "ForkingClusterInvoker"]

log = logging.getLogger("govrpc.cluster")

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
        return drive(self, CallState(invocation, invokers))

    def decide(self, state: CallState) -> Step:
        """Fan out to ``forks`` providers (one: a plain attempt); the first success wins."""
        invocation = state.invocation
        if state.outcome is not None:  # a single attempt
            return super().decide(state)
        if state.branches:
            return self._ended(invocation, state.branches)
        chosen: list[Invoker] = []
        left = list(state.invokers)
        while left and len(chosen) < self.forks:
            invoker = self.loadbalance.select(left, invocation)
            chosen.append(invoker)
            left = [i for i in left if i is not invoker]  # a new list: balancers cache by identity
        if len(chosen) == 1:
            return Attempt(chosen[0])
        return FanOut(chosen, first=True)

    @staticmethod
    def _ended(invocation: Invocation, branches: list[tuple[Invoker, Result | None]]) -> Step:
        addresses = ", ".join(i.url.address for i, _ in branches)
        last: BaseException | None = None
        for _, result in branches:
            if result is None:
                continue
            if result.exception is None:
                return Return(result.value)
            last = result.exception
        if last is None or any(result is None for _, result in branches):
            return give_up(CallTimeoutError(f"{invocation}: deadline passed waiting for forked calls to "
                                            f"{addresses}", invocation=invocation), last)
        return give_up(_with_addresses(last, invocation, f"all {len(branches)} forked calls failed "
                                                         f"[{addresses}]"), last)


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
        return drive(self, CallState(invocation, invokers))

    def decide(self, state: CallState) -> Step:
        """Fan out to every provider; then the share of failures decides."""
        invocation = state.invocation
        if not state.branches:
            return FanOut(state.invokers, first=False)
        failed: list[tuple[Invoker, BaseException]] = []
        value: Any = None
        for invoker, result in state.branches:
            if result is None:
                failed.append((invoker, CallTimeoutError(f"{invocation}: no answer from {invoker.url.address} "
                                                         f"before the deadline", invocation=invocation)))
            elif result.exception is None:
                value = result.value
            else:
                failed.append((invoker, result.exception))
        if not failed:
            return Return(value)
        invokers = state.branches
        share = 100.0 * len(failed) / len(invokers)
        if self.fail_percent is None or share >= self.fail_percent:
            addresses = ", ".join(i.url.address for i, _ in failed)
            first = failed[0][1]
            return give_up(_with_addresses(first, invocation, f"{len(failed)} of {len(invokers)} providers "
                                                              f"failed [{addresses}]"), first)
        log.warning("broadcast %s: %d of %d providers failed (under broadcast.fail.percent=%s): %s",
                    invocation, len(failed), len(invokers), self.fail_percent,
                    ", ".join(f"{i.url.address}: {e}" for i, e in failed))
        return Return(value)
