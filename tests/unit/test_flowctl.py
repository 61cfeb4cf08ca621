"""Flow-control decisions, one class at a time, on a fake clock: limiters, concurrency, priorities,
refusal reporting, and the keys' checks."""

from __future__ import annotations

import logging
import math
import threading
from typing import Any

import pytest

from govrpc.configurator import configure_consumer, configure_server, parse_configurator
from govrpc.exceptions import ConfigurationError, ExtensionNotFoundError, RuleError
from govrpc.extension import extension_names, get_extension
from govrpc.flowctl import events
from govrpc.flowctl.concurrency import ConcurrencyLimiter
from govrpc.flowctl.filter import ConsumerFlowFilter, ProviderFlowFilter
from govrpc.flowctl.limiter import (
    QueueingLimiter,
    RateLimiter,
    SlidingWindowLimiter,
    TokenBucketLimiter,
    WarmupLimiter,
)
from govrpc.flowctl.priority import HEADROOM, Priority, parse_priority
from govrpc.flowctl.rules import check_flow_settings, render_flow_rule
from govrpc.flowctl.settings import PRIORITY, TPS, TPS_BURST, TPS_LIMITER
from govrpc.invocation import Invocation, Invoker
from govrpc.url import URL, ServiceKey


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def admitted_over(limiter: RateLimiter, clock: Clock, seconds: float, step: float = 0.001) -> int:
    """Offer a call every ``step`` s for ``seconds`` s; how many were admitted."""
    count = 0
    for _ in range(int(round(seconds / step))):
        clock.now += step
        count += limiter.acquire()
    return count


def test_the_built_in_limiters_are_entry_points() -> None:
    assert {"tokenbucket", "slidingwindow", "warmup", "queueing"} <= set(extension_names("govrpc.limiter"))
    assert get_extension("govrpc.limiter", "tokenbucket") is TokenBucketLimiter


def test_token_bucket_gives_its_burst_then_its_rate() -> None:
    clock = Clock()
    bucket = TokenBucketLimiter(100, 20, clock=clock)
    assert sum(bucket.acquire() for _ in range(50)) == 20  # the burst, at one instant
    assert admitted_over(bucket, clock, 3.0) == pytest.approx(300, abs=2)


def test_headroom_shortens_the_burst_of_low_priorities_not_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucketLimiter(100, 20, clock=clock)
    assert sum(bucket.acquire(HEADROOM[Priority.SHEDDABLE]) for _ in range(50)) == 10  # half the burst kept
    assert sum(bucket.acquire() for _ in range(50)) == 10  # which critical calls still get


def test_sliding_window_admits_the_rate_in_any_second() -> None:
    clock = Clock(1000.05)
    window = SlidingWindowLimiter(50, clock=clock)
    assert sum(window.acquire() for _ in range(80)) == 50
    clock.now += 0.5
    assert not window.acquire()  # the first 50 are still in the window
    clock.now += 0.6
    assert sum(window.acquire() for _ in range(80)) == 50
    assert admitted_over(window, clock, 4.0) == pytest.approx(200, abs=50)


def test_warm_up_climbs_from_a_third_to_the_full_rate() -> None:
    clock = Clock()
    limiter = WarmupLimiter(90, warmup=3.0, clock=clock)
    first = admitted_over(limiter, clock, 1.0)
    second = admitted_over(limiter, clock, 1.0)
    third = admitted_over(limiter, clock, 1.0)
    after = admitted_over(limiter, clock, 1.0)
    # rate(t) = 30 + 60 t / 3: 40, 60 and 80 calls in the three seconds, then 90 a second
    assert first == pytest.approx(40, abs=3) and second == pytest.approx(60, abs=3)
    assert third == pytest.approx(80, abs=3) and after == pytest.approx(90, abs=3)


def test_queueing_spaces_calls_and_refuses_beyond_the_longest_wait() -> None:
    clock = Clock()
    limiter = QueueingLimiter(10, clock=clock)  # one call every 0.1 s
    waits = [limiter.reserve(0.35) for _ in range(6)]
    assert waits[:4] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert waits[4:] == [None, None]  # 0.4 s away: more than the longest wait
    clock.now += 0.45  # the queue has drained
    assert limiter.reserve(0.0) == 0.0


@pytest.mark.parametrize("rate", [0, -1, float("nan"), float("inf"), "ten", True])
def test_a_limiter_refuses_a_rate_that_is_not_positive(rate: Any) -> None:
    with pytest.raises(ConfigurationError, match="tps"):
        TokenBucketLimiter(rate)


def test_a_limiter_refuses_a_burst_below_one() -> None:
    with pytest.raises(ConfigurationError, match="tps.burst"):
        TokenBucketLimiter(10, 0.5)


@pytest.mark.parametrize("key,value", [("tps", "0"), ("tps", "-5"), ("tps", "nan"), ("tps", "fast"),
                                       ("find.tps", "inf"), ("tps.burst", "0.5"), ("tps.limiter", "leaky"),
                                       ("priority", "urgent"), ("concurrency", "0"), ("actives", "-1"),
                                       ("cluster.mode", "shared"), ("tps.warmup", "0")])
def test_bad_flow_settings_are_refused_where_written_naming_the_key(key: str, value: str) -> None:
    with pytest.raises(RuleError, match=key.replace(".", r"\.")):
        parse_configurator(f"{key} = {value}\n")
    with pytest.raises(ConfigurationError, match=key.replace(".", r"\.")):
        check_flow_settings({key: value})


def test_an_unknown_limiter_error_lists_the_installed_ones() -> None:
    with pytest.raises(ExtensionNotFoundError, match="tokenbucket"):
        TPS_LIMITER.check("leaky")


def test_a_key_that_is_no_flow_key_is_refused_by_set_flow() -> None:
    with pytest.raises(ConfigurationError, match="'weight' is not a flow key"):
        check_flow_settings({"weight": "5"})


def test_priorities_parse_and_order() -> None:
    assert parse_priority("Sheddable_Plus") is Priority.SHEDDABLE_PLUS
    assert Priority.SHEDDABLE < Priority.SHEDDABLE_PLUS < Priority.CRITICAL < Priority.CRITICAL_PLUS
    assert PRIORITY.text("critical_plus") == "critical_plus"
    with pytest.raises(ConfigurationError, match="critical_plus, critical, sheddable_plus, sheddable"):
        parse_priority("high")


def test_concurrency_never_exceeds_its_limit_under_32_threads() -> None:
    limiter = ConcurrencyLimiter(3)
    seen: list[int] = []
    lock = threading.Lock()
    inside = [0]

    def work() -> None:
        for _ in range(300):
            if limiter.acquire():
                with lock:
                    inside[0] += 1
                    seen.append(inside[0])
                with lock:
                    inside[0] -= 1
                limiter.release()

    threads = [threading.Thread(target=work) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert seen and max(seen) <= 3 and limiter.active == 0


def test_concurrency_headroom_keeps_slots_for_higher_priorities() -> None:
    limiter = ConcurrencyLimiter(8)
    assert sum(limiter.acquire(HEADROOM[Priority.SHEDDABLE]) for _ in range(8)) == 4
    assert sum(limiter.acquire() for _ in range(8)) == 4


class Target(Invoker):
    def __init__(self) -> None:
        self.url = URL.parse("grpc://127.0.0.1:1/demo.S")

    def invoke(self, invocation: Invocation) -> Any:
        return "ok"


def invocation(method: str = "find", **attachments: str) -> Invocation:
    return Invocation(ServiceKey("demo.S"), method, attachments=dict(attachments), deadline=math.inf)


def test_filters_bind_to_nothing_without_a_flow_key() -> None:
    url = URL.parse("grpc://127.0.0.1:1/demo.S?weight=5&timeout=2")
    assert ProviderFlowFilter().bind(url) is None
    assert ConsumerFlowFilter().bind(url.with_params(retries="1")) is None


def test_a_refusal_is_counted_reported_and_named() -> None:
    events.reset_refusal_counts()
    seen: list[events.Refusal] = []
    events.add_refusal_listener(seen.append)
    try:
        bound = ProviderFlowFilter().bind(URL.parse("grpc://127.0.0.1:1/demo.S?find.tps=1&find.tps.burst=1"))
        assert bound is not None
        assert bound.invoke(Target(), invocation()) == "ok"
        with pytest.raises(Exception) as refused:
            bound.invoke(Target(), invocation(priority="sheddable"))
        assert bound.invoke(Target(), invocation("other")) == "ok"  # a per-method limit only
    finally:
        events.remove_refusal_listener(seen.append)
    error = refused.value
    assert type(error).__name__ == "RateLimitedError" and error.code == "RESOURCE_EXHAUSTED"
    assert "limited on the provider by find.tps = 1 (rate) at priority sheddable" in str(error)
    assert error.reason == "rate" and error.limit == "find.tps" and error.retry_after > 0
    assert [(r.method, r.reason, r.priority) for r in seen] == [("find", "rate", "sheddable")]
    assert events.refusal_counts() == {("demo.S", "find", "rate"): 1}


def test_refusal_logging_is_rate_limited(caplog: Any) -> None:
    events.reset_refusal_counts()
    refusal = events.Refusal("demo.S", "find", "provider", "rate", "tps", "1", "critical", retry_after=0.1)
    with caplog.at_level(logging.WARNING, logger="govrpc.flowctl"):
        for _ in range(500):
            events.refuse(refusal)
    assert len(caplog.records) == 1  # a storm: one line, the rest counted
    assert events.refusal_counts()[("demo.S", "find", "rate")] == 500


def test_limiters_survive_a_rebind_with_the_same_settings() -> None:
    flow = ProviderFlowFilter()
    url = URL.parse("grpc://127.0.0.1:1/demo.S?concurrency=2&tps=10")
    first, second = flow.bind(url), flow.bind(url.with_params(weight="3"))
    assert first.service.slots is second.service.slots and first.service.rate is second.service.rate
    third = flow.bind(url.with_params(concurrency="3"))
    assert third.service.slots is not first.service.slots and third.service.rate is first.service.rate


def test_a_consumer_gives_calls_its_configured_priority_unless_the_caller_chose() -> None:
    bound = ConsumerFlowFilter().bind(URL.parse("consumer://h/demo.S?priority=sheddable&find.priority=critical_plus"))
    plain, chosen, other = invocation(), invocation(priority="sheddable_plus"), invocation("other")
    for call in (plain, chosen, other):
        bound.invoke(Target(), call)
    assert plain.attachments["priority"] == "critical_plus"
    assert chosen.attachments["priority"] == "sheddable_plus"
    assert other.attachments["priority"] == "sheddable"


def test_provider_keys_of_a_general_rule_reach_providers_not_consumers() -> None:
    general = parse_configurator("tps = 5\nactives = 2\n", "g")
    scoped = parse_configurator("application = web\ntps = 7\n", "a")
    by_address = parse_configurator("address = 127.0.0.1:1\nconcurrency = 3\n", "h")
    provider = URL.parse("grpc://127.0.0.1:1/demo.S")
    assert configure_server(provider, [general, scoped, by_address]).params == {"tps": "5", "concurrency": "3"}
    consumer = URL.parse("consumer://h/demo.S?application=web")
    assert configure_consumer(consumer, [general, scoped], "web").params == {
        "application": "web", "actives": "2", "tps": "7"}
    with pytest.raises(RuleError, match="not actives"):
        parse_configurator("address = 127.0.0.1:1\nactives = 3\n")


def test_a_flow_rule_renders_and_checks() -> None:
    text = render_flow_rule({"tps": "5", "find.concurrency": "2"}, address="127.0.0.1:9")
    assert parse_configurator(text).params == {"tps": "5", "find.concurrency": "2"}
    assert TPS.check("2.5") == 2.5 and TPS_BURST.check("1") == 1.0


def test_adaptive_levels_follow_the_signals_and_shed_by_priority(caplog: Any) -> None:
    from govrpc.flowctl.adaptive import HOLD, Level, OverloadDetector, level_changes

    clock, cpu, backlog = Clock(), [0.1], [0]
    detector = OverloadDetector("demo.S", cpu=lambda: cpu[0], backlog=lambda: backlog[0], clock=clock)
    assert detector.sample() is Level.NORMAL and detector.admits(Priority.SHEDDABLE)
    backlog[0] = 5  # calls wait for a worker
    with caplog.at_level(logging.WARNING, logger="govrpc.flowctl"):
        assert detector.sample() is Level.BUSY
    assert not detector.admits(Priority.SHEDDABLE) and detector.admits(Priority.SHEDDABLE_PLUS)
    assert "protection level normal -> busy" in caplog.text
    cpu[0] = 1.0
    for _ in range(3):  # smoothed: one hot reading does not make an overload
        clock.now += 0.3
        assert detector.sample() is Level.BUSY
    clock.now += 0.3
    assert detector.sample() is Level.OVERLOADED  # smoothed CPU past 90 %
    assert not detector.admits(Priority.SHEDDABLE_PLUS) and detector.admits(Priority.CRITICAL)
    cpu[0], backlog[0] = 0.0, 0
    clock.now += 0.3
    assert detector.sample() is Level.OVERLOADED  # held: it does not flap back at once
    clock.now += HOLD
    for _ in range(5):
        clock.now += 0.3
        detector.sample()
    assert detector.level is Level.NORMAL
    changes = level_changes()
    assert changes[("demo.S", "normal", "busy")] >= 1 and changes[("demo.S", "busy", "overloaded")] >= 1


def test_adaptive_bbr_limit_is_throughput_times_min_latency() -> None:
    from govrpc.flowctl.adaptive import OverloadDetector

    clock = Clock(100.0)
    detector = OverloadDetector("demo.S", cpu=lambda: 0.0, backlog=lambda: 0, clock=clock)
    assert detector.bbr_limit() == float("inf")  # no history yet
    for _ in range(50):  # 50 calls of 20 ms each, done within one 100 ms window: 500/s x 0.02 s
        started = detector.begin()
        clock.now += 0.0001
        detector.end(started - 0.02)
    assert detector.bbr_limit() == pytest.approx(10, rel=0.05)


def test_a_shed_call_names_the_level() -> None:
    flow = ProviderFlowFilter()
    bound = flow.bind(URL.parse("grpc://127.0.0.1:1/demo.S?adaptive=true"))
    from govrpc.flowctl.adaptive import Level

    bound.detector.level = Level.BUSY
    bound.detector._sampled_at = float("inf")  # no sample: the level stays as set
    with pytest.raises(Exception) as shed:
        bound.invoke(Target(), invocation(priority="sheddable"))
    assert "shed on the provider by adaptive = true (shed) at priority sheddable, level busy" in str(shed.value)
    assert bound.invoke(Target(), invocation(priority="critical")) == "ok"
    assert flow.bind(URL.parse("grpc://127.0.0.1:1/demo.S?adaptive=true")).detector is bound.detector


def test_connections_count_until_idle() -> None:
    from govrpc.flowctl.concurrency import ConnectionLimiter

    clock = Clock()
    limiter = ConnectionLimiter(2, idle=30.0, clock=clock)
    assert limiter.admit("ipv4:127.0.0.1:1") and limiter.admit("ipv4:127.0.0.1:2")
    assert limiter.admit("ipv4:127.0.0.1:1")  # a connection already served goes on
    assert not limiter.admit("ipv4:127.0.0.1:3")  # the cap: refused at once
    clock.now += 10
    limiter.admit("ipv4:127.0.0.1:1")
    clock.now += 25  # :2 idle for 35 s: it no longer counts
    assert limiter.admit("ipv4:127.0.0.1:3") and limiter.connected == 2
