"""Load balancers: pick one invoker among the routed ones (group ``govrpc.loadbalance``).

Everything a pick needs is computed once per provider list (weights after
warm-up, cumulative weights, round-robin wheel, stats slots) and cached by the
list's identity, so a pick is a few C-level operations. Lists seen recently
(the directory's snapshot, failover's "not tried yet" lists) keep their own
table, so a retry does not reset the main list's state. While a provider
warms up, its table is rebuilt at most once a second.
"""

from __future__ import annotations

import abc
import bisect
import itertools
import math
import operator
import random
import threading
import time
from typing import Callable, ClassVar, Generic, Sequence, TypeVar

from govrpc.cluster.stats import ProviderState, stats_of
from govrpc.invocation import Invocation, Invoker
from govrpc.options import Option
from govrpc.url import URL

__all__ = [
    "LeastActiveLoadBalancer",
    "LoadBalancer",
    "RandomLoadBalancer",
    "RoundRobinLoadBalancer",
    "ShortestResponseLoadBalancer",
    "StickyLoadBalancer",
    "WeightTable",
    "weight_of",
]

INF = float("inf")
WARMUP_REFRESH = 1.0   # seconds between weight recomputations while a provider warms up
_TABLES_KEPT = 16      # per balancer: the directory's list plus a few retry lists


def weight_of(invoker: Invoker, now: float | None = None) -> int:
    """The provider's weight after warm-up at wall-clock ``now`` (default: now)."""
    return stats_of(invoker).effective_weight(time.time() if now is None else now)


class WeightTable:
    """Weights of one provider list, precomputed: a weighted random index costs one bisect."""

    __slots__ = ("invokers", "stats", "weights", "cumulative", "total", "uniform", "expires", "n")

    def __init__(self, invokers: Sequence[Invoker]) -> None:
        now = time.time()
        self.invokers = invokers
        self.n = len(invokers)
        self.stats: list[ProviderState] = [stats_of(i) for i in invokers]
        self.weights = [s.effective_weight(now) for s in self.stats]
        self.total = sum(self.weights)
        # all equal (or all zero: nobody would be picked, so treat them alike)
        self.uniform = self.total <= 0 or len(set(self.weights)) == 1
        self.cumulative = list(itertools.accumulate(self.weights))
        warming = [u for u in (s.warm_until() for s in self.stats) if u > now]
        self.expires = min(min(warming), now + WARMUP_REFRESH) if warming else INF

    def fresh(self) -> bool:
        return self.expires == INF or time.time() < self.expires

    def random_index(self) -> int:
        if self.uniform:
            return int(random.random() * self.n)
        return bisect.bisect_right(self.cumulative, random.random() * self.total)


T = TypeVar("T", bound=WeightTable)


class _TableCache(Generic[T]):
    """The last table used, plus a few recent ones keyed by the list's members."""

    def __init__(self, build: Callable[[Sequence[Invoker]], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._tables: dict[tuple[Invoker, ...], T] = {}
        self.last: T | None = None

    def get(self, invokers: Sequence[Invoker]) -> T:
        table = self.last
        if table is not None and table.invokers is invokers and table.n == len(invokers) and table.fresh():
            return table
        key = tuple(invokers)
        with self._lock:
            table = self._tables.get(key)
            if table is None or not table.fresh():
                if len(self._tables) >= _TABLES_KEPT:
                    self._tables.clear()
                table = self._tables[key] = self._build(invokers)
            table.invokers = invokers
            self.last = table
        return table


class LoadBalancer(abc.ABC):
    """Picks one of the invokers for a call (group ``govrpc.loadbalance``, default ``random``).

    Contract: one instance per reference (or per method configuration);
    thread-safe; pure and non-blocking, so the sync and asyncio paths share it;
    ``invokers`` is never empty and is not mutated after it is passed (balancers
    cache per-list tables by identity). Options are read from the consumer
    ``url`` in ``__init__``, each through an ``Option`` the class declares in
    ``options`` (``govrpc.options``), so configurators can set them too; a bad
    value raises ``ConfigurationError`` there.
    """

    options: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, url: URL | None = None) -> None:
        self.url = url

    @abc.abstractmethod
    def select(self, invokers: Sequence[Invoker], invocation: Invocation) -> Invoker:
        """One of ``invokers``."""


class RandomLoadBalancer(LoadBalancer):
    """Weighted random: one bisect over precomputed cumulative weights."""

    def __init__(self, url: URL | None = None) -> None:
        super().__init__(url)
        self._tables: _TableCache[WeightTable] = _TableCache(WeightTable)

    def select(self, invokers: Sequence[Invoker], invocation: Invocation) -> Invoker:
        if len(invokers) == 1:
            return invokers[0]
        return invokers[self._tables.get(invokers).random_index()]


class _Wheel(WeightTable):
    """Smooth weighted round-robin (nginx): the sequence of one period, computed lazily.

    The sequence repeats every ``sum(weights) / gcd(weights)`` picks; each entry
    is computed once (O(n)) and then read (O(1)). Periods longer than
    ``MAX_PERIOD`` are not stored: each pick then costs O(n) under a lock.
    """

    __slots__ = ("sequence", "current", "period", "counter", "lock", "memo")
    MAX_PERIOD = 1_000_000

    def __init__(self, invokers: Sequence[Invoker]) -> None:
        super().__init__(invokers)
        weights = self.weights if not self.uniform else [1] * self.n
        if self.uniform:
            self.weights = weights
            self.total = self.n
        divisor = math.gcd(*weights) or 1
        self.period = self.total // divisor
        self.memo = self.period <= self.MAX_PERIOD
        self.sequence: list[int] = []
        self.current = [0] * self.n
        self.counter = itertools.count()
        self.lock = threading.Lock()

    def _step(self) -> int:
        current, weights = self.current, self.weights
        best = 0
        for i, w in enumerate(weights):
            current[i] += w
            if current[i] > current[best]:
                best = i
        current[best] -= self.total
        return best

    def pick(self) -> int:
        if self.uniform:
            return next(self.counter) % self.n
        if not self.memo:
            with self.lock:
                return self._step()
        t = next(self.counter) % self.period
        sequence = self.sequence
        if t < len(sequence):
            return sequence[t]
        with self.lock:
            while len(sequence) <= t:
                sequence.append(self._step())
            return sequence[t]


class RoundRobinLoadBalancer(LoadBalancer):
    """Smooth weighted round-robin: weights 5, 1, 1 give ``a a b a c a a``, then again."""

    def __init__(self, url: URL | None = None) -> None:
        super().__init__(url)
        self._tables: _TableCache[_Wheel] = _TableCache(_Wheel)

    def select(self, invokers: Sequence[Invoker], invocation: Invocation) -> Invoker:
        if len(invokers) == 1:
            return invokers[0]
        return invokers[self._tables.get(invokers).pick()]


class _ActiveTable(WeightTable):
    __slots__ = ("inflight",)

    def __init__(self, invokers: Sequence[Invoker]) -> None:
        super().__init__(invokers)
        # each provider's in-flight list: ``map(len, ...)`` gathers every count in one C-level pass
        self.inflight = [s.inflight for s in self.stats]


class LeastActiveLoadBalancer(LoadBalancer):
    """Fewest in-flight calls (counted by the cluster layer); ties by weighted random.

    Fast path: a provider drawn by weight that has nothing in flight is one of
    the least active (counts are never negative), and rejection sampling keeps
    the choice weighted among them. When a few draws find none idle (every
    provider busy), lists of up to ``EXACT_UP_TO`` providers are scanned whole
    (exact); longer ones take the least active of ``SAMPLES`` weighted draws, the
    power-of-d-choices rule Envoy's least-request balancer uses, which keeps a pick
    O(1) under overload (an exact scan of 100 providers costs 5-8 µs in Python).
    """

    IDLE_DRAWS = 3
    EXACT_UP_TO = 32
    SAMPLES = 4

    def __init__(self, url: URL | None = None) -> None:
        super().__init__(url)
        self._tables: _TableCache[_ActiveTable] = _TableCache(_ActiveTable)

    def select(self, invokers: Sequence[Invoker], invocation: Invocation) -> Invoker:
        if len(invokers) == 1:
            return invokers[0]
        table = self._tables.get(invokers)
        inflight, weights = table.inflight, table.weights
        if table.n > self.EXACT_UP_TO:
            best, fewest = 0, -1
            for _ in range(self.SAMPLES):
                i = table.random_index()
                active = len(inflight[i])
                if not active and weights[i] > 0:
                    return invokers[i]
                if fewest < 0 or active < fewest:
                    best, fewest = i, active
            return invokers[best]
        for _ in range(self.IDLE_DRAWS):
            i = table.random_index()
            if not inflight[i] and weights[i] > 0:
                return invokers[i]
        counts = list(map(len, inflight))
        least = min(counts)
        if counts.count(least) == 1:
            return invokers[counts.index(least)]
        # ties: weighted random among them; draw over all and keep a tie (cheap when ties are many)
        for _ in range(8):
            i = table.random_index()
            if counts[i] == least and weights[i] > 0:
                return invokers[i]
        tied = list(itertools.compress(range(table.n), map(least.__eq__, counts)))
        tied_weights = [weights[i] for i in tied]
        if sum(tied_weights) <= 0:
            return invokers[random.choice(tied)]
        return invokers[random.choices(tied, tied_weights)[0]]


class ShortestResponseLoadBalancer(LoadBalancer):
    """Latency-aware: power of two choices on EWMA response time × (in flight + 1) / weight.

    Two providers are drawn by weight; one never measured, or not called for
    ``shortestresponse.reprobe`` seconds (default 10), is taken so its figure
    is refreshed; otherwise the one with the lower score wins.
    """

    REPROBE = Option.seconds("shortestresponse.reprobe", 10.0, doc="seconds after which a provider is measured again")
    options = (REPROBE,)

    def __init__(self, url: URL | None = None) -> None:
        super().__init__(url)
        self.reprobe: float = self.REPROBE.read(url)
        self._tables: _TableCache[WeightTable] = _TableCache(WeightTable)

    def select(self, invokers: Sequence[Invoker], invocation: Invocation) -> Invoker:
        n = len(invokers)
        if n == 1:
            return invokers[0]
        table = self._tables.get(invokers)
        i = table.random_index()
        j = table.random_index()
        if i == j:
            j = (i + 1 + int(random.random() * (n - 1))) % n
        a, b = table.stats[i], table.stats[j]
        stale = time.monotonic() - self.reprobe
        if not a.ewma or a.last_pick < stale:
            return invokers[i]
        if not b.ewma or b.last_pick < stale:
            return invokers[j]
        score_a = a.ewma * (len(a.inflight) + 1) * (table.weights[j] or 1)
        score_b = b.ewma * (len(b.inflight) + 1) * (table.weights[i] or 1)
        return invokers[i] if score_a <= score_b else invokers[j]


class _MemberTable(WeightTable):
    __slots__ = ("members",)

    def __init__(self, invokers: Sequence[Invoker]) -> None:
        super().__init__(invokers)
        self.members = frozenset(invokers)


class StickyLoadBalancer(LoadBalancer):
    """Keep calling the provider picked last while it is listed, available and not failing.

    A provider is left after a provider failure (its consecutive failure
    count is not zero); a new one is then picked by weighted random, among
    the providers that are not failing when there are any.
    """

    def __init__(self, url: URL | None = None) -> None:
        super().__init__(url)
        self._tables: _TableCache[_MemberTable] = _TableCache(_MemberTable)
        self._current: Invoker | None = None

    def select(self, invokers: Sequence[Invoker], invocation: Invocation) -> Invoker:
        table = self._tables.get(invokers)
        current = self._current
        if (current is not None and current in table.members and current.available
                and not stats_of(current).consecutive_failures):
            return current
        picked = invokers[table.random_index()]
        if stats_of(picked).consecutive_failures:  # prefer one that is not failing
            healthy = [i for i, st in zip(invokers, table.stats) if not st.consecutive_failures and i.available]
            if healthy:
                picked = healthy[int(random.random() * len(healthy))]
        self._current = picked
        return picked


