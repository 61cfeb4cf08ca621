"""What a cluster strategy decides, apart from how it is carried out.

A strategy's ``decide(state)`` is pure policy, as tenacity's ``iter()`` is: it
reads what happened so far (a ``CallState``) and names the next step, one of

- ``Attempt(invoker)``: call this provider once;
- ``Wait(seconds)``: pause (failover's backoff), then decide again;
- ``FanOut(invokers, first)``: call these providers at once, stopping at the first
  success when ``first`` (forking) or waiting for all (broadcast);
- ``Return(value)`` or ``GiveUp(error)``: the call is over.

A driver carries the steps out: ``govrpc.cluster.drive`` with threads and
``time.sleep`` for ``Client``, ``govrpc.aio.cluster`` with tasks and
``asyncio.sleep`` for ``AsyncClient``. Both drive the same strategy object, so
balancer, retry budget, outlier ejection and provider state are shared, not copied.
"""

from __future__ import annotations

from typing import Any, Sequence

from govrpc.invocation import Invocation, Invoker, Result

__all__ = ["Attempt", "CallState", "FanOut", "GiveUp", "Return", "Step", "Wait", "give_up"]


class Step:
    """One thing a driver does next."""

    __slots__ = ()


class Attempt(Step):
    __slots__ = ("invoker",)

    def __init__(self, invoker: Invoker) -> None:
        self.invoker = invoker


class Wait(Step):
    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


class FanOut(Step):
    __slots__ = ("invokers", "first")

    def __init__(self, invokers: Sequence[Invoker], first: bool) -> None:
        self.invokers = tuple(invokers)
        self.first = first


class Return(Step):
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class GiveUp(Step):
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def give_up(error: BaseException, cause: BaseException | None = None) -> GiveUp:
    """``GiveUp(error)`` raised as ``raise error from cause`` would be (when they differ)."""
    if cause is not None and cause is not error:
        error.__cause__ = cause
        error.__suppress_context__ = True
    return GiveUp(error)


class CallState:
    """What a strategy knows of one call so far (tenacity's ``RetryCallState``).

    ``invokers`` were listed for the first step; ``tried`` are the providers attempted, in
    order; ``outcome`` is the last attempt's ``Result`` (None before the first);
    ``waited`` is True right after a ``Wait``; ``branches`` holds a fan-out's results in
    the order of its invokers (None for a branch that had not answered when it ended);
    ``mode`` is free for a strategy's own phase (failback's "retrying").
    """

    __slots__ = ("invocation", "invokers", "tried", "outcome", "waited", "branches", "mode")

    def __init__(self, invocation: Invocation, invokers: Sequence[Invoker] = (),
                 tried: list[Invoker] | None = None, outcome: Result | None = None) -> None:
        self.invocation = invocation
        self.invokers = invokers
        self.tried: list[Invoker] = tried if tried is not None else []
        self.outcome = outcome
        self.waited = False
        self.branches: list[tuple[Invoker, Result | None]] = []
        self.mode = ""

    def record(self, invoker: Invoker, outcome: Result) -> None:
        """An attempt on ``invoker`` ended with ``outcome`` (drivers call this)."""
        self.tried.append(invoker)
        self.outcome = outcome
        self.waited = False
