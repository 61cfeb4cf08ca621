"""Failfast and failsafe: one attempt; the error goes to the caller, or is swallowed."""

from __future__ import annotations

import logging
from typing import Any, Sequence

from govrpc.cluster.base import ClusterInvoker
from govrpc.cluster.directory import Directory
from govrpc.cluster.drive import drive
from govrpc.cluster.loadbalance import LoadBalancer
from govrpc.cluster.policy import CallState, Return, Step
from govrpc.invocation import Invocation, Invoker
from govrpc.options import Option
from govrpc.url import URL

__all__ = ["FailfastClusterInvoker", "FailsafeClusterInvoker"]

log = logging.getLogger("govrpc.cluster")


class FailfastClusterInvoker(ClusterInvoker):
    """One attempt on one provider; any error goes to the caller at once (non-idempotent writes)."""

    def do_invoke(self, invocation: Invocation, invokers: Sequence[Invoker]) -> Any:
        return self.call(self.loadbalance.select(invokers, invocation), invocation)


class FailsafeClusterInvoker(ClusterInvoker):
    """One attempt; any exception (also a business one) is logged and ``failsafe.default`` returned.

    ``failsafe.default`` is JSON (default null). For calls whose failure must
    not disturb the caller: audit logs, statistics, best-effort notifications.
    """

    DEFAULT_VALUE = Option.json("failsafe.default", doc="the value returned instead of any error (JSON)")
    options = (DEFAULT_VALUE,)

    def __init__(self, directory: Directory, loadbalance: LoadBalancer, url: URL) -> None:
        super().__init__(directory, loadbalance, url)
        self.default = self.DEFAULT_VALUE.read(url)

    def invoke(self, invocation: Invocation) -> Any:
        try:
            invokers = self.list(invocation)
        except Exception as exc:  # noqa: BLE001 - "no provider" is swallowed too
            return drive(self, CallState(invocation), self.unlisted(invocation, exc))
        return self.do_invoke(invocation, invokers)

    def do_invoke(self, invocation: Invocation, invokers: Sequence[Invoker]) -> Any:
        return drive(self, CallState(invocation, invokers))

    def decide(self, state: CallState) -> Step:
        """One attempt; any failure becomes the default."""
        outcome = state.outcome
        if outcome is not None and outcome.exception is not None:
            return self.unlisted(state.invocation, outcome.exception)
        return super().decide(state)

    def unlisted(self, invocation: Invocation, exc: BaseException) -> Step:
        log.warning("failsafe: %s failed and returns the default: %s: %s", invocation, type(exc).__name__, exc)
        return Return(self.default)
