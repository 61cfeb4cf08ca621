"""Per-provider state: counts stay exact under threads, one state per provider, retire waits for idle."""

from __future__ import annotations

import threading

from govrpc.cluster.directory import Endpoint, StaticDirectory
from govrpc.cluster.stats import ProviderState, stats_of

from tests.unit.cluster.fakes import KEY, FakeInvoker, consumer_url


def test_in_flight_counts_are_exact_under_threads() -> None:
    invoker = FakeInvoker(1)
    stats = stats_of(invoker)

    def work() -> None:
        for _ in range(2000):
            stats.end(stats.begin(), failed=False)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert stats.active == 0  # 16,000 begins and ends from 8 threads balance exactly
    assert stats_of(invoker) is stats  # one state per invoker


def test_failures_count_exactly_under_threads() -> None:
    stats = ProviderState()

    def work() -> None:
        for _ in range(1000):
            stats.end(stats.begin(), failed=True)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert stats.consecutive_failures == 8000 and stats.active == 0


def test_consecutive_failures_reset_on_success() -> None:
    stats = stats_of(FakeInvoker(1))
    for _ in range(3):
        stats.end(stats.begin(), failed=True)
    assert stats.consecutive_failures == 3
    stats.end(stats.begin(), failed=False)
    assert stats.consecutive_failures == 0 and stats.ewma > 0


def test_a_directory_endpoint_carries_its_state() -> None:
    invoker = FakeInvoker(1, weight=7)
    directory = StaticDirectory(KEY, consumer_url(), [invoker])
    (endpoint,) = directory.invokers
    assert isinstance(endpoint, Endpoint)
    assert stats_of(endpoint) is endpoint.state and endpoint.state.weight == 7
    assert stats_of(invoker) is endpoint.state  # one state per provider, whichever handle is asked


def test_retire_closes_only_once_idle() -> None:
    closed: list[int] = []
    stats = ProviderState()
    a = stats.begin()
    b = stats.begin()
    stats.retire(lambda: closed.append(1))
    assert closed == [] and stats.retiring
    stats.end(a, failed=False)
    assert closed == []
    stats.end(b, failed=None)
    assert closed == [1]
    stats.end(stats.begin(), failed=False)  # a late call ends: closed once, not twice
    assert closed == [1]


def test_retire_when_idle_closes_at_once() -> None:
    closed: list[int] = []
    stats = ProviderState()
    stats.retire(lambda: closed.append(1))
    assert closed == [1]
