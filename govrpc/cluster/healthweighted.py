"""``healthweighted``: weighted random whose weights follow each provider's health.

A provider's weight (after warm-up) is multiplied by a health factor, recomputed at
most every ``healthweighted.refresh`` seconds (default 0.5) from what the consumer
measures and what the provider reports of itself (``ProviderState.health``, its
registry summary, when the reference watches them):

- its own verdict: a provider reporting NOT_SERVING gets the floor at once;
- its reported success rate, squared (a provider failing half its calls: 0.25);
- this consumer's failure streak against it: 1 / (1 + failures);
- its latency: (2 x the best EWMA among the providers + 5 ms) / its EWMA, at most 1 (up to
  twice the best plus a few milliseconds is jitter; 50 ms against 1 ms: 0.14).

- with ``healthweighted.orca = true``, its load as its ORCA reports say (gRFC A51/A58:
  the application's utilization, else the CPU's, plus the share of failed answers;
  ``govrpc.monitor.orca``): (lowest utilization among the providers + 0.02) / (its own + 0.02),
  at most 1, so a provider at 0.9 against one at 0.1 gets 0.13 of its weight. A report
  older than 10 s counts as none.

The factor never goes below ``healthweighted.floor`` (default 0.05): a sick provider
keeps a trickle of calls, so it can show it has recovered and climb back.
A stale or garbage summary counts as no summary.
"""

from __future__ import annotations

import time
from typing import Sequence

from govrpc.cluster.loadbalance import LoadBalancer, WeightTable, _TableCache
from govrpc.invocation import Invocation, Invoker
from govrpc.options import Option
from govrpc.url import URL

__all__ = ["HealthWeightedLoadBalancer", "LATENCY_SLACK", "LATENCY_TOLERANCE", "LOAD_SLACK", "ORCA_WEIGHING", "health_factor"]

LATENCY_TOLERANCE = 2.0
LATENCY_SLACK = 0.005  # seconds: sub-millisecond calls on a busy machine vary by more than 2x


ORCA_WEIGHING = Option.boolean("healthweighted.orca", False, per_method=False,
                               doc="true: healthweighted also weighs providers by their ORCA load reports")
LOAD_SLACK = 0.02  # utilization: an idle provider at 0.001 against one at 0.01 is not ten times lighter


def _fresh_load(state: object, now: float) -> float | None:
    load = getattr(state, "load", None)
    return load.utilization if load is not None and load.fresh(now) else None


def health_factor(state: object, best_ewma: float, now_wall: float, floor: float,
                  best_load: float | None = None, now: float = 0.0) -> float:
    """The factor (floor..1) of one provider's weight; see the module. ``best_load`` (the lowest
    fresh ORCA utilization among the providers, None: loads are not weighed) and ``now``
    (``time.monotonic()``) for the load factor."""
    factor = 1.0
    if best_load is not None:
        load = _fresh_load(state, now)
        if load is not None:
            factor *= min(1.0, (best_load + LOAD_SLACK) / (load + LOAD_SLACK))
    health = getattr(state, "health", None)
    if health is not None and health.fresh(now_wall):
        if not health.serving:
            return floor
        factor *= health.success_rate ** 2
    factor /= 1 + getattr(state, "consecutive_failures", 0)
    ewma = getattr(state, "ewma", 0.0)
    if ewma and best_ewma:  # up to twice the best, plus a few ms, is jitter, not sickness
        factor *= min(1.0, (LATENCY_TOLERANCE * best_ewma + LATENCY_SLACK) / ewma)
    return max(floor, min(1.0, factor))


def _not_serving(state: object, now_wall: float) -> bool:
    health = getattr(state, "health", None)
    return health is not None and not health.serving and health.fresh(now_wall)


class _HealthTable(WeightTable):
    __slots__ = ("factors",)

    def __init__(self, invokers: Sequence[Invoker], floor: float, refresh: float, orca: bool = False) -> None:
        super().__init__(invokers)
        now = time.time()
        # the best latency among those not reporting NOT_SERVING: a drained provider's old figure sets no bar
        samples = [s.ewma for s in self.stats if s.ewma and not _not_serving(s, now)]
        best = min(samples) if samples else 0.0
        best_load = mono = None
        if orca:
            mono = time.monotonic()
            loads = [u for s in self.stats if not _not_serving(s, now) and (u := _fresh_load(s, mono)) is not None]
            best_load = min(loads) if loads else None
        self.factors = [health_factor(s, best, now, floor, best_load, mono or 0.0) for s in self.stats]
        # floats: a provider warming up (weight 1 of 100) keeps its health factor too
        self.weights = [w * f if w > 0 else 0 for w, f in zip(self.weights, self.factors)]  # type: ignore[misc]
        self.total = sum(self.weights)
        self.uniform = self.total <= 0 or len(set(self.weights)) == 1
        self.cumulative = []
        running = 0
        for w in self.weights:
            running += w
            self.cumulative.append(running)
        self.expires = min(self.expires, now + refresh)


class HealthWeightedLoadBalancer(LoadBalancer):
    """Weighted random over weights lowered for sick providers and raised back as they recover."""

    FLOOR = Option.number("healthweighted.floor", 0.05, low=0.001, high=1.0, per_method=False,
                          doc="smallest share of its weight a sick provider keeps")
    REFRESH = Option.seconds("healthweighted.refresh", 0.5, per_method=False,
                             doc="seconds between recomputations of the health factors")
    ORCA = ORCA_WEIGHING
    options = (FLOOR, REFRESH, ORCA)

    def __init__(self, url: URL | None = None) -> None:
        super().__init__(url)
        floor, refresh, orca = self.FLOOR.read(url), self.REFRESH.read(url), self.ORCA.read(url)
        self._tables: _TableCache[_HealthTable] = _TableCache(lambda i: _HealthTable(i, floor, refresh, orca))

    def select(self, invokers: Sequence[Invoker], invocation: Invocation) -> Invoker:
        if len(invokers) == 1:
            return invokers[0]
        return invokers[self._tables.get(invokers).random_index()]

    def factors(self, invokers: Sequence[Invoker]) -> list[float]:
        """The current health factor of each of ``invokers`` (for operators and tests)."""
        return list(self._tables.get(invokers).factors)
