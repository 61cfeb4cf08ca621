"""Health summaries in the registry, ``govrpc top``, and the healthweighted balancer that reads them."""

from __future__ import annotations

import collections
import json
import threading
import time

import pytest

import govrpc
from govrpc.cli import main
from govrpc.monitor.health import parse_summary
from tests.helpers import wait_until


@govrpc.service("mon.Work", idempotent=True)
class Work:
    def __init__(self, name: str) -> None:
        self.name = name
        self.slow = 0.0
        self.failing = False
        self.lock = threading.Lock()

    def who(self) -> str:
        if self.slow:
            time.sleep(self.slow)
        if self.failing:
            raise RuntimeError("sick")
        return self.name


def test_summaries_appear_in_the_registry_and_govrpc_top_prints_them(file_registry, start_server, client_factory,
                                                                     capsys) -> None:
    server = start_server(file_registry, Work("a"), report_interval=0.2, tags={"zone": "z1"})
    client = client_factory(file_registry)
    work = client.proxy("mon.Work")
    for _ in range(20):
        work.who()
    with govrpc.Admin(file_registry) as admin:
        summary = wait_until(lambda: next((h for h in admin.health("mon.Work").get("mon.Work", [])
                                           if h.calls), None), what="a summary of the calls")
    assert summary.address == f"127.0.0.1:{server.port}" and summary.zone == "z1" and summary.serving
    assert 0 < summary.p50_ms <= summary.p99_ms and summary.success_rate == 1.0 and summary.qps > 0
    assert summary.rss_mb and summary.rss_mb > 0 and summary.cpu is not None
    capsys.readouterr()
    assert main(["top", "mon.Work", "--registry", file_registry]) == 0
    out = capsys.readouterr().out
    assert "P99_MS" in out and f"127.0.0.1:{server.port}" in out and "z1" in out
    server.stop(grace=0.5)  # a stopping server deletes its summaries
    with govrpc.Admin(file_registry) as admin:
        wait_until(lambda: not admin.health("mon.Work", stale=True), what="the summary deleted")


def test_garbage_and_stale_summaries_are_ignored_and_zero_no_weight(file_registry, start_server,
                                                                    client_factory) -> None:
    a, b = Work("a"), Work("b")
    start_server(file_registry, a)
    sb = start_server(file_registry, b)
    stale = json.dumps({"v": 1, "address": f"127.0.0.1:{sb.port}", "time": time.time() - 3600, "interval": 5,
                        "serving": False})
    with govrpc.Admin(file_registry) as admin:
        for name, text in (("junk", "not json"), ("list", "[1, 2]"), ("stale", stale),
                           ("range", json.dumps({"v": 1, "address": f"127.0.0.1:{sb.port}", "time": time.time(),
                                                 "success_rate": -3})),
                           ("nan", '{"v": 1, "address": "x:1", "time": NaN}'), ("huge", "x" * 10000)):
            admin.registry.put_rule("mon.Work", "monitors", name, text)
        assert admin.health("mon.Work") == {}
    client = client_factory(file_registry)
    work = client.proxy("mon.Work", loadbalance="healthweighted")
    seen = collections.Counter(work.who() for _ in range(200))
    assert seen["a"] > 40 and seen["b"] > 40  # the stale NOT_SERVING of b counted for nothing
    for text in ("", "{}", '{"v": 1, "address": "h:1", "serving": "yes"}'):
        with pytest.raises(ValueError):
            parse_summary(text)


def share_of(work: object, name: str, calls: int) -> float:
    seen = collections.Counter(work.who() for _ in range(calls))  # type: ignore[attr-defined]
    return seen[name] / calls


def test_a_slow_provider_loses_traffic_under_healthweighted_and_regains_it(memory_registry, start_server,
                                                                           client_factory) -> None:
    fast, slow = Work("fast"), Work("slow")
    start_server(memory_registry, fast)
    start_server(memory_registry, slow)
    client = client_factory(memory_registry, timeout=5.0)
    work = client.proxy("mon.Work", loadbalance="healthweighted", **{"healthweighted.refresh": 0.05})
    assert 0.2 < share_of(work, "slow", 200) < 0.8
    slow.slow = 0.05
    share_of(work, "slow", 100)  # the consumer measures it
    assert share_of(work, "slow", 200) < 0.2
    slow.slow = 0.0
    share_of(work, "slow", 300)  # its trickle of calls shows it has recovered
    assert share_of(work, "slow", 300) > 0.3


def test_a_provider_that_reports_itself_unhealthy_is_deprioritised(file_registry, start_server,
                                                                  client_factory) -> None:
    good, sick = Work("good"), Work("sick")
    start_server(file_registry, good, report_interval=0.2)
    sick_server = start_server(file_registry, sick, report_interval=0.2)
    client = client_factory(file_registry)
    work = client.proxy("mon.Work", loadbalance="healthweighted", **{"healthweighted.refresh": 0.05})
    reference = client.reference("mon.Work", loadbalance="healthweighted", **{"healthweighted.refresh": 0.05})
    wait_until(lambda: all(e.state.health is not None for e in reference.directory.invokers) and
               len(reference.directory.invokers) == 2, what="both summaries seen")
    assert share_of(work, "sick", 200) > 0.2
    sick_server.set_serving(False)
    wait_until(lambda: any(e.state.health and not e.state.health.serving for e in reference.directory.endpoints),
               timeout=10, what="the NOT_SERVING summary seen")
    time.sleep(0.15)  # the balancer's table is at most healthweighted.refresh (0.05 s) old
    assert share_of(work, "sick", 300) < 0.15  # kept above zero by the floor, so it can come back
    sick_server.set_serving(True)
    wait_until(lambda: all(e.state.health and e.state.health.serving for e in reference.directory.endpoints)
               and len(reference.directory.invokers) == 2, timeout=10, what="SERVING again")
    time.sleep(0.15)
    assert share_of(work, "sick", 200) > 0.2


def test_a_failing_provider_loses_traffic_by_its_reported_success_rate(file_registry, start_server,
                                                                      client_factory) -> None:
    good, bad = Work("good"), Work("bad")
    start_server(file_registry, good, report_interval=0.2)
    start_server(file_registry, bad, report_interval=0.2)
    client = client_factory(file_registry)
    work = client.proxy("mon.Work", loadbalance="healthweighted", **{"healthweighted.refresh": 0.05})
    reference = client.reference("mon.Work", loadbalance="healthweighted", **{"healthweighted.refresh": 0.05})
    bad.failing = True

    def calls(n: int) -> collections.Counter[str]:
        seen: collections.Counter[str] = collections.Counter()
        for _ in range(n):
            try:
                seen[work.who()] += 1
            except RuntimeError:
                seen["bad"] += 1
        return seen

    calls(100)
    wait_until(lambda: any(e.state.health and e.state.health.success_rate < 0.5 for e in reference.directory.invokers),
               timeout=10, what="the failure rate reported")
    assert calls(300)["bad"] < 60
    bad.failing = False

    def recovered() -> bool:
        calls(50)
        return all(e.state.health and e.state.health.success_rate > 0.9 for e in reference.directory.invokers)

    wait_until(recovered, timeout=15, what="the recovery reported")
    assert calls(300)["bad"] > 90
