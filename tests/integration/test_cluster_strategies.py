"""Strategies and run-time configurators on real gRPC servers (127.0.0.1, memory registry)."""

from __future__ import annotations

import collections
import threading
import time

import pytest

import govrpc
from govrpc.admin import Admin
from govrpc.cluster.stats import stats_of


@govrpc.service("ctest.Where", idempotent=True)
class Where:
    def __init__(self, name: str, delay: float = 0.0, after: tuple[Where, ...] = ()) -> None:
        self.name = name
        self.delay = delay
        self.after = after  # answer only once these have received a call
        self.arrived = threading.Event()
        self.calls = 0
        self.release = threading.Event()  # ends a delay early (test teardown)
        self._lock = threading.Lock()

    def who(self, key: str = "") -> str:
        with self._lock:
            self.calls += 1
        self.arrived.set()
        for other in self.after:
            other.arrived.wait(10)
        if self.delay:
            self.release.wait(self.delay)
        return self.name


@pytest.fixture
def three(memory_registry, start_server, client_factory):
    services = [Where(f"p{i}") for i in range(3)]
    servers = [start_server(memory_registry, s, warmup=0) for s in services]  # full weight at once
    client = client_factory(memory_registry, local_first=False)  # every call over gRPC
    return services, servers, client, Admin(memory_registry)


def spread(proxy, calls: int, key: str = "") -> collections.Counter:
    return collections.Counter(proxy.who(key) for _ in range(calls))


def test_operator_changes_weight_disabled_and_balancer_at_run_time(three) -> None:
    services, servers, client, admin = three
    proxy = client.proxy("ctest.Where", loadbalance="random")
    assert set(spread(proxy, 150)) == {"p0", "p1", "p2"}
    p0 = f"127.0.0.1:{servers[0].port}"
    p1 = f"127.0.0.1:{servers[1].port}"
    admin.put_rule("ctest.Where", "configurators", "heavy-p0", f"address = {p0}\nweight = 1800")
    counts = spread(proxy, 400)
    assert counts["p0"] > 0.75 * 400, counts  # expected 0.9
    admin.put_rule("ctest.Where", "configurators", "off-p1", f"address = {p1}\ndisabled = true")
    counts = spread(proxy, 200)
    assert counts["p1"] == 0 and counts["p0"] > counts["p2"], counts
    admin.delete_rule("ctest.Where", "configurators", "heavy-p0")
    admin.put_rule("ctest.Where", "configurators", "rr", "loadbalance = roundrobin")
    counts = spread(proxy, 100)
    assert counts == {"p0": 50, "p2": 50}  # exact alternation
    with pytest.raises(govrpc.RuleError, match="fastest"):  # refused where it is written...
        admin.put_rule("ctest.Where", "configurators", "rr", "loadbalance = fastest")
    # ...and a consumer that receives it anyway keeps the last good rule
    admin.registry.put_rule("ctest.Where", "configurators", "rr", "loadbalance = fastest")
    counts = spread(proxy, 100)
    assert counts == {"p0": 50, "p2": 50}
    admin.delete_rule("ctest.Where", "configurators", "off-p1")
    admin.delete_rule("ctest.Where", "configurators", "rr")
    assert set(spread(proxy, 150)) == {"p0", "p1", "p2"}


def test_a_method_can_hash_while_the_others_spread(three) -> None:
    _, _, client, _ = three
    proxy = client.proxy("ctest.Where", loadbalance="roundrobin",
                         methods={"who": {"loadbalance": "consistenthash"}})
    for key in ("ann", "bob", "cid", "dan"):
        assert len(spread(proxy, 20, key)) == 1  # one provider per key
    targets = {proxy.who(f"user-{k}") for k in range(60)}
    assert targets == {"p0", "p1", "p2"}


def test_forking_answers_from_the_fast_provider_and_cancels_the_others(memory_registry, start_server,
                                                                       client_factory) -> None:
    slow = [Where(f"slow{i}", delay=30.0) for i in range(2)]
    fast = Where("fast", after=tuple(slow))  # so both slow calls are surely in flight when it wins
    try:
        servers = [start_server(memory_registry, service) for service in (*slow, fast)]
        client = client_factory(memory_registry, local_first=False)
        proxy = client.proxy("ctest.Where", cluster="forking", forks=3, timeout=40.0)
        assert proxy.who() == "fast"
        directory = next(iter(client._references.values())).directory
        slow_ports = {s.port for s in servers[:2]}
        slow_invokers = [i for i in directory.invokers if i.url.port in slow_ports]
        assert len(slow_invokers) == 2
        # their RPCs were cancelled: nothing is in flight any more, long before the providers' 30 s
        end = time.monotonic() + 15
        while any(stats_of(i).active for i in slow_invokers) and time.monotonic() < end:
            time.sleep(0.01)
        assert [stats_of(i).active for i in slow_invokers] == [0, 0]
        assert all(s.calls == 1 for s in slow)  # they did receive the call
    finally:
        for service in slow:
            service.release.set()


def test_broadcast_reaches_every_provider(three) -> None:
    services, _, client, _ = three
    proxy = client.proxy("ctest.Where", cluster="broadcast")
    proxy.who()
    assert [s.calls for s in services] == [1, 1, 1]


def test_hash_arguments_a_method_does_not_have_are_refused_at_proxy_creation(
        memory_registry, start_server, client_factory) -> None:
    @govrpc.service("ctest.Keyed")
    class Keyed:
        def find(self, user: str, page: int = 0) -> str:
            return user

        def ping(self) -> str:
            return "pong"

    server = start_server(memory_registry, Keyed())
    assert server.urls[0].params["find.args"] == "2"
    client = client_factory(memory_registry)
    with pytest.raises(govrpc.ConfigurationError, match=r"ctest.Keyed.find: the method takes 2 .*index 2"):
        client.proxy("ctest.Keyed", methods={"find": {"loadbalance": "consistenthash", "hash.arguments": "0,2"}})
    with pytest.raises(govrpc.ConfigurationError, match="index 5"):
        client.proxy("ctest.Keyed", loadbalance="consistenthash", **{"hash.arguments": "5"})
    proxy = client.proxy("ctest.Keyed", methods={"find": {"loadbalance": "consistenthash", "hash.arguments": "1"}})
    assert proxy.find("ann", 3) == "ann" and proxy.ping() == "pong"
