"""The pool cluster quota (``cluster.mode = pool``): instances lease shares of ``cluster.tps``.

Each provider instance keeps one lease per limited scope (the service, or a method with
``{method}.cluster.tps``) in its registry, node ``{service}/quota/{name}`` (name: the
instance's address, then group, version and method when set), text = JSON::

    {"address": "10.0.0.5:50051", "group": "", "version": "1.0", "method": "*",
     "weight": 100, "demand": 35.2, "share": 20.0, "period": 1.0, "renewed": 1764620000.0}

Every ``cluster.period`` seconds one thread per lease (never the call path, never a registry
delivery thread) reads the others' leases, ignores those not renewed for ``STALE_PERIODS`` of
their period, computes the shares with ``pool_shares`` (weighted max-min fair over everybody's
recent demand), takes its own (never more than the others' leases leave free), sets its
limiter's rate and writes its lease. When the registry cannot be read or written it falls
back to its static share (the split rule) and says so once; the next renewal that works
leases again. The lease is removed when the instance stops or the scope stops using a pool.
Leases are persistent entries with a time stamp, the same on every registry: a killed
instance's lease is ignored once stale (wall clocks of the instances are assumed close).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import threading
import time
from typing import Any, Callable, Mapping

from govrpc.flowctl.limiter import TokenBucketLimiter

__all__ = ["QUOTA", "STALE_PERIODS", "Claim", "LeaseState", "PoolLease", "PoolLimiter", "pool_shares"]

log = logging.getLogger("govrpc.flowctl")

QUOTA = "quota"
"""The registry's rule category holding the leases."""
STALE_PERIODS = 3.0
"""A lease not renewed for this many of its periods is ignored."""
MIN_RATE = 1e-3
"""The rate of a share of nothing (a limiter's rate is positive): about one call per 1000 s."""


@dataclasses.dataclass(frozen=True)
class Claim:
    """What one instance asks of the pool: its weight and its demand (calls per second)."""

    weight: float
    demand: float


def pool_shares(total: float, claims: Mapping[str, Claim]) -> dict[str, float]:
    """Share ``total`` calls/s among ``claims`` (name -> Claim): weighted max-min fair.

    No one gets more than its demand while another is short of its weighted fair part;
    what the demands leave unclaimed is shared out by weight (room for new demand). An
    instance of weight <= 0 gets nothing. The shares sum to ``total`` (or 0 with no claim).
    """
    shares = {name: 0.0 for name in claims}
    active = {name: c for name, c in claims.items() if c.weight > 0}
    weights = sum(c.weight for c in active.values())
    left = float(total)
    while active:
        level = left / sum(c.weight for c in active.values())
        met = {name: c for name, c in active.items() if max(c.demand, 0.0) <= level * c.weight}
        if not met:
            for name, c in active.items():
                shares[name] = level * c.weight
            return shares
        for name, c in met.items():
            shares[name] = max(c.demand, 0.0)
            left -= shares[name]
            del active[name]
    if weights > 0 and left > 0:  # every demand is met: the rest is room for more
        for name, c in claims.items():
            if c.weight > 0:
                shares[name] += left * c.weight / weights
    return shares


class PoolLimiter(TokenBucketLimiter):
    """A token bucket whose rate its lease sets, counting the calls that ask (the demand)."""

    name = "pool"

    def __init__(self, rate: float, burst: float | None = None, **kw: Any) -> None:
        super().__init__(max(rate, MIN_RATE), burst, **kw)
        self.asked = 0

    def acquire(self, headroom: float = 0.0) -> bool:
        self.asked += 1  # an estimate: an increment lost to a race does no harm
        return super().acquire(headroom)

    def set_rate(self, rate: float, burst: float) -> None:
        """Admit ``rate`` calls/s from now on (tokens earned so far at the old rate are kept,
        up to the new ``burst``)."""
        rate, burst = max(rate, MIN_RATE), max(1.0, burst)
        with self._lock:
            now = self._clock()
            self._tokens = min(self._tokens + (now - self._last) * self.rate, burst)
            self._last = now
            self.rate, self.burst = rate, burst

    def take_asked(self) -> int:
        """The calls that asked since the last time (and start counting again)."""
        asked, self.asked = self.asked, 0
        return asked


class LeaseState(enum.Enum):
    """Where a lease is: ``STATIC`` (no renewal done yet, or no registry), ``LEASING`` (the
    last renewal worked), ``FALLBACK`` (the registry failed: the static share rules)."""

    STATIC = "static"
    LEASING = "leasing"
    FALLBACK = "fallback"

    def __str__(self) -> str:
        return self.value


def _lease_name(address: str, group: str, version: str, method: str) -> str:
    parts = [address, group, version, "" if method == "*" else method]
    return "-".join(p.replace("/", "_") for p in parts if p)


class PoolLease:
    """One instance's lease of one scope's pool, renewed by its own thread every ``period``.

    ``static`` is the split share used before the first renewal and when the registry fails;
    ``update`` takes new settings (a rebind); ``close`` stops renewing and removes the lease.
    """

    def __init__(self, registry: Any, service: str, address: str, *, group: str = "", version: str = "",
                 method: str = "*", total: float, static: float, weight: float, period: float,
                 wall: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.service, self.address, self.group, self.version, self.method = service, address, group, version, method
        self.name = _lease_name(address, group, version, method)
        self.total, self.static, self.weight, self.period = total, static, weight, period
        self.limiter = PoolLimiter(static, self._burst(static))
        self.state = LeaseState.STATIC
        self.renewals = 0  # renewals that worked
        self._wall = wall
        self._since = time.monotonic()
        self._written = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _burst(self, share: float) -> float:
        return max(1.0, share * min(1.0, self.period))  # a period's worth at most: shares move

    @property
    def share(self) -> float:
        """The rate this instance admits now."""
        return self.limiter.rate

    def update(self, *, total: float, static: float, weight: float, period: float) -> None:
        """New settings from a rebind (the next renewal uses them; the static share at once
        unless leasing)."""
        self.total, self.static, self.weight, self.period = total, static, weight, period
        if self.state is not LeaseState.LEASING:
            self.limiter.set_rate(static, self._burst(static))

    def start(self) -> PoolLease:
        if self.registry is not None and self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"govrpc-quota-{self.service}", daemon=True)
            self._thread.start()
        return self

    def close(self, wait: float = 0.0) -> None:
        """Stop renewing; the thread removes the lease as it ends (``wait``: seconds to wait for it)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and wait > 0:
            thread.join(wait)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.renew()
            self._stop.wait(self.period)
        if self._written:
            try:
                self.registry.delete_rule(self.service, QUOTA, self.name)
            except Exception:  # noqa: BLE001 - a stale lease is ignored by the others anyway
                log.debug("cannot remove the quota lease %s of %s", self.name, self.service, exc_info=True)

    def _claims(self, texts: Mapping[str, str], now: float) -> tuple[dict[str, Claim], float]:
        """The live leases of the others in this scope, and the shares they hold."""
        claims: dict[str, Claim] = {}
        held = 0.0
        for name, text in texts.items():
            if name == self.name:
                continue
            try:
                lease = json.loads(text)
                if (lease.get("method"), lease.get("group", ""), lease.get("version", "")) != \
                        (self.method, self.group, self.version):
                    continue
                if now - float(lease["renewed"]) > STALE_PERIODS * float(lease["period"]):
                    continue
                claims[name] = Claim(float(lease["weight"]), float(lease["demand"]))
                held += max(0.0, float(lease["share"]))
            except (ValueError, TypeError, KeyError, AttributeError):
                continue  # not a lease this version understands: it claims nothing
        return claims, held

    def renew(self) -> None:
        """One period's work: measure the demand, read the pool, take a share, write the lease."""
        now_mono = time.monotonic()
        elapsed, self._since = max(now_mono - self._since, 1e-3), now_mono
        demand = self.limiter.take_asked() / elapsed
        try:
            texts = self.registry.rules(self.service, QUOTA)
            now = self._wall()
            claims, held = self._claims(texts, now)
            claims[self.name] = Claim(self.weight, demand)
            fair = pool_shares(self.total, claims)[self.name]
            share = min(fair, max(0.0, self.total - held))  # the others give theirs up first
            self.registry.put_rule(self.service, QUOTA, self.name, json.dumps({
                "address": self.address, "group": self.group, "version": self.version, "method": self.method,
                "weight": self.weight, "demand": round(demand, 3), "share": round(share, 3),
                "period": self.period, "renewed": round(now, 3)}, sort_keys=True))
        except Exception as exc:  # noqa: BLE001 - RegistryError mostly; the thread must live on
            self._fall_back(exc)
            return
        self._written = True
        self.limiter.set_rate(share, self._burst(share))
        self.renewals += 1
        if self.state is LeaseState.FALLBACK:
            log.warning("cluster quota of %s: the registry works again; leasing from the pool", self.service)
        self.state = LeaseState.LEASING

    def _fall_back(self, exc: Exception) -> None:
        self.limiter.set_rate(self.static, self._burst(self.static))
        if self.state is not LeaseState.FALLBACK:
            log.warning("cluster quota of %s: cannot lease from the registry (%s); using the static share "
                        "%.4g/s until it works again", self.service, exc, self.static)
        self.state = LeaseState.FALLBACK
