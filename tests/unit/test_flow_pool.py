"""The pool cluster quota's pure parts: the fair split, the limiter, one lease's renewal."""

from __future__ import annotations

import json
from typing import Any

import pytest

from govrpc.exceptions import ConfigurationError, RegistryUnreachableError
from govrpc.flowctl.pool import QUOTA, Claim, LeaseState, PoolLease, PoolLimiter, pool_shares
from govrpc.flowctl.settings import CLUSTER_MODE, CLUSTER_PERIOD


def test_one_busy_instance_gets_what_the_idle_ones_leave() -> None:
    shares = pool_shares(60, {"a": Claim(100, 500), "b": Claim(100, 0), "c": Claim(100, 0)})
    assert shares == {"a": 60, "b": 0, "c": 0}


def test_all_busy_share_equally_and_by_weight() -> None:
    shares = pool_shares(60, {"a": Claim(100, 500), "b": Claim(100, 90), "c": Claim(100, 40)})
    assert shares == pytest.approx({"a": 20, "b": 20, "c": 20})
    weighted = pool_shares(100, {"a": Claim(300, 1000), "b": Claim(100, 1000)})
    assert weighted == pytest.approx({"a": 75, "b": 25})


def test_no_one_gets_more_than_it_asks_while_others_are_short() -> None:
    shares = pool_shares(60, {"a": Claim(100, 500), "b": Claim(100, 100), "c": Claim(100, 5)})
    assert shares == pytest.approx({"a": 27.5, "b": 27.5, "c": 5})
    assert sum(shares.values()) == pytest.approx(60)


def test_unclaimed_quota_is_shared_out_by_weight() -> None:
    shares = pool_shares(60, {"a": Claim(100, 30), "b": Claim(100, 0), "c": Claim(200, 10)})
    assert shares == pytest.approx({"a": 35, "b": 5, "c": 20})
    assert pool_shares(60, {}) == {}
    assert pool_shares(60, {"a": Claim(0, 100), "b": Claim(100, 1)}) == pytest.approx({"a": 0, "b": 60})


def test_the_limiter_counts_asks_and_takes_a_new_rate() -> None:
    now = [0.0]
    limiter = PoolLimiter(10, 10, clock=lambda: now[0])
    admitted = sum(limiter.acquire() for _ in range(30))
    assert admitted == 10 and limiter.take_asked() == 30 and limiter.take_asked() == 0
    limiter.set_rate(100, 20)
    now[0] = 1.0
    assert sum(limiter.acquire() for _ in range(50)) == 20  # the new burst caps what piled up
    limiter.set_rate(0, 1)  # a share of nothing still has a positive rate
    assert limiter.rate > 0


def test_mode_and_period_are_checked_where_written() -> None:
    assert CLUSTER_MODE.check("pool") == "pool"
    with pytest.raises(ConfigurationError, match="cluster.mode"):
        CLUSTER_MODE.check("tokens")
    assert CLUSTER_PERIOD.check("0.5") == 0.5
    for bad in ("0", "-1", "nan", "0.01", "x"):
        with pytest.raises(ConfigurationError, match="cluster.period"):
            CLUSTER_PERIOD.check(bad)


class RulesOnly:
    """A registry of rules only (what a lease uses); ``down`` makes every access fail."""

    def __init__(self) -> None:
        self.stored: dict[tuple[str, str], dict[str, str]] = {}
        self.down = False

    def rules(self, service: str, category: str) -> dict[str, str]:
        if self.down:
            raise RegistryUnreachableError("down")
        return dict(self.stored.get((service, category), {}))

    def put_rule(self, service: str, category: str, name: str, text: str) -> None:
        if self.down:
            raise RegistryUnreachableError("down")
        self.stored.setdefault((service, category), {})[name] = text

    def delete_rule(self, service: str, category: str, name: str) -> None:
        self.stored.get((service, category), {}).pop(name, None)


def lease(registry: Any, address: str, wall: float = 1000.0, **kw: Any) -> PoolLease:
    settings = dict(total=60.0, static=20.0, weight=100.0, period=1.0)
    settings.update(kw)
    return PoolLease(registry, "svc", address, wall=lambda: wall, **settings)  # type: ignore[arg-type]


def test_a_renewal_takes_what_others_leave_and_publishes_its_lease() -> None:
    registry = RulesOnly()
    a, b = lease(registry, "h:1"), lease(registry, "h:2")
    assert a.state is LeaseState.STATIC and a.share == 20.0
    for _ in range(100):
        a.limiter.acquire()
    a.renew()  # alone in the pool with demand: all of it
    assert a.state is LeaseState.LEASING and a.share == pytest.approx(60)
    written = json.loads(registry.stored[("svc", QUOTA)]["h:1"])
    assert written["share"] == pytest.approx(60) and written["demand"] > 0 and written["renewed"] == 1000.0
    b.renew()  # idle, and a holds everything: b waits for a to give some up
    assert b.share < 1
    for _ in range(100):
        b.limiter.acquire()
    b.renew()  # b now asks; a still holds it all
    for _ in range(100):
        a.limiter.acquire()
    a.renew()  # a sees b's demand and gives half back
    assert a.share == pytest.approx(30)
    for _ in range(100):
        b.limiter.acquire()
    b.renew()
    assert b.share == pytest.approx(30)


def test_stale_and_foreign_leases_claim_nothing() -> None:
    registry = RulesOnly()
    old = lease(registry, "h:9", wall=990.0)  # renewed 10 s (10 periods) before the others look
    for _ in range(100):
        old.limiter.acquire()
    old.renew()
    other_method = lease(registry, "h:8", wall=1000.0, method="find")
    for _ in range(100):
        other_method.limiter.acquire()
    other_method.renew()
    registry.stored[("svc", QUOTA)]["junk"] = "not json"
    fresh = lease(registry, "h:1")
    for _ in range(100):
        fresh.limiter.acquire()
    fresh.renew()
    assert fresh.share == pytest.approx(60)


def test_an_unreachable_registry_falls_back_to_the_static_share_and_leasing_resumes(
        caplog: pytest.LogCaptureFixture) -> None:
    registry = RulesOnly()
    a = lease(registry, "h:1")
    for _ in range(100):
        a.limiter.acquire()
    a.renew()
    assert a.share == pytest.approx(60)
    registry.down = True
    a.renew()
    a.renew()
    assert a.state is LeaseState.FALLBACK and a.share == 20.0
    assert sum("static share" in r.getMessage() for r in caplog.records) == 1  # said once
    a.update(total=90.0, static=30.0, weight=100.0, period=1.0)  # the peers changed meanwhile
    assert a.share == 30.0
    registry.down = False
    a.renew()
    assert a.state is LeaseState.LEASING and a.renewals == 2
