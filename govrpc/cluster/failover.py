"""Failover: on a failure that another provider may not have, try another one."""

from __future__ import annotations

import logging
from typing import Any, Sequence

from govrpc.cluster.base import ClusterInvoker
from govrpc.cluster.directory import Directory
from govrpc.cluster.loadbalance import LoadBalancer
from govrpc.exceptions import CallTimeoutError, ConfigurationError, GovRpcError
from govrpc.invocation import Invocation, Invoker
from govrpc.url import URL

__all__ = ["FailoverClusterInvoker"]

log = logging.getLogger("govrpc.cluster")


class FailoverClusterInvoker(ClusterInvoker):
    """Up to ``retries`` extra attempts (default 2), each on a provider not tried yet.

    Only failures marked ``retryable`` (transport failures, timeouts) move on;
    business exceptions go straight to the caller. Providers are listed again
    before each retry; all attempts share the call's deadline.
    """

    def __init__(self, directory: Directory, loadbalance: LoadBalancer, url: URL) -> None:
        super().__init__(directory, loadbalance, url)
        self.retries = url.get_int("retries", 2)
        if self.retries < 0:
            raise ConfigurationError(f"retries must be 0 or more, not {self.retries} ({url.path})")

    def do_invoke(self, invocation: Invocation, invokers: Sequence[Invoker]) -> Any:
        tried: list[Invoker] = []
        last: GovRpcError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                if invocation.remaining() <= 0:
                    raise CallTimeoutError(f"{invocation}: deadline passed after {attempt} attempt(s); "
                                           f"last error: {last}", invocation=invocation) from last
                invokers = [i for i in self.directory.list(invocation) if i not in tried]
                if not invokers:
                    break
            invoker = self.loadbalance.select(invokers, invocation)
            tried.append(invoker)
            try:
                return invoker.invoke(invocation)
            except GovRpcError as exc:
                if not exc.retryable:
                    raise
                last = exc
                log.debug("%s failed on %s (%s); %d attempt(s) left", invocation, invoker.url.address,
                          exc, self.retries - attempt)
        assert last is not None
        raise last
