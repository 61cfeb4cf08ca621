"""The cluster invoker's frame: list, drop ejected providers and open circuits, fail if empty, apply
the strategy."""

from __future__ import annotations

import abc
import time
from concurrent.futures import Future
from typing import Any, Callable, ClassVar, Sequence

from govrpc.cluster.directory import Directory
from govrpc.cluster.loadbalance import LoadBalancer
from govrpc.cluster.drive import drive
from govrpc.cluster.outlier import OutlierDetector
from govrpc.cluster.policy import Attempt, CallState, GiveUp, Return, Step
from govrpc.cluster.stats import stats_of
from govrpc.context import current_recorder
from govrpc.degrade.breaker import BREAKER_OPTIONS, NOT_CLOSED
from govrpc.exceptions import (
    CallTimeoutError,
    CancelledError,
    CircuitOpenError,
    GovRpcError,
    NoProviderError,
    RateLimitedError,
)
from govrpc.invocation import Invocation, Invoker, Result
from govrpc.options import Option
from govrpc.url import URL

__all__ = ["ClusterInvoker"]

_monotonic = time.monotonic  # bound once: read on every call


class ClusterInvoker(Invoker):
    """Makes many providers look like one (group ``govrpc.cluster``, default ``failover``).

    Contract: one instance per reference (or per method configuration);
    thread-safe; ``invoke`` lists the directory's routed invokers, drops ejected
    ones, raises ``NoProviderError`` when none is left, and otherwise hands them
    to ``do_invoke`` with the load balancer. Strategies call providers through
    ``call``, which records the statistics balancers and ejection read.
    Options are read from the consumer ``url`` in ``__init__``, each through the
    ``Option`` the class declares in ``options`` (``govrpc.options``), which is
    also how a configurator checks them; the outlier options come with every strategy, and the
    breaker options too (a method with its own breaker settings gets its own invoker, which
    leaves providers whose circuit is open for that method out of ``list``).
    """

    options: ClassVar[tuple[Option, ...]] = (*OutlierDetector.options, *BREAKER_OPTIONS)
    breaking: bool = False  # class defaults: a strategy that skips __init__ still lists
    _kept: tuple[Sequence[Invoker], list[Invoker]] | None = None

    def __init__(self, directory: Directory, loadbalance: LoadBalancer, url: URL) -> None:
        self.directory = directory
        self.loadbalance = loadbalance
        self.url = url
        self.outlier = OutlierDetector.from_url(url)
        # circuit breakers configured for these calls: only then does ``list`` look at them
        self.breaking = url.params.get("breaker", "").lower() != "off" and any(
            k.startswith("breaker.") or k == "breaker" for k in url.params)
        self._kept = None

    def invoke(self, invocation: Invocation) -> Any:
        return self.do_invoke(invocation, self.list(invocation))

    def list(self, invocation: Invocation) -> Sequence[Invoker]:
        """The routed invokers, without ejected ones and those whose circuit breaker for the method
        is open; raises ``NoProviderError`` if none is listed, ``CircuitOpenError`` if all are open."""
        invokers = self.directory.list(invocation)
        if self.outlier.ejected:
            invokers = self.outlier.filter(invokers)
        recorder = current_recorder()
        if recorder is not None:  # a span records this call: say what routing left
            chain = self.directory.router_chain
            names = chain.names if chain is not None else ()
            recorder.listed(invocation, len(self.directory.invokers), len(invokers), names)
        if not invokers:
            raise NoProviderError(
                f"no provider for {invocation} in the registry (after routing)", invocation=invocation)
        if self.breaking and NOT_CLOSED[0]:  # some breaker of this process is open or half-open
            invokers = self._closed_circuits(invocation, invokers)
        return invokers

    def _closed_circuits(self, invocation: Invocation, invokers: Sequence[Invoker]) -> Sequence[Invoker]:
        method, now = invocation.method, _monotonic()
        kept = [i for i in invokers
                if (table := getattr(getattr(i, "state", None), "breaker", None)) is None
                or not table.blocks(method, now)]
        if not kept:
            addresses = ", ".join(i.url.address for i in invokers)
            recorder = current_recorder()
            if recorder is not None:
                recorder.event("govrpc.breaker.open", {"method": method, "skipped": addresses})
            raise CircuitOpenError(f"{invocation}: the circuit breaker is open on every provider [{addresses}]",
                                   invocation=invocation)
        if len(kept) == len(invokers):
            return invokers
        recorder = current_recorder()
        if recorder is not None:  # the call's span says why these providers were not candidates
            recorder.event("govrpc.breaker.open", {"method": method, "skipped": ", ".join(
                i.url.address for i in invokers if i not in kept)})
        last = self._kept
        if last is not None and last[0] is invokers and last[1] == kept:
            return last[1]  # the same list object: balancers keep their per-list tables by identity
        self._kept = (invokers, kept)
        return kept

    @abc.abstractmethod
    def do_invoke(self, invocation: Invocation, invokers: Sequence[Invoker]) -> Any:
        """Apply the strategy to a non-empty list."""

    def decide(self, state: CallState) -> Step:
        """The strategy's policy (``policy.py``): the next step of the call ``state`` describes.

        Pure (no waiting, no I/O): the sync driver (``drive.py``) and the asyncio one
        (``govrpc.aio.cluster``) carry it out. The default is one attempt, its outcome final.
        """
        outcome = state.outcome
        if outcome is None:
            return Attempt(self.loadbalance.select(state.invokers, state.invocation))
        return Return(outcome.value) if outcome.exception is None else GiveUp(outcome.exception)

    def unlisted(self, invocation: Invocation, exc: BaseException) -> Step:
        """What a call becomes when ``list`` failed (no provider): give up (failsafe returns its default)."""
        return GiveUp(exc)

    def future(self, invocation: Invocation, run: Callable[[Callable[[], Any]], Future[Any]]) -> Future[Any] | None:
        """Start the call without parking a thread while it is in flight, or None when the first
        step is not one attempt on a provider with a non-blocking call (the caller then runs
        ``invoke`` on a worker).

        The first attempt goes out as the transport's non-blocking call (``start``); its outcome is
        decided on gRPC's thread, and a step that would block (a pause, another attempt) is
        handed to ``run`` with the sync driver, never done on gRPC's thread.
        """
        state = CallState(invocation, self.list(invocation))
        step = self.decide(state)
        if type(step) is not Attempt:
            return None
        invoker = step.invoker
        start = getattr(invoker, "start", None)
        if start is None:
            return None
        recorder = current_recorder()
        if recorder is not None:
            recorder.chose(invocation, type(self.loadbalance).__name__, invoker.url.address)
        stats = getattr(invoker, "state", None) or stats_of(invoker)
        result: Future[Any] = Future()
        result.set_running_or_notify_cancel()
        began = stats.begin()

        def done(attempt: Future[Any]) -> None:
            exc = attempt.exception()
            # a flow-control refusal is the provider protecting itself, not a fault: not counted
            failed = None if isinstance(exc, RateLimitedError) else exc.retryable if isinstance(exc, GovRpcError) \
                else False
            stats.end(began, failed)
            if failed:
                self.outlier.on_failure(invoker, stats, len(self.directory.invokers))
            state.record(invoker, Result(exception=exc) if exc is not None else Result(attempt.result()))
            try:
                following = self.decide(state)
            except BaseException as error:  # noqa: BLE001 - the caller's future carries it
                result.set_exception(error)
                return
            if type(following) is Return:
                result.set_result(following.value)
            elif type(following) is GiveUp:
                result.set_exception(following.error)
            else:
                run(lambda: _settle(result, drive, self, state, following))

        try:
            start(invocation).add_done_callback(done)
        except BaseException:
            stats.end(began, None)
            raise
        return result

    def for_attempt(self, invocation: Invocation) -> Invocation:
        """The invocation one attempt sends (a strategy may give each attempt a deadline of its own)."""
        return invocation

    def call(self, invoker: Invoker, invocation: Invocation) -> Any:
        """``invoker.invoke(invocation)``, recording in-flight count, latency and failures."""
        if invocation.deadline <= _monotonic():  # our own lateness (a queued branch) is no provider failure
            raise CallTimeoutError(f"{invocation}: deadline passed before calling {invoker.url.address}",
                                   invocation=invocation)
        stats = getattr(invoker, "state", None) or stats_of(invoker)  # a directory's endpoint has one
        recorder = current_recorder()
        if recorder is not None:
            recorder.chose(invocation, type(self.loadbalance).__name__, invoker.url.address)
        stats.inflight.append(None)  # ProviderState.begin written out: a frame less per call
        started = _monotonic()
        try:
            result = invoker.invoke(invocation)
        except GovRpcError as exc:
            # a provider failure counts against it; a business error is an answer; a call we
            # cancelled ourselves (a losing forking branch) says nothing about the provider
            failed = None if isinstance(exc, (CancelledError, RateLimitedError)) else exc.retryable
            stats.end(started, failed)
            if failed:
                self.outlier.on_failure(invoker, stats, len(self.directory.invokers))
            raise
        except BaseException:
            stats.end(started, False)
            raise
        stats.end(started, False)
        return result

    @property
    def available(self) -> bool:
        return any(i.available for i in self.directory.invokers)

    def stop(self, successor: ClusterInvoker | None = None) -> None:
        """Release what the strategy itself holds (timers, queues); the directory stays.

        ``successor`` replaces this invoker after a configurator change: a strategy
        that holds calls (failcache) hands them over instead of giving them up.
        """

    def close(self) -> None:
        self.stop()
        self.directory.close()


def _settle(result: Future[Any], fn: Callable[..., Any], *args: Any) -> None:
    try:
        result.set_result(fn(*args))
    except BaseException as exc:  # noqa: BLE001 - the caller's future carries it
        result.set_exception(exc)
