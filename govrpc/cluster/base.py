"""The cluster invoker's frame: list, fail if empty, apply the strategy."""

from __future__ import annotations

import abc
from typing import Any, Sequence

from govrpc.cluster.directory import Directory
from govrpc.cluster.loadbalance import LoadBalancer
from govrpc.exceptions import NoProviderError
from govrpc.invocation import Invocation, Invoker
from govrpc.url import URL

__all__ = ["ClusterInvoker"]


class ClusterInvoker(Invoker):
    """Makes many providers look like one (group ``govrpc.cluster``, default ``failover``).

    Contract: one instance per reference; thread-safe; ``invoke`` lists the
    directory's routed invokers, raises ``NoProviderError`` when there are none,
    and otherwise hands them to ``do_invoke`` with the load balancer.
    Options are read from the reference's consumer ``url`` (``retries``, ...).
    """

    def __init__(self, directory: Directory, loadbalance: LoadBalancer, url: URL) -> None:
        self.directory = directory
        self.loadbalance = loadbalance
        self.url = url

    def invoke(self, invocation: Invocation) -> Any:
        invokers = self.directory.list(invocation)
        if not invokers:
            raise NoProviderError(
                f"no provider for {invocation} in the registry (after routing)", invocation=invocation)
        return self.do_invoke(invocation, invokers)

    @abc.abstractmethod
    def do_invoke(self, invocation: Invocation, invokers: Sequence[Invoker]) -> Any:
        """Apply the strategy to a non-empty list."""

    @property
    def available(self) -> bool:
        return any(i.available for i in self.directory.invokers)

    def close(self) -> None:
        self.directory.close()
