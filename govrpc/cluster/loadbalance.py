"""Load balancers: pick one invoker among the routed ones (group ``govrpc.loadbalance``)."""

from __future__ import annotations

import abc
import bisect
import itertools
import random
from typing import Sequence

from govrpc.invocation import Invocation, Invoker
from govrpc.url import URL

__all__ = ["LoadBalancer", "RandomLoadBalancer", "weight_of"]


def weight_of(invoker: Invoker) -> int:
    """The provider's published ``weight`` (default 100)."""
    return invoker.url.get_int("weight", 100)


class LoadBalancer(abc.ABC):
    """Picks one of the invokers for a call (group ``govrpc.loadbalance``, default ``random``).

    Contract: one instance per reference; thread-safe; pure and non-blocking, so
    the sync and asyncio paths share it; ``invokers`` is never empty.
    """

    def __init__(self, url: URL | None = None) -> None:
        self.url = url

    @abc.abstractmethod
    def select(self, invokers: Sequence[Invoker], invocation: Invocation) -> Invoker:
        """One of ``invokers``."""


class RandomLoadBalancer(LoadBalancer):
    """Weighted random; cumulative weights are computed once per provider list."""

    def __init__(self, url: URL | None = None) -> None:
        super().__init__(url)
        self._cache: tuple[Sequence[Invoker], list[int] | None] = ((), None)

    def _cumulative(self, invokers: Sequence[Invoker]) -> list[int] | None:
        cached, cumulative = self._cache
        if cached is invokers:
            return cumulative
        weights = [weight_of(i) for i in invokers]
        cumulative = None if len(set(weights)) <= 1 else list(itertools.accumulate(weights))
        self._cache = (invokers, cumulative)
        return cumulative

    def select(self, invokers: Sequence[Invoker], invocation: Invocation) -> Invoker:
        if len(invokers) == 1:
            return invokers[0]
        cumulative = self._cumulative(invokers)
        if cumulative is None or cumulative[-1] <= 0:
            return invokers[random.randrange(len(invokers))]
        return invokers[bisect.bisect_right(cumulative, random.random() * cumulative[-1])]
