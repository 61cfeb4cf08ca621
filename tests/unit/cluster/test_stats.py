"""Per-provider statistics: counts stay exact under threads, slots are reused after an invoker dies."""

from __future__ import annotations

import gc
import threading

from govrpc.cluster import stats as stats_module
from govrpc.cluster.stats import ACTIVE, stats_of

from tests.unit.cluster.fakes import FakeInvoker


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
    assert stats_of(invoker) is stats  # one stats object per invoker


def test_a_dead_invokers_slot_is_reused() -> None:
    invoker = FakeInvoker(1)
    stats = stats_of(invoker)
    stats.begin()
    slot = stats.slot
    assert ACTIVE[slot] == 1
    del invoker, stats
    gc.collect()
    assert slot in stats_module._free and ACTIVE[slot] == 0
    fresh = [FakeInvoker(2 + i) for i in range(len(stats_module._free))]
    assert slot in {stats_of(i).slot for i in fresh}  # reused before the list grows


def test_consecutive_failures_reset_on_success() -> None:
    stats = stats_of(FakeInvoker(1))
    for _ in range(3):
        stats.end(stats.begin(), failed=True)
    assert stats.consecutive_failures == 3
    stats.end(stats.begin(), failed=False)
    assert stats.consecutive_failures == 0 and stats.ewma > 0
