"""Each fault-tolerance strategy's promise, on fake invokers."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from govrpc.cluster.directory import StaticDirectory
from govrpc.cluster.failcache import FailcacheClusterInvoker, FailcacheFullError, RetryAccepted, on_give_up
from govrpc.cluster.failfast import FailfastClusterInvoker, FailsafeClusterInvoker
from govrpc.cluster.failover import FailbackClusterInvoker, FailoverClusterInvoker
from govrpc.cluster.loadbalance import RandomLoadBalancer, RoundRobinLoadBalancer
from govrpc.cluster.parallel import BroadcastClusterInvoker, ForkingClusterInvoker
from govrpc.cluster.stats import stats_of
from govrpc.exceptions import (
    CallTimeoutError,
    CancelledError,
    ConfigurationError,
    GovRpcError,
    ConnectionRefusedByProviderError,
    ProviderUnavailableError,
    RemoteError,
)

from tests.helpers import wait_until
from tests.unit.cluster.fakes import KEY, FakeInvoker, consumer_url, directory, fakes, invocation

IDEMPOTENT = {"find.idempotent": "true"}
FAST = {"retry.backoff": "0"}


def make(cls, invokers, balancer=RandomLoadBalancer, **params: Any):
    params = {**FAST, **params}
    url = consumer_url(**params)
    return cls(directory(invokers, **params), balancer(url), url)


def down(port: int) -> ProviderUnavailableError:
    return ProviderUnavailableError(f"demo.Svc.find on 10.0.0.1:{port}: connection reset")


# -- failover --------------------------------------------------------------------

def test_failover_tries_each_provider_once_then_names_them() -> None:
    invokers = [FakeInvoker(20000 + i, down(20000 + i), **IDEMPOTENT) for i in range(4)]
    cluster = make(FailoverClusterInvoker, invokers, retries=2)
    with pytest.raises(ProviderUnavailableError) as caught:
        cluster.invoke(invocation())
    called = [i for i in invokers if i.calls]
    assert len(called) == 3 and all(len(i.calls) == 1 for i in called)  # 1 + 2 retries, never twice
    message = str(caught.value)
    assert all(i.url.address in message for i in called) and "3 provider(s)" in message
    assert "retries are used up" in message


def test_failover_retries_count_follows_the_option() -> None:
    invokers = [FakeInvoker(20000 + i, down(20000 + i), **IDEMPOTENT) for i in range(5)]
    with pytest.raises(ProviderUnavailableError):
        make(FailoverClusterInvoker, invokers, retries=1).invoke(invocation())
    assert sum(len(i.calls) for i in invokers) == 2
    invokers = [FakeInvoker(20000 + i, down(20000 + i), **IDEMPOTENT) for i in range(5)]
    with pytest.raises(ProviderUnavailableError):
        make(FailoverClusterInvoker, invokers, retries=0).invoke(invocation())
    assert sum(len(i.calls) for i in invokers) == 1


def test_failover_moves_on_to_a_healthy_provider() -> None:
    bad = FakeInvoker(1, down(1), **IDEMPOTENT)
    good = FakeInvoker(2, "fine", **IDEMPOTENT)
    cluster = make(FailoverClusterInvoker, [bad, good], RoundRobinLoadBalancer)
    assert [cluster.invoke(invocation()) for _ in range(4)] == ["fine"] * 4
    assert len(bad.calls) == 2 and len(good.calls) == 4


def test_failover_lists_providers_again_before_a_retry() -> None:
    bad = FakeInvoker(1, down(1), **IDEMPOTENT)
    newcomer = FakeInvoker(2, "from the newcomer", **IDEMPOTENT)

    class Growing(StaticDirectory):
        def list(self, inv):
            listed = self.invokers
            self.invokers = (bad, newcomer)  # a provider appears while the first attempt fails
            return listed

    url = consumer_url(**FAST)
    cluster = FailoverClusterInvoker(Growing(KEY, url, [bad]), RandomLoadBalancer(url), url)
    assert cluster.invoke(invocation()) == "from the newcomer"


def test_failover_never_retries_business_errors() -> None:
    for error in (ValueError("no such order"), RemoteError("shop.OutOfStock", "none left")):
        invokers = fakes(3, error, **IDEMPOTENT)
        with pytest.raises(type(error)):
            make(FailoverClusterInvoker, invokers).invoke(invocation())
        assert sum(len(i.calls) for i in invokers) == 1


def test_failover_does_not_retry_a_non_idempotent_method_that_may_have_run() -> None:
    invokers = [FakeInvoker(20000 + i, down(20000 + i)) for i in range(3)]  # not marked idempotent
    with pytest.raises(ProviderUnavailableError, match="not idempotent"):
        make(FailoverClusterInvoker, invokers).invoke(invocation())
    assert sum(len(i.calls) for i in invokers) == 1


def test_failover_retries_a_non_idempotent_method_when_the_request_was_surely_not_sent() -> None:
    refused = FakeInvoker(1, ConnectionRefusedByProviderError("10.0.0.1:1: connection refused"))
    good = FakeInvoker(2, "sent once")
    cluster = make(FailoverClusterInvoker, [refused, good], RoundRobinLoadBalancer)
    assert cluster.invoke(invocation()) == "sent once"
    assert len(refused.calls) == 1 and len(good.calls) == 1


def test_the_consumer_may_declare_a_method_idempotent() -> None:
    invokers = [FakeInvoker(20000 + i, down(20000 + i)) for i in range(3)]
    with pytest.raises(ProviderUnavailableError):
        make(FailoverClusterInvoker, invokers, idempotent="true").invoke(invocation())
    assert sum(len(i.calls) for i in invokers) == 3
    invokers = [FakeInvoker(20000 + i, down(20000 + i), **IDEMPOTENT) for i in range(3)]
    with pytest.raises(ProviderUnavailableError, match="not idempotent"):
        make(FailoverClusterInvoker, invokers, idempotent="false").invoke(invocation())
    assert sum(len(i.calls) for i in invokers) == 1


def test_the_retry_budget_stops_retry_storms_and_refills() -> None:
    invokers = [FakeInvoker(20000 + i, down(20000 + i), **IDEMPOTENT) for i in range(3)]
    cluster = make(FailoverClusterInvoker, invokers, retries=2, **{"retry.budget": "10"})
    attempts = []
    for _ in range(6):
        before = sum(len(i.calls) for i in invokers)
        with pytest.raises(ProviderUnavailableError) as caught:
            cluster.invoke(invocation())
        attempts.append(sum(len(i.calls) for i in invokers) - before)
    # 10 tokens, retries while more than 5 are left: 3 + 2 attempts, then one attempt per call
    assert attempts == [3, 2, 1, 1, 1, 1]
    assert "retry budget is exhausted" in str(caught.value)
    for invoker in invokers:
        invoker.outcome = "ok"
    for _ in range(60):  # each success gives back 0.1 token
        cluster.invoke(invocation())
    assert cluster.budget.allows_retry


def test_all_attempts_share_one_deadline() -> None:
    def slow_failure(inv):
        time.sleep(0.05)
        raise CallTimeoutError("demo.Svc.find: deadline exceeded")

    invokers = [FakeInvoker(20000 + i, slow_failure, **IDEMPOTENT) for i in range(5)]
    cluster = make(FailoverClusterInvoker, invokers, retries=4)
    with pytest.raises(CallTimeoutError, match="deadline passed"):
        cluster.invoke(invocation(timeout=0.08))
    assert sum(len(i.calls) for i in invokers) < 5
    deadlines = {c.deadline for i in invokers for c in i.calls}
    assert len(deadlines) == 1  # every attempt carries the same deadline to the provider


@pytest.mark.parametrize("params", [{"retries": "-1"}, {"retry.backoff": "-1"}, {"idempotent": "maybe"},
                                    {"retry.budget": "0"}, {"outlier.failures": "0"}])
def test_failover_rejects_bad_options_at_construction(params) -> None:
    with pytest.raises(ConfigurationError):
        make(FailoverClusterInvoker, fakes(2), **params)


# -- outlier ejection ---------------------------------------------------------------------

def test_a_provider_failing_again_and_again_is_ejected_then_returns() -> None:
    bad = FakeInvoker(1, down(1), **IDEMPOTENT)
    good = [FakeInvoker(2 + i, "ok", **IDEMPOTENT) for i in range(3)]
    cluster = make(FailoverClusterInvoker, [bad, *good], RoundRobinLoadBalancer)
    for _ in range(40):
        assert cluster.invoke(invocation()) == "ok"
    assert len(bad.calls) == 5  # ejected after 5 consecutive failures
    stats = stats_of(bad)
    assert stats.times_ejected == 1 and 15 < stats.ejected_until - time.monotonic() <= 30
    stats.ejected_until = time.monotonic() - 1  # its 30 s are up
    bad.outcome = "ok"
    for _ in range(8):
        cluster.invoke(invocation())
    assert len(bad.calls) > 5 and stats.consecutive_failures == 0  # back in the list


def test_ejection_time_grows_and_is_capped() -> None:
    bad = FakeInvoker(1, down(1), **IDEMPOTENT)
    cluster = make(FailoverClusterInvoker, [bad, *fakes(3, **IDEMPOTENT)],
                   **{"outlier.interval": "100", "outlier.max_interval": "250"})
    stats = stats_of(bad)
    for expected in (100, 200, 250, 250):
        while not stats.ejected_until:
            with pytest.raises(ProviderUnavailableError):
                cluster.call(bad, invocation())
        assert expected - 15 < stats.ejected_until - time.monotonic() <= expected
        stats.ejected_until = time.monotonic() - 1
        cluster.list(invocation())  # lets it return


def test_never_more_than_the_configured_share_is_ejected() -> None:
    invokers = [FakeInvoker(20000 + i, down(20000 + i)) for i in range(4)]
    cluster = make(FailfastClusterInvoker, invokers)  # share 0.5 of 4: at most 2
    for _ in range(10):
        for invoker in invokers:
            with pytest.raises(ProviderUnavailableError):
                cluster.call(invoker, invocation())
    assert sum(1 for i in invokers if stats_of(i).ejected_until) == 2
    assert len(cluster.list(invocation())) == 2


# -- failback ---------------------------------------------------------------------------------

def test_failback_status_code_decides() -> None:
    bad, good = FakeInvoker(1, down(1), **IDEMPOTENT), FakeInvoker(2, "from the other", **IDEMPOTENT)
    cluster = make(FailbackClusterInvoker, [bad, good], RoundRobinLoadBalancer)
    assert cluster.invoke(invocation()) == "from the other"  # UNAVAILABLE: retry
    late = fakes(2, CallTimeoutError("demo.Svc.find: deadline exceeded"))
    cluster = make(FailbackClusterInvoker, late, **{"failback.default": '{"items": []}'})
    assert cluster.invoke(invocation()) == {"items": []}  # DEADLINE_EXCEEDED: default
    assert sum(len(i.calls) for i in late) == 1
    with pytest.raises(ValueError):  # business error (UNKNOWN): raise
        make(FailbackClusterInvoker, fakes(2, ValueError("nope"))).invoke(invocation())
    mapped = make(FailbackClusterInvoker, fakes(2, ValueError("nope")),
                  **{"failback.codes": "UNKNOWN:default,UNAVAILABLE:raise", "failback.default": "0"})
    assert mapped.invoke(invocation()) == 0
    with pytest.raises(ProviderUnavailableError):
        make(FailbackClusterInvoker, [FakeInvoker(1, down(1), **IDEMPOTENT), *fakes(2)],
             RoundRobinLoadBalancer, **{"failback.codes": "UNAVAILABLE:raise"}).invoke(invocation())


@pytest.mark.parametrize("codes", ["UNAVAILABLE", "NOPE:retry", "UNAVAILABLE:later"])
def test_failback_rejects_a_bad_mapping(codes: str) -> None:
    with pytest.raises(ConfigurationError, match="failback.codes"):
        make(FailbackClusterInvoker, fakes(2), **{"failback.codes": codes})


# -- failfast, failsafe ---------------------------------------------------------------------

def test_failfast_makes_one_attempt() -> None:
    invokers = [FakeInvoker(20000 + i, down(20000 + i), **IDEMPOTENT) for i in range(3)]
    with pytest.raises(ProviderUnavailableError):
        make(FailfastClusterInvoker, invokers).invoke(invocation())
    assert sum(len(i.calls) for i in invokers) == 1


def test_failsafe_swallows_logs_and_returns_the_default(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "govrpc.cluster"):
        assert make(FailsafeClusterInvoker, fakes(2, down(1))).invoke(invocation()) is None
        cluster = make(FailsafeClusterInvoker, fakes(2, KeyError("k")), **{"failsafe.default": "[]"})
        assert cluster.invoke(invocation()) == []
    assert "failsafe" in caplog.text and "KeyError" in caplog.text


# -- failcache ------------------------------------------------------------------------------------

def test_failcache_accepts_then_resends_until_it_works() -> None:
    flaky = FakeInvoker(1, down(1))
    cluster = make(FailcacheClusterInvoker, [flaky], **{"failcache.period": "60"})
    result = cluster.invoke(invocation("notify", "event-1", timeout=0.5))
    assert isinstance(result, RetryAccepted) and not result and "connection reset" in result.error
    assert cluster.pending == 1 and cluster.queued == 1
    flaky.outcome = "ok"
    cluster.resend()
    assert cluster.pending == 0 and cluster.recovered == 1
    assert [c.args for c in flaky.calls] == [("event-1",), ("event-1",)]
    assert flaky.calls[1].deadline > flaky.calls[0].deadline  # a fresh deadline for the re-send
    cluster.close()


def test_failcache_gives_up_after_n_resends_and_reports(caplog: pytest.LogCaptureFixture) -> None:
    reports: list[tuple[Any, BaseException]] = []
    remove = on_give_up(lambda inv, exc: reports.append((inv, exc)))
    try:
        dead = FakeInvoker(1, down(1))
        cluster = make(FailcacheClusterInvoker, [dead], **{"failcache.retries": "2", "failcache.period": "60"})
        cluster.invoke(invocation("notify", "event-2"))
        with caplog.at_level(logging.ERROR, "govrpc.cluster"):
            cluster.resend()
            assert cluster.pending == 1 and not reports
            cluster.resend()
        assert cluster.pending == 0 and cluster.given_up == 1
        assert len(reports) == 1 and reports[0][0].args == ("event-2",)
        assert isinstance(reports[0][1], ProviderUnavailableError)
        assert "gave up" in caplog.text and len(dead.calls) == 3
    finally:
        remove()


def test_failcache_queue_is_bounded() -> None:
    cluster = make(FailcacheClusterInvoker, fakes(2, down(1)), **{"failcache.size": "2", "failcache.period": "60"})
    assert isinstance(cluster.invoke(invocation("notify", 1)), RetryAccepted)
    assert isinstance(cluster.invoke(invocation("notify", 2)), RetryAccepted)
    with pytest.raises(FailcacheFullError, match=r"queue is full \(2 calls"):
        cluster.invoke(invocation("notify", 3))
    assert cluster.pending == 2 and cluster.refused == 1
    cluster.close()


def test_failcache_timer_resends_in_the_background() -> None:
    flaky = FakeInvoker(1, down(1))
    cluster = make(FailcacheClusterInvoker, [flaky], **{"failcache.period": "0.02"})
    assert isinstance(cluster.invoke(invocation("notify", "x")), RetryAccepted)
    flaky.outcome = "ok"
    assert wait_until(lambda: cluster.recovered == 1)
    cluster.close()


def test_failcache_closed_during_a_resend_reports_every_queued_call() -> None:
    reports: list[Any] = []
    remove = on_give_up(lambda inv, exc: reports.append(inv.args))
    in_flight, release = threading.Event(), threading.Event()

    def slow_failure(inv: Invocation) -> Any:
        in_flight.set()
        release.wait(5)
        raise ProviderUnavailableError("still down")

    try:
        flaky = FakeInvoker(1, down(1))
        cluster = make(FailcacheClusterInvoker, [flaky], **{"failcache.period": "0.05", "failcache.retries": "5"})
        for n in range(3):
            assert isinstance(cluster.invoke(invocation("notify", n)), RetryAccepted)
        flaky.outcome = slow_failure
        assert in_flight.wait(5)             # the timer is re-sending the first call
        closer = threading.Thread(target=cluster.stop)
        closer.start()
        release.set()
        closer.join(10)
        assert not closer.is_alive()
        assert sorted(reports) == [(0,), (1,), (2,)] and cluster.pending == 0 and cluster.given_up == 3
        with pytest.raises(ProviderUnavailableError):  # stopped: a failure is not queued where nothing re-sends
            cluster.invoke(invocation("notify", 9))
        assert cluster.pending == 0
        cluster.close()
    finally:
        release.set()
        remove()


def test_failcache_replaced_by_a_configurator_change_hands_its_queue_over() -> None:
    reports: list[Any] = []
    remove = on_give_up(lambda inv, exc: reports.append(inv.args))
    try:
        invokers = fakes(1, down(1))
        old = make(FailcacheClusterInvoker, invokers, **{"failcache.period": "60"})
        new = make(FailcacheClusterInvoker, invokers, **{"failcache.period": "60", "failcache.retries": "5"})
        for n in range(2):
            old.invoke(invocation("notify", n))
        old.stop(new)
        assert new.pending == 2 and old.pending == 0 and reports == []
        assert isinstance(old.invoke(invocation("notify", 2)), RetryAccepted)  # a late call goes to the successor
        assert new.pending == 3
        new.stop()
        assert sorted(reports) == [(0,), (1,), (2,)]
    finally:
        remove()


@pytest.mark.parametrize("params", [{"failcache.size": "0"}, {"failcache.retries": "0"}, {"failcache.period": "-1"}])
def test_failcache_rejects_bad_options(params) -> None:
    with pytest.raises(ConfigurationError, match="failcache"):
        make(FailcacheClusterInvoker, fakes(1), **params)


# -- forking, broadcast ----------------------------------------------------------------------------

def test_forking_returns_the_first_success_without_waiting_for_the_rest() -> None:
    release = threading.Event()

    def stuck(inv):
        release.wait(10)
        return "late"

    fast = FakeInvoker(1, "first")
    slow = [FakeInvoker(2 + i, stuck) for i in range(2)]
    cluster = make(ForkingClusterInvoker, [fast, *slow], forks=3)
    assert cluster.invoke(invocation()) == "first"
    assert not release.is_set()  # the slow branches were still running: nobody waited for them
    release.set()


def test_forking_cancels_branches_that_have_not_started(monkeypatch: pytest.MonkeyPatch) -> None:
    import concurrent.futures

    from govrpc.cluster import drive

    monkeypatch.setattr(drive, "_pool", concurrent.futures.ThreadPoolExecutor(1))  # one branch at a time
    first = FakeInvoker(1, "first")
    others = [FakeInvoker(2 + i, lambda inv: time.sleep(0.2) or "other") for i in range(3)]
    cluster = make(ForkingClusterInvoker, [first, *others], RoundRobinLoadBalancer, forks=4)
    assert cluster.invoke(invocation()) == "first"
    drive._pool.shutdown(wait=True)
    # at most the branch the lone worker picked up before the cancel ran; the others never started
    assert sum(len(i.calls) for i in others) <= 1


def test_forking_calls_n_providers_and_names_them_when_all_fail() -> None:
    invokers = [FakeInvoker(20000 + i, down(20000 + i)) for i in range(5)]
    cluster = make(ForkingClusterInvoker, invokers, forks=2)
    with pytest.raises(ProviderUnavailableError, match="all 2 forked calls failed") as caught:
        cluster.invoke(invocation())
    called = [i for i in invokers if i.calls]
    assert len(called) == 2 and all(i.url.address in str(caught.value) for i in called)
    with pytest.raises(ConfigurationError, match="forks"):
        make(ForkingClusterInvoker, invokers, forks=0)


def test_broadcast_calls_everyone_and_fails_if_any_fails() -> None:
    invokers = fakes(4, "done")
    assert make(BroadcastClusterInvoker, invokers).invoke(invocation()) == "done"
    assert all(len(i.calls) == 1 for i in invokers)
    invokers[2].outcome = down(invokers[2].url.port)
    with pytest.raises(ProviderUnavailableError, match=r"1 of 4 providers failed \[10.0.0.1:20002\]"):
        make(BroadcastClusterInvoker, invokers).invoke(invocation())
    assert all(len(i.calls) == 2 for i in invokers)


def test_broadcast_tolerates_failures_under_the_configured_percentage() -> None:
    invokers = fakes(4, "done")
    invokers[0].outcome = down(1)
    cluster = make(BroadcastClusterInvoker, invokers, **{"broadcast.fail.percent": "50"})
    assert cluster.invoke(invocation()) == "done"  # 25 % failed
    invokers[1].outcome = down(2)
    with pytest.raises(ProviderUnavailableError, match="2 of 4"):
        cluster.invoke(invocation())  # 50 % failed
    with pytest.raises(ConfigurationError, match="broadcast.fail.percent"):
        make(BroadcastClusterInvoker, invokers, **{"broadcast.fail.percent": "0"})


def test_stats_are_recorded_per_call() -> None:
    invoker = FakeInvoker(1, lambda inv: time.sleep(0.01) or "ok")
    cluster = make(FailfastClusterInvoker, [invoker])
    cluster.invoke(invocation())
    stats = stats_of(invoker)
    assert stats.active == 0 and stats.ewma >= 0.01 and stats.consecutive_failures == 0
    invoker.outcome = down(1)
    with pytest.raises(ProviderUnavailableError):
        cluster.invoke(invocation())
    assert stats.consecutive_failures == 1 and stats.active == 0


def test_forking_cancels_the_calls_of_branches_in_flight() -> None:
    from govrpc.context import current_cancel_scope

    cancelled = []
    registered = threading.Semaphore(0)

    def in_flight(inv):
        stop = threading.Event()
        current_cancel_scope().add(stop.set)  # as GrpcInvoker registers its RPC
        registered.release()
        stop.wait(10)
        cancelled.append(stop.is_set())
        raise ProviderUnavailableError("cancelled")

    def after_the_others(inv):  # wins only once both other calls are in flight
        assert registered.acquire(timeout=10) and registered.acquire(timeout=10)
        return "first"

    fast = FakeInvoker(1, after_the_others)
    slow = [FakeInvoker(2 + i, in_flight) for i in range(2)]
    cluster = make(ForkingClusterInvoker, [fast, *slow], forks=3)
    assert cluster.invoke(invocation()) == "first"
    assert wait_until(lambda: len(cancelled) == 2)
    assert cancelled == [True, True]


def test_failover_names_what_it_tried_when_every_provider_left() -> None:
    bad = FakeInvoker(1, down(1), **IDEMPOTENT)

    class Emptied(StaticDirectory):
        def list(self, inv):
            listed = self.invokers
            self.invokers = ()  # the only provider deregisters while its call fails
            return listed

    url = consumer_url(**FAST)
    cluster = FailoverClusterInvoker(Emptied(KEY, url, [bad]), RandomLoadBalancer(url), url)
    with pytest.raises(ProviderUnavailableError, match=r"\[10.0.0.1:1\].*no other provider is left"):
        cluster.invoke(invocation())


def test_a_deadline_that_passes_between_attempts_is_a_timeout() -> None:
    def slow_unavailable(inv):
        time.sleep(0.1)
        raise ProviderUnavailableError("10.0.0.1: connection reset")

    invokers = [FakeInvoker(20000 + i, slow_unavailable, **IDEMPOTENT) for i in range(3)]
    with pytest.raises(CallTimeoutError, match="deadline passed.*connection reset") as caught:
        make(FailoverClusterInvoker, invokers).invoke(invocation(timeout=0.05))
    assert caught.value.code == "DEADLINE_EXCEEDED"
    assert sum(len(i.calls) for i in invokers) == 1


def test_failures_and_our_own_cancels_do_not_feed_the_latency_average() -> None:
    fast_failure = FakeInvoker(1, down(1))
    cancelled = FakeInvoker(2, CancelledError("demo.Svc.find: cancelled (a losing branch)"))
    for invoker in (fast_failure, cancelled):
        cluster = make(FailfastClusterInvoker, [invoker])
        with pytest.raises(GovRpcError):
            cluster.invoke(invocation())
    assert stats_of(fast_failure).ewma == 0 and stats_of(fast_failure).consecutive_failures == 1
    assert stats_of(cancelled).ewma == 0 and stats_of(cancelled).consecutive_failures == 0
    assert stats_of(cancelled).active == 0


def test_a_call_already_late_does_not_count_against_the_provider() -> None:
    healthy = FakeInvoker(1)
    cluster = make(FailfastClusterInvoker, [healthy])
    with pytest.raises(CallTimeoutError, match="deadline passed before calling"):
        cluster.invoke(invocation(timeout=-1.0))
    assert healthy.calls == [] and stats_of(healthy).consecutive_failures == 0


@pytest.mark.parametrize("cls", [ForkingClusterInvoker, BroadcastClusterInvoker])
def test_parallel_strategies_work_without_a_deadline(cls) -> None:
    """An Invocation's deadline defaults to infinity (Admin's dry runs, direct use)."""
    from govrpc.invocation import Invocation

    cluster = make(cls, fakes(2))
    assert cluster.invoke(Invocation(KEY, "find")) == "ok"
