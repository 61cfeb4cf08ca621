"""Each balancer's promise: weights, exact sequences, least active, latency, hashing, stickiness, warm-up."""

from __future__ import annotations

import collections
import time

import pytest

from govrpc.cluster.consistenthash import ConsistentHashLoadBalancer
from govrpc.cluster.loadbalance import (
    LeastActiveLoadBalancer,
    RandomLoadBalancer,
    RoundRobinLoadBalancer,
    ShortestResponseLoadBalancer,
    StickyLoadBalancer,
    WeightTable,
    _Wheel,
    weight_of,
)
from govrpc.cluster.stats import stats_of
from govrpc.exceptions import ConfigurationError

from tests.unit.cluster.fakes import FakeInvoker, consumer_url, fakes, invocation


def shares(balancer, invokers, picks: int, *args) -> dict:
    counts = collections.Counter(balancer.select(invokers, invocation("find", *args)) for _ in range(picks))
    return {i: counts[i] / picks for i in invokers}


def test_random_follows_the_weights() -> None:
    invokers = (FakeInvoker(1, weight=100), FakeInvoker(2, weight=200), FakeInvoker(3, weight=700))
    got = shares(RandomLoadBalancer(consumer_url()), invokers, 20000)
    for invoker, expected in zip(invokers, (0.1, 0.2, 0.7)):
        assert abs(got[invoker] - expected) < 0.02, got  # > 6 standard deviations


def test_random_with_equal_weights_is_uniform() -> None:
    invokers = tuple(fakes(4))
    got = shares(RandomLoadBalancer(), invokers, 20000)
    assert all(abs(share - 0.25) < 0.02 for share in got.values()), got


def test_roundrobin_is_smooth_and_exact() -> None:
    a, b, c = FakeInvoker(1, weight=5), FakeInvoker(2, weight=1), FakeInvoker(3, weight=1)
    invokers = (a, b, c)
    names = {a: "a", b: "b", c: "c"}
    balancer = RoundRobinLoadBalancer(consumer_url())
    sequence = "".join(names[balancer.select(invokers, invocation())] for _ in range(21))
    assert sequence == "aabacaa" * 3


def test_roundrobin_equal_weights_rotate() -> None:
    invokers = tuple(fakes(3))
    balancer = RoundRobinLoadBalancer()
    picks = [balancer.select(invokers, invocation()) for _ in range(9)]
    assert picks == list(invokers) * 3


def test_roundrobin_keeps_its_place_when_a_retry_uses_another_list() -> None:
    a, b, c = FakeInvoker(1, weight=5), FakeInvoker(2, weight=1), FakeInvoker(3, weight=1)
    invokers = (a, b, c)
    names = {a: "a", b: "b", c: "c"}
    balancer = RoundRobinLoadBalancer()
    first = "".join(names[balancer.select(invokers, invocation())] for _ in range(3))
    balancer.select([b, c], invocation())  # failover's "not tried yet" list
    rest = "".join(names[balancer.select(invokers, invocation())] for _ in range(4))
    assert first + rest == "aabacaa"


def test_roundrobin_without_memo_gives_exact_proportions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_Wheel, "MAX_PERIOD", 3)  # forces the O(n)-per-pick path
    invokers = (FakeInvoker(1, weight=3), FakeInvoker(2, weight=2), FakeInvoker(3, weight=1))
    balancer = RoundRobinLoadBalancer()
    counts = collections.Counter(balancer.select(invokers, invocation()) for _ in range(60))
    assert [counts[i] for i in invokers] == [30, 20, 10]


def test_leastactive_picks_the_fewest_in_flight() -> None:
    invokers = tuple(fakes(4))
    started = []
    for invoker, busy in zip(invokers, (3, 1, 0, 2)):
        for _ in range(busy):
            started.append((stats_of(invoker), stats_of(invoker).begin()))
    balancer = LeastActiveLoadBalancer(consumer_url())
    assert {balancer.select(invokers, invocation()) for _ in range(100)} == {invokers[2]}
    for stats, t in started:
        stats.end(t, False)
    assert all(stats_of(i).active == 0 for i in invokers)


def test_leastactive_breaks_ties_by_weight() -> None:
    light, heavy, busy = FakeInvoker(1, weight=100), FakeInvoker(2, weight=300), FakeInvoker(3, weight=600)
    stats = stats_of(busy)
    t = stats.begin()
    try:
        got = shares(LeastActiveLoadBalancer(), (light, heavy, busy), 20000)
    finally:
        stats.end(t, False)
    assert got[busy] == 0
    assert abs(got[light] - 0.25) < 0.02 and abs(got[heavy] - 0.75) < 0.02, got


def test_shortestresponse_prefers_the_fast_provider_and_reprobes() -> None:
    fast, slow, medium = fakes(3)
    now = time.monotonic()
    for invoker, latency in ((fast, 0.001), (slow, 0.200), (medium, 0.020)):
        stats = stats_of(invoker)
        stats.ewma, stats.last_pick = latency, now
    balancer = ShortestResponseLoadBalancer(consumer_url())
    got = shares(balancer, (fast, slow, medium), 3000)
    assert got[slow] == 0  # it loses every pair it is drawn in
    assert got[fast] > 0.6, got
    newcomer = FakeInvoker(9)
    picks = {balancer.select((fast, slow, medium, newcomer), invocation()) for _ in range(200)}
    assert newcomer in picks  # never measured: tried
    stats_of(slow).last_pick = now - 60  # not called for a while: tried again
    picks = {balancer.select((fast, slow, medium), invocation()) for _ in range(200)}
    assert slow in picks


def test_shortestresponse_rejects_a_bad_reprobe() -> None:
    with pytest.raises(ConfigurationError, match="reprobe"):
        ShortestResponseLoadBalancer(consumer_url(**{"shortestresponse.reprobe": "0"}))


def test_consistenthash_is_stable_and_moves_about_one_nth() -> None:
    invokers = tuple(fakes(10))
    balancer = ConsistentHashLoadBalancer(consumer_url())
    keys = [f"user-{k}" for k in range(10000)]
    before = {k: balancer.select(invokers, invocation("find", k)) for k in keys}
    assert before == {k: balancer.select(invokers, invocation("find", k)) for k in keys}  # stable
    load = collections.Counter(before.values())
    assert all(0.04 < load[i] / len(keys) < 0.18 for i in invokers), load
    gone = invokers[3]
    after = {k: balancer.select(invokers[:3] + invokers[4:], invocation("find", k)) for k in keys}
    moved = {k for k in keys if after[k] is not before[k]}
    assert moved == {k for k in keys if before[k] is gone}  # only its keys move, no other key
    assert 0.04 < len(moved) / len(keys) < 0.18
    back = {k: balancer.select(invokers, invocation("find", k)) for k in keys}
    assert back == before


def test_consistenthash_uses_the_chosen_arguments() -> None:
    invokers = tuple(fakes(5))
    balancer = ConsistentHashLoadBalancer(consumer_url(**{"hash.arguments": "1"}))
    targets = {balancer.select(invokers, invocation("find", f"noise-{n}", "same-key")) for n in range(50)}
    assert len(targets) == 1
    both = ConsistentHashLoadBalancer(consumer_url(**{"hash.arguments": "0,1"}))
    spread = {both.select(invokers, invocation("find", f"noise-{n}", "same-key")) for n in range(50)}
    assert len(spread) > 1


@pytest.mark.parametrize("bad", ["x", "-1", "0,0", "1,", "first"])
def test_consistenthash_rejects_bad_arguments_at_construction(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="hash.arguments"):
        ConsistentHashLoadBalancer(consumer_url(**{"hash.arguments": bad}))


def test_consistenthash_names_missing_arguments() -> None:
    balancer = ConsistentHashLoadBalancer(consumer_url(**{"hash.arguments": "2"}))
    with pytest.raises(ConfigurationError, match=r"argument\(s\) \[2\].*passes 1"):
        balancer.select(tuple(fakes(3)), invocation("find", "only-one"))
    with pytest.raises(ConfigurationError, match="hash.nodes"):
        ConsistentHashLoadBalancer(consumer_url(**{"hash.nodes": "0"}))


def test_sticky_keeps_the_provider_until_it_fails_or_leaves() -> None:
    invokers = tuple(fakes(4))
    balancer = StickyLoadBalancer(consumer_url())
    first = balancer.select(invokers, invocation())
    assert {balancer.select(invokers, invocation()) for _ in range(50)} == {first}
    stats = stats_of(first)
    stats.end(stats.begin(), failed=True)  # a provider failure
    second = balancer.select(invokers, invocation())
    assert {balancer.select(invokers, invocation()) for _ in range(50)} == {second}
    remaining = tuple(i for i in invokers if i is not second)
    third = balancer.select(remaining, invocation())
    assert {balancer.select(remaining, invocation()) for _ in range(20)} == {third}  # sticks to the new one


def test_warmup_ramps_the_weight_linearly() -> None:
    now = time.time()
    started = int((now - 150) * 1000)
    warming = FakeInvoker(1, weight=200, timestamp=started, warmup=600)
    assert weight_of(warming, now) == 50            # a quarter of the way: a quarter of the weight
    assert weight_of(warming, now + 150) == 100
    assert weight_of(warming, now + 450) == 200     # warm
    assert weight_of(warming, now - 150) == 1       # just started: at least 1
    assert weight_of(FakeInvoker(2, weight=200), now) == 200  # no timestamp: no warm-up
    assert weight_of(FakeInvoker(3, weight=200, timestamp=started, warmup=0), now) == 200


def test_a_warming_provider_gets_its_share_and_the_table_is_refreshed() -> None:
    now = time.time()
    cold = FakeInvoker(1, weight=100, timestamp=int((now - 300) * 1000), warmup=600)  # half-way: 50
    warm = FakeInvoker(2, weight=100)
    table = WeightTable((cold, warm))
    assert table.weights == [50, 100] and table.expires <= now + 1.5
    got = shares(RandomLoadBalancer(), (cold, warm), 30000)
    assert abs(got[cold] - 1 / 3) < 0.02, got


def test_leastactive_when_every_provider_is_busy() -> None:
    a, b, c, d = (FakeInvoker(1, weight=100), FakeInvoker(2, weight=100), FakeInvoker(3, weight=300),
                  FakeInvoker(4, weight=100))
    opened = []
    for invoker, busy in zip((a, b, c, d), (2, 1, 1, 3)):
        for _ in range(busy):
            opened.append((stats_of(invoker), stats_of(invoker).begin()))
    try:
        got = shares(LeastActiveLoadBalancer(), (a, b, c, d), 20000)
    finally:
        for stats, t in opened:
            stats.end(t, False)
    assert got[a] == 0 and got[d] == 0
    assert abs(got[b] - 0.25) < 0.02 and abs(got[c] - 0.75) < 0.02, got


def test_consistenthash_keys_a_method_without_arguments_on_one_provider() -> None:
    balancer = ConsistentHashLoadBalancer(consumer_url())
    invokers = fakes(5)
    picks = {balancer.select(invokers, invocation("ping")).url.port for _ in range(20)}
    assert len(picks) == 1


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_options_that_are_not_finite_numbers_are_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match="not a finite number"):
        consumer_url(**{"retry.backoff": value}).get_float("retry.backoff", 0.01)


def test_leastactive_on_a_long_busy_list_prefers_the_less_busy() -> None:
    invokers = tuple(fakes(100))
    opened = []
    for index, invoker in enumerate(invokers):  # every provider busy: 1 call on even ones, 10 on odd
        for _ in range(1 if index % 2 == 0 else 10):
            opened.append((stats_of(invoker), stats_of(invoker).begin()))
    try:
        balancer = LeastActiveLoadBalancer(consumer_url())
        picks = [invokers.index(balancer.select(invokers, invocation())) for _ in range(4000)]
    finally:
        for stats, t in opened:
            stats.end(t, False)
    light = sum(1 for i in picks if i % 2 == 0) / len(picks)
    assert light > 0.9, light  # least of 4 draws: a busy one only when all 4 are busy (1/16)
    assert len(set(picks)) > 40  # spread over the light ones, not stuck on one
    idle = invokers[37]
    opened = [(stats_of(i), stats_of(i).begin()) for i in invokers if i is not idle]
    try:
        assert collections.Counter(balancer.select(invokers, invocation()) for _ in range(2000))[idle] > 20
    finally:
        for stats, t in opened:
            stats.end(t, False)
