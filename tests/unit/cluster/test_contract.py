"""Contract suites run over every installed balancer and cluster strategy (entry points)."""

from __future__ import annotations

import threading

import pytest

from govrpc.cluster.base import ClusterInvoker
from govrpc.cluster.loadbalance import LoadBalancer
from govrpc.exceptions import NoProviderError
from govrpc.extension import extension_names, get_extension

from tests.unit.cluster.fakes import FakeInvoker, consumer_url, directory, fakes, invocation

BALANCERS = extension_names("govrpc.loadbalance")
CLUSTERS = extension_names("govrpc.cluster")


def test_every_documented_strategy_is_installed() -> None:
    assert {"random", "roundrobin", "leastactive", "shortestresponse", "consistenthash", "sticky"} <= set(BALANCERS)
    assert {"failover", "failback", "failcache", "failfast", "failsafe", "forking", "broadcast"} <= set(CLUSTERS)


@pytest.mark.parametrize("name", BALANCERS)
def test_balancer_picks_a_member_of_the_list(name: str) -> None:
    cls = get_extension("govrpc.loadbalance", name)
    assert issubclass(cls, LoadBalancer)
    balancer = cls(consumer_url(loadbalance=name))
    invokers = tuple(FakeInvoker(20000 + i, weight=(i + 1) * 10) for i in range(5))
    for k in range(200):
        assert balancer.select(invokers, invocation("find", f"key-{k}")) in invokers
    single = invokers[:1]
    assert balancer.select(single, invocation("find", "x")) is invokers[0]
    # a shorter list (a provider left, or failover excludes one): only its members are picked
    fewer = invokers[1:4]
    for k in range(200):
        assert balancer.select(fewer, invocation("find", f"key-{k}")) in fewer


@pytest.mark.parametrize("name", BALANCERS)
def test_balancer_is_thread_safe(name: str) -> None:
    balancer = get_extension("govrpc.loadbalance", name)(consumer_url())
    invokers = tuple(FakeInvoker(20000 + i, weight=100 + i) for i in range(7))
    errors: list[BaseException] = []

    def pick() -> None:
        try:
            for k in range(500):
                assert balancer.select(invokers, invocation("find", k)) in invokers
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=pick) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads) and errors == []


@pytest.mark.parametrize("name", BALANCERS)
def test_balancer_constructs_without_url(name: str) -> None:
    balancer = get_extension("govrpc.loadbalance", name)()
    invokers = tuple(fakes(3))
    assert balancer.select(invokers, invocation("find", "a")) in invokers


def _cluster(name: str, invokers, **params) -> ClusterInvoker:
    cls = get_extension("govrpc.cluster", name)
    assert issubclass(cls, ClusterInvoker)
    url = consumer_url(cluster=name, **params)
    return cls(directory(invokers, cluster=name, **params), get_extension("govrpc.loadbalance", "random")(url), url)


@pytest.mark.parametrize("name", CLUSTERS)
def test_cluster_returns_the_provider_value(name: str) -> None:
    invokers = fakes(3, outcome=lambda inv: inv.args[0] * 2)
    cluster = _cluster(name, invokers)
    assert cluster.invoke(invocation("find", 21)) == 42
    assert sum(len(i.calls) for i in invokers) >= 1
    assert all(c.method == "find" and c.args == (21,) for i in invokers for c in i.calls)


@pytest.mark.parametrize("name", CLUSTERS)
def test_cluster_with_no_provider(name: str) -> None:
    cluster = _cluster(name, [])
    if name == "failsafe":  # swallows every failure by design
        assert cluster.invoke(invocation()) is None
        return
    with pytest.raises(NoProviderError, match="no provider"):
        cluster.invoke(invocation())


@pytest.mark.parametrize("name", CLUSTERS)
def test_cluster_passes_business_errors_to_the_caller_untouched(name: str) -> None:
    boom = ValueError("bad order id")
    invokers = fakes(3, outcome=boom, **{"find.idempotent": "true"})
    cluster = _cluster(name, invokers)
    if name == "failsafe":
        assert cluster.invoke(invocation()) is None
        return
    with pytest.raises(ValueError, match="bad order id"):
        cluster.invoke(invocation())
    if name not in ("forking", "broadcast"):  # parallel strategies call several by design
        assert sum(len(i.calls) for i in invokers) == 1  # never retried


@pytest.mark.parametrize("name", CLUSTERS)
def test_cluster_close_closes_the_directory(name: str) -> None:
    invokers = fakes(2)
    cluster = _cluster(name, invokers)
    cluster.invoke(invocation("find", 1))
    cluster.close()
    assert all(i.closed for i in invokers)
