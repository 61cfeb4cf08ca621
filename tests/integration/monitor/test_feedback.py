"""Feedback into routing: ORCA load reports read by govrpc consumers, unhealthy providers
deprioritised by every balancer, and consumers' own summaries in the registry."""

from __future__ import annotations

import collections
from typing import Any

import pytest

import govrpc
from govrpc.cluster.stats import ProviderState
from govrpc.monitor.orca import LOAD_TRAILER, OrcaReaderFilter, encode_load_report
from govrpc.url import URL
from tests.helpers import wait_until


@govrpc.service("fb.Work", idempotent=True)
class Work:
    def __init__(self, name: str) -> None:
        self.name = name

    def who(self) -> str:
        return self.name


def test_govrpc_consumers_weigh_providers_by_their_orca_reports(memory_registry, start_server,
                                                                client_factory) -> None:
    start_server(memory_registry, Work("busy"), orca=lambda: {"cpu_utilization": 0.9})
    start_server(memory_registry, Work("light"), orca=lambda: {"cpu_utilization": 0.1})
    client = client_factory(memory_registry, timeout=5.0)
    options = {"loadbalance": "healthweighted", "healthweighted.refresh": 0.05, "healthweighted.orca": True}
    work = client.proxy("fb.Work", **options)
    reference = client.reference("fb.Work", **options)

    def reported() -> bool:
        work.who()
        return all(e.state.load is not None for e in reference.directory.invokers)

    wait_until(reported, timeout=10, what="both providers' load reports read")
    loads = sorted(round(e.state.load.utilization, 2) for e in reference.directory.invokers)
    assert loads == [0.1, 0.9]
    seen = collections.Counter(work.who() for _ in range(600))
    assert seen["light"] > 4 * seen["busy"] > 0  # (0.1 + 0.02) / (0.9 + 0.02): about 8 to 1, never zero
    plain = client.proxy("fb.Work", loadbalance="healthweighted", **{"healthweighted.refresh": 0.05})
    seen = collections.Counter(plain.who() for _ in range(400))
    assert seen["busy"] > 100 and seen["light"] > 100  # without healthweighted.orca loads count for nothing


def test_in_process_calls_carry_the_providers_load_report(memory_registry, start_server, client_factory) -> None:
    start_server(memory_registry, Work("local"), orca=lambda: {"cpu_utilization": 0.7})
    client = client_factory(memory_registry, local_first=True, timeout=5.0)
    options = {"loadbalance": "healthweighted", "healthweighted.orca": True}
    work = client.proxy("fb.Work", **options)
    reference = client.reference("fb.Work", **options)
    assert work.who() == "local"
    (endpoint,) = reference.directory.invokers
    assert getattr(endpoint.transport, "in_process", False)  # local-first: no gRPC, no transport trailer

    def reported() -> bool:
        work.who()
        return endpoint.state.load is not None

    wait_until(reported, timeout=10, what="the in-process provider's load report read")
    assert round(endpoint.state.load.utilization, 2) == 0.7


def test_a_reference_without_orca_reads_no_trailer(memory_registry, start_server, client_factory) -> None:
    start_server(memory_registry, Work("a"), orca=True)
    client = client_factory(memory_registry)
    reference = client.reference("fb.Work", loadbalance="healthweighted")
    client.proxy("fb.Work", loadbalance="healthweighted").who()
    (endpoint,) = reference.directory.invokers
    assert endpoint.chain is endpoint.transport  # no reader bound, no link
    assert "invoke" not in vars(endpoint.transport)  # the plain call: trailers never read
    assert endpoint.state.load is None
    with pytest.raises(govrpc.ConfigurationError, match="healthweighted.orca"):
        client.proxy("fb.Work", loadbalance="healthweighted", **{"healthweighted.orca": "maybe"})


def test_malformed_load_reports_are_ignored() -> None:
    reader = OrcaReaderFilter().bind(URL.parse("grpc://127.0.0.1:1/fb.Work?healthweighted.orca=true"))
    assert reader is not None
    state = ProviderState()
    reader.attach_state(state)  # type: ignore[attr-defined]
    for garbage in (b"\xff", b"\x09\x00\x00", b""):
        reader.on_trailers(((LOAD_TRAILER, garbage),))  # type: ignore[attr-defined]
    assert state.load is None or state.load.utilization == 0.0
    reader.on_trailers((("other", "x"),))  # type: ignore[attr-defined]
    reader.on_trailers(((LOAD_TRAILER, encode_load_report({"cpu_utilization": 0.4})),))  # type: ignore[attr-defined]
    assert state.load.utilization == 0.4
    reader.on_trailers(((LOAD_TRAILER, encode_load_report(  # type: ignore[attr-defined]
        {"application_utilization": 0.2, "cpu_utilization": 0.9, "rps_fractional": 10, "eps": 5})),))
    assert state.load.utilization == pytest.approx(0.7)  # the application's figure, plus the failed share
    assert OrcaReaderFilter().bind(URL.parse("grpc://127.0.0.1:1/fb.Work")) is None


def shares(work: object, calls: int) -> collections.Counter[str]:
    return collections.Counter(work.who() for _ in range(calls))  # type: ignore[attr-defined]


@pytest.mark.parametrize("loadbalance", ["random", "roundrobin", "leastactive"])
def test_every_balancer_avoids_a_provider_whose_summary_says_unhealthy(file_registry, start_server, client_factory,
                                                                        loadbalance) -> None:
    start_server(file_registry, Work("good"), report_interval=0.2)
    sick = start_server(file_registry, Work("sick"), report_interval=0.2)
    client = client_factory(file_registry, health_check=None)  # the registry summaries alone
    work = client.proxy("fb.Work", loadbalance=loadbalance)
    reference = client.reference("fb.Work", loadbalance=loadbalance)
    wait_until(lambda: len(reference.directory.invokers) == 2, what="both providers listed")
    assert shares(work, 100)["sick"] > 20
    sick.set_serving(False)
    wait_until(lambda: len(reference.directory.invokers) == 1, timeout=5, what="the sick provider left out")
    assert shares(work, 200)["sick"] == 0
    sick.set_serving(True)
    wait_until(lambda: len(reference.directory.invokers) == 2, timeout=5, what="the provider listed again")
    assert shares(work, 100)["sick"] > 20


@pytest.mark.parametrize("loadbalance", ["random", "roundrobin", "leastactive"])
def test_every_balancer_avoids_a_provider_whose_grpc_health_says_not_serving(memory_registry, start_server,
                                                                            client_factory, loadbalance) -> None:
    start_server(memory_registry, Work("good"))
    sick = start_server(memory_registry, Work("sick"))  # no summaries: its grpc health tells
    client = client_factory(memory_registry, health_check=0.2)
    work = client.proxy("fb.Work", loadbalance=loadbalance)
    reference = client.reference("fb.Work", loadbalance=loadbalance)
    assert shares(work, 100)["sick"] > 20
    sick.set_serving(False, "fb.Work")
    wait_until(lambda: len(reference.directory.invokers) == 1, timeout=5, what="the sick provider left out")
    assert shares(work, 200)["sick"] == 0
    sick.set_serving(True, "fb.Work")
    wait_until(lambda: len(reference.directory.invokers) == 2, timeout=5, what="the provider listed again")
    assert shares(work, 100)["sick"] > 20


def test_an_unhealthy_provider_is_still_used_when_no_other_is_left(memory_registry, start_server,
                                                                   client_factory) -> None:
    only = start_server(memory_registry, Work("only"))
    client = client_factory(memory_registry, health_check=0.2)
    work = client.proxy("fb.Work")
    reference = client.reference("fb.Work")
    work.who()
    only.set_serving(False)
    wait_until(lambda: all(e.state.serving is False for e in reference.directory.endpoints), timeout=5,
               what="NOT_SERVING heard")
    assert shares(work, 20)["only"] == 20  # put last, not taken away


def test_stale_and_garbage_summaries_deprioritise_nobody(file_registry, start_server, client_factory) -> None:
    import json
    import time

    start_server(file_registry, Work("a"))
    b = start_server(file_registry, Work("b"))
    client = client_factory(file_registry, health_check=None)
    work = client.proxy("fb.Work", loadbalance="roundrobin")
    reference = client.reference("fb.Work", loadbalance="roundrobin")
    wait_until(lambda: len(reference.directory.invokers) == 2, what="both providers listed")
    address = f"127.0.0.1:{b.port}"
    soon_stale = json.dumps({"v": 1, "address": address, "time": time.time() - 14.0, "interval": 0.1,
                             "serving": False})  # max_age is 15 s: stale about a second from now
    with govrpc.Admin(file_registry) as admin:
        admin.registry.put_rule("fb.Work", "monitors", "junk", '{"v": 1, "address": 3}')
        admin.registry.put_rule("fb.Work", "monitors", "provider-x", soon_stale)
    wait_until(lambda: len(reference.directory.invokers) == 1, timeout=5, what="the NOT_SERVING summary heard")
    wait_until(lambda: len(reference.directory.invokers) == 2, timeout=5, what="the stale summary forgotten")
    assert shares(work, 40)["b"] == 20


def consumer_summaries_are_published(registry: str, start_server, client_factory, capsys) -> None:
    import os

    from govrpc.cli import main

    server = start_server(registry, Work("a"), report_interval=0.2)
    client = client_factory(registry, application="web", zone="z9", report_interval=0.2)
    work = client.proxy("fb.Work")
    for _ in range(30):
        work.who()
    with govrpc.Admin(registry) as admin:
        mine = wait_until(lambda: next((h for h in admin.health("fb.Work", side="consumer").get("fb.Work", [])
                                        if h.calls), None), timeout=10, what="the consumer's summary of its calls")
        assert mine.side == "consumer" and mine.application == "web" and mine.zone == "z9"
        assert mine.address.endswith(f":{os.getpid()}") and mine.success_rate == 1.0 and 0 < mine.p50_ms
        assert all(h.side == "provider" for h in admin.health("fb.Work")["fb.Work"])  # providers' by default
        both = wait_until(lambda: admin.health("fb.Work", side=None).get("fb.Work", []), what="both sides")
        assert {h.side for h in both} == {"provider", "consumer"}
        names = set(admin.registry.rules("fb.Work", "monitors"))
        assert f"provider-127.0.0.1-{server.port}" in names
        assert any(n.startswith("consumer-") and n.endswith(f"-{os.getpid()}") for n in names)
        capsys.readouterr()
        assert main(["top", "fb.Work", "--registry", registry]) == 0
        out = capsys.readouterr().out
        assert "consumer" in out and "web" in out and f"127.0.0.1:{server.port}" in out
        reference = client.reference("fb.Work")
        assert all(e.state.health is None or e.state.health.side == "provider"
                   for e in reference.directory.invokers)  # a consumer's summary is nobody's health
        client.close()  # a closing client deletes its summaries
        wait_until(lambda: not admin.health("fb.Work", side="consumer", stale=True), what="the summary deleted")
    with pytest.raises(govrpc.ConfigurationError, match="report_interval"):
        govrpc.Client(registry, report_interval=-1)
    with govrpc.Admin(registry) as admin, pytest.raises(govrpc.ConfigurationError, match="side"):
        admin.health(side="both")


def test_consumers_publish_summaries_on_the_file_registry(file_registry, start_server, client_factory,
                                                          capsys) -> None:
    consumer_summaries_are_published(file_registry, start_server, client_factory, capsys)


def test_consumers_publish_summaries_on_zookeeper(zk_url, start_server, client_factory, capsys) -> None:
    consumer_summaries_are_published(zk_url(), start_server, client_factory, capsys)


def bound_filters(reference: object) -> list[str]:
    link, names = reference.invoker, []  # type: ignore[attr-defined]
    while link is not reference._cluster:  # type: ignore[attr-defined]
        names.append(type(link.filter).__name__)
        link = link.next
    return names


def test_a_client_reporting_nothing_binds_no_summary_filter(memory_registry, start_server, client_factory) -> None:
    start_server(memory_registry, Work("a"))
    assert "_BoundSummary" not in bound_filters(client_factory(memory_registry).reference("fb.Work"))  # no cost
    reporting = client_factory(memory_registry, report_interval=5)
    assert "_BoundSummary" in bound_filters(reporting.reference("fb.Work"))


# -- the asyncio twin: the same feedback for an AsyncClient ------------------------------------

def run_async(make: Any, seconds: float = 60.0) -> Any:
    import asyncio

    async def bounded() -> Any:
        return await asyncio.wait_for(make(), seconds)

    return asyncio.run(bounded())


async def async_shares(who: Any, calls: int) -> collections.Counter[str]:
    return collections.Counter([await who() for _ in range(calls)])


async def eventually(check: Any, what: str, timeout: float = 10.0) -> Any:
    import asyncio
    import time

    end = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_an_async_client_weighs_providers_by_their_orca_reports(memory_registry, start_server) -> None:
    start_server(memory_registry, Work("busy"), orca=lambda: {"cpu_utilization": 0.9})
    start_server(memory_registry, Work("light"), orca=lambda: {"cpu_utilization": 0.1})
    options = {"loadbalance": "healthweighted", "healthweighted.refresh": 0.05, "healthweighted.orca": True}

    async def main() -> None:
        async with govrpc.AsyncClient(memory_registry, local_first=False, timeout=5.0) as client:
            who = client.proxy("fb.Work", **options).who

            async def reported() -> bool:
                await who()
                return all(e.state.load is not None for e in client.reference("fb.Work", **options).reference
                           .directory.invokers)

            await eventually(reported, "both providers' load reports read by the asyncio transport")
            seen = await async_shares(who, 600)
            assert seen["light"] > 4 * seen["busy"] > 0

    run_async(main)


def test_an_async_client_avoids_a_provider_whose_grpc_health_says_not_serving(memory_registry, start_server) -> None:
    start_server(memory_registry, Work("good"))
    sick = start_server(memory_registry, Work("sick"))

    async def main() -> None:
        async with govrpc.AsyncClient(memory_registry, local_first=False, timeout=5.0, health_check=0.2) as client:
            who = client.proxy("fb.Work").who
            reference = client.reference("fb.Work").reference
            assert (await async_shares(who, 100))["sick"] > 20
            sick.set_serving(False, "fb.Work")

            async def left_out() -> bool:
                return len(reference.directory.invokers) == 1

            await eventually(left_out, "the sick provider left out")
            assert (await async_shares(who, 200))["sick"] == 0

    run_async(main)


def test_an_async_client_publishes_its_summaries(file_registry, start_server) -> None:
    start_server(file_registry, Work("a"))

    async def main() -> None:
        async with govrpc.AsyncClient(file_registry, application="aweb", local_first=False, timeout=5.0,
                                      report_interval=0.2) as client:
            who = client.proxy("fb.Work").who
            for _ in range(20):
                await who()
            with govrpc.Admin(file_registry) as admin:
                async def mine() -> Any:
                    return next((h for h in admin.health("fb.Work", side="consumer").get("fb.Work", [])
                                 if h.calls), None)

                summary = await eventually(mine, "the asyncio consumer's summary")
                assert summary.application == "aweb" and summary.success_rate == 1.0

    run_async(main)
