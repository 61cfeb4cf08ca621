"""Units of the monitor package: summaries, health factors, the zone router, keepalive settings."""

from __future__ import annotations

import json
import time
from typing import Callable

import pytest

from govrpc.cluster.healthweighted import health_factor
from govrpc.cluster.stats import ProviderState
from govrpc.exceptions import ConfigurationError
from govrpc.invocation import Invocation, Invoker
from govrpc.monitor.health import CallWindow, HealthSummary, parse_summary, read_summaries, summarize
from govrpc.router.zone import ZoneRouter
from govrpc.rpc.server import Keepalive
from govrpc.url import URL, ServiceKey


def summary(**fields: object) -> str:
    return json.dumps({"v": 1, "address": "10.0.0.1:5", "time": time.time(), "interval": 5, **fields})


def test_a_summary_round_trips_and_garbage_is_refused_naming_the_field() -> None:
    h = HealthSummary(address="10.0.0.1:5", time=time.time(), interval=5, qps=3.5, success_rate=0.9, cpu=0.2)
    assert parse_summary(h.text()) == h
    for text, field in ((summary(success_rate=2), "success_rate"), (summary(qps="fast"), "qps"),
                        (summary(serving=1), "serving"), (summary(time=float("inf")), "not JSON|time"),
                        (summary(side="router"), "side"), ('{"v": 2}', "version")):
        with pytest.raises(ValueError, match=field):
            parse_summary(text)


def test_stale_summaries_are_left_out_and_garbage_logged_not_raised() -> None:
    texts = {"old": summary(time=time.time() - 100), "new": summary(address="h:2"), "junk": "]["}
    assert list(read_summaries(texts, where="unit")) == ["h:2"]
    assert set(read_summaries(texts, where="unit", fresh_only=False)) == {"10.0.0.1:5", "h:2"}


def test_a_window_summarises_counts_percentiles_and_success() -> None:
    window = CallWindow()
    for i in range(100):
        window.record((i + 1) / 1000, ok=i % 10 != 0)
    h = summarize(window, 2.0, address="a:1", application="x", serving=True, zone="z", cpu=None, rss_mb=None,
                  now=1.0)
    assert (h.calls, h.qps, h.success_rate) == (100, 50.0, 0.9)
    assert h.p50_ms == pytest.approx(51, abs=1) and h.p99_ms == pytest.approx(100, abs=1)
    assert window.drain() == (0, 0, [])
    for _ in range(10):
        window.record(0.0000003, ok=True)  # a method that answers in 0.3 µs
    h = summarize(window, 1.0, address="a:1", application="x", serving=True, zone="z", cpu=None, rss_mb=None, now=2.0)
    assert h.p50_ms == pytest.approx(0.0003)  # not rounded away to "no time at all"


def test_health_factor_has_a_floor_and_follows_every_signal() -> None:
    now = time.time()
    state = ProviderState()
    assert health_factor(state, 0.0, now, 0.05) == 1.0
    state.ewma = 0.05
    assert health_factor(state, 0.001, now, 0.05) == pytest.approx(0.14)
    assert health_factor(state, 0.023, now, 0.05) == 1.0  # within twice the best plus 5 ms: jitter
    state.ewma = 0.004
    assert health_factor(state, 0.0001, now, 0.05) == 1.0  # sub-millisecond noise
    state.ewma, state.consecutive_failures = 0.0, 3
    assert health_factor(state, 0.0, now, 0.05) == 0.25
    state.consecutive_failures = 1000
    assert health_factor(state, 0.0, now, 0.05) == 0.05
    state.consecutive_failures = 0
    state.health = HealthSummary(address="a:1", time=now, interval=5, serving=False)
    assert health_factor(state, 0.0, now, 0.05) == 0.05
    state.health = HealthSummary(address="a:1", time=now - 3600, interval=5, serving=False)  # stale: ignored
    assert health_factor(state, 0.0, now, 0.05) == 1.0
    state.health = HealthSummary(address="a:1", time=now, interval=5, success_rate=0.5)
    assert health_factor(state, 0.0, now, 0.05) == 0.25


class Fake(Invoker):
    def __init__(self, name: str, zone: str, region: str = "") -> None:
        self.url = URL("grpc", name, 1, "s", {"zone": zone, "region": region})
        self.state = ProviderState()

    def invoke(self, invocation: Invocation) -> None:
        return None


def test_zone_router_prefers_the_zone_then_spills_by_share_then_region() -> None:
    a1, a2, b1, c1 = Fake("a1", "a", "east"), Fake("a2", "a", "east"), Fake("b1", "b", "east"), Fake("c1", "c")
    providers = (a1, a2, b1, c1)
    call = Invocation(ServiceKey("s"), "m")
    consumer = URL("consumer", "h", 0, "s", {"zone": "a", "region": "east"})
    router = ZoneRouter.from_url(consumer)
    assert router.route(providers, call, consumer)[0] == [a1, a2]
    a1.state.ejected_until = time.monotonic() + 60  # half the zone healthy: 0.5 / 0.7 of calls stay
    kept = [tuple(router.route(providers, call, consumer)[0]) for _ in range(2000)]
    local = kept.count((a2,)) / len(kept)
    assert 0.6 < local < 0.85 and kept.count((b1,)) == len(kept) - kept.count((a2,))  # same region first
    forced = ZoneRouter("a", force=True)
    assert all(tuple(forced.route(providers, call, consumer)[0]) == (a2,) for _ in range(100))
    a2.state.ejected_until = time.monotonic() + 60
    assert forced.route(providers, call, consumer)[0] == [a1, a2]  # none healthy: the zone as it is, never another
    assert router.route(providers, call, consumer)[0] == [b1]


def test_bad_keepalive_values_are_refused_and_good_ones_set_both_grpc_timeouts() -> None:
    for args in ((-1, 2), (10, 0), ("10", 2), (True, 2), (0.5, 2)):
        with pytest.raises(ConfigurationError, match="keepalive"):
            Keepalive(*args)  # type: ignore[arg-type]
    options = dict(Keepalive(3, 1.5).client_options())
    assert options["grpc.keepalive_time_ms"] == 3000
    assert options["grpc.keepalive_timeout_ms"] == options["grpc.http2.ping_timeout_ms"] == 1500
    assert dict(Keepalive(3, 1.5).server_options())["grpc.http2.min_recv_ping_interval_without_data_ms"] == 1000


def test_a_channel_pings_only_a_provider_that_said_how_often_it_accepts_pings() -> None:
    from govrpc.rpc.invoker import accepted_pings
    from govrpc.url import URL

    keepalive = Keepalive(3, 1.5)
    assert dict(keepalive.client_options(5.0))["grpc.keepalive_time_ms"] == 5000  # never more often than accepted
    assert dict(keepalive.client_options(1.0))["grpc.keepalive_time_ms"] == 3000
    assert dict(keepalive.client_options(1.0))["grpc.keepalive_permit_without_calls"] == 1
    unsaid = dict(keepalive.client_options(None))  # a plain grpcio server: gRPC's own default, no pings
    assert unsaid == {"grpc.keepalive_time_ms": 2**31 - 1}
    assert dict(Keepalive(0, 1.5).client_options(1.0)) == {"grpc.keepalive_time_ms": 2**31 - 1}
    assert accepted_pings(URL.parse("grpc://h:1/s?ping_interval=2")) == 2.0
    for text in ("", "x", "-1", "nan", "1e9"):
        assert accepted_pings(URL.parse(f"grpc://h:1/s?ping_interval={text}")) is None
    assert accepted_pings(URL.parse("grpc://h:1/s")) is None


def test_missing_optional_packages_give_a_clear_message_only_where_asked_for(monkeypatch, caplog) -> None:
    import sys

    from govrpc.monitor.metrics import MetricsRecorder
    from govrpc.rpc.server import GrpcServer

    for name in ("grpc_health", "grpc_health.v1", "grpc_reflection", "grpc_reflection.v1alpha", "prometheus_client"):
        monkeypatch.setitem(sys.modules, name, None)  # an import of it fails as if not installed
    assert GrpcServer(health=None).health is None  # the default: served when installed
    with pytest.raises(ConfigurationError, match="grpcio-health-checking"):
        GrpcServer(health=True)
    with pytest.raises(ConfigurationError, match="grpcio-reflection"):
        GrpcServer(reflection=True)
    with pytest.raises(ConfigurationError, match="prometheus-client"):
        MetricsRecorder.on()


def _while_read(write: Callable[[], None], read: Callable[[], int], writers: int = 8) -> list[int]:
    """``write`` on ``writers`` threads at once while another thread calls ``read``: what it read, in order."""
    import threading

    stop = threading.Event()
    reads: list[int] = []

    def reading() -> None:
        while not stop.is_set():
            reads.append(read())

    reader = threading.Thread(target=reading)
    reader.start()
    threads = [threading.Thread(target=write) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    reader.join()
    return reads


def test_a_histogram_counts_every_observation_of_threads_while_it_is_read() -> None:
    from govrpc.monitor.metrics import LATENCY_BUCKETS, PENDING_KEPT, _Histogram

    histogram = _Histogram()
    values = [0.0, 0.00001, 0.000011, 0.0007, 0.0008, 2.5, 1000.0]  # on a bound goes in it ("le"), past all in +Inf
    per_thread = 1500  # each thread past PENDING_KEPT: batches bucket while others append

    def observe() -> None:
        for i in range(per_thread):
            histogram.observe(values[i % len(values)])

    reads = _while_read(observe, lambda: sum(histogram.read()[0]))
    counts, total = histogram.read()
    assert sum(counts) == 8 * per_thread and reads == sorted(reads)  # nothing lost, counts never go back
    assert len(histogram.pending) == 0 and PENDING_KEPT < per_thread
    each = [sum(1 for i in range(per_thread) if values[i % len(values)] == v) * 8 for v in values]
    index = {v: LATENCY_BUCKETS.index(v) if v in LATENCY_BUCKETS else None for v in values}
    assert counts[index[0.0]] == each[0] and counts[index[0.00001]] == each[1]
    assert counts[LATENCY_BUCKETS.index(0.00005)] == each[2]  # 11 µs: in the 50 µs bucket
    assert counts[index[0.0008]] == each[3] + each[4] and counts[LATENCY_BUCKETS.index(5.0)] == each[5]
    assert counts[-1] == each[6]
    assert total == pytest.approx(sum(v * n for v, n in zip(values, each)))


def test_a_counter_counts_every_increment_of_threads_while_it_is_read() -> None:
    from govrpc.monitor.metrics import _Counter

    counter = _Counter()

    def inc() -> None:
        for i in range(1500):
            counter.inc() if i % 2 else counter.inc(3)

    reads = _while_read(inc, lambda: counter.value)
    assert counter.value == 8 * (750 * 1 + 750 * 3) and reads == sorted(reads)
