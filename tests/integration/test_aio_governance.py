"""Governance on the asyncio twins: AsyncServer's provider options and configurators, and monitoring
(Prometheus metrics, health summaries, grpc.health.v1, ORCA) on AsyncServer and AsyncClient.

Real grpc.aio servers on 127.0.0.1, real file and ZooKeeper registries; each test runs one event
loop bounded in time. The decisions under test are the sync side's own objects.
"""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request
from typing import Any, Awaitable, Callable

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import govrpc
from govrpc.exceptions import RateLimitedError
from govrpc.invocation import Invocation, ProviderContext
from govrpc.monitor.orca import ORCA_TRAILER, decode_load_report
from govrpc.server import ServerState
from govrpc.url import ServiceKey
from tests.integration.services import OutOfStock

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
KEY = ServiceKey("aiogov.Work")


def run(make: Callable[[], Awaitable[Any]], seconds: float = 60.0) -> Any:
    """Run ``make()`` on a fresh event loop; no test waits longer than ``seconds``."""
    async def bounded() -> Any:
        return await asyncio.wait_for(make(), seconds)
    return asyncio.run(bounded())


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 20.0) -> Any:
    """Await ``check()`` until it is truthy (a bounded wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


@govrpc.service("aiogov.Work")
class Work:
    def __init__(self) -> None:
        self.calls = 0

    async def who(self) -> str:
        self.calls += 1
        return "work"

    def plain(self) -> str:  # on a thread
        return "plain"

    async def slow(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    async def buy(self, item: str) -> None:
        raise OutOfStock(f"no {item} left")


async def outcome(call: Awaitable[Any]) -> str:
    try:
        await call
        return "ok"
    except RateLimitedError as exc:
        return exc.reason or "limited"


async def serve(registry: str, **options: Any) -> govrpc.AsyncServer:
    """A started AsyncServer hosting ``Work``."""
    server = govrpc.AsyncServer(registry, **options)
    await server.add(Work())
    return await server.start()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# -- provider options -----------------------------------------------------------------------------

def test_async_provider_options_are_published_and_bind_the_chain(memory_registry) -> None:
    async def main() -> None:
        server = govrpc.AsyncServer(memory_registry)
        await server.add(Work(), tps=1, **{"tps.burst": 1}, methods={"plain": {"concurrency": 2}})
        await server.start()
        try:
            bound = server.configured_url(KEY)
            assert bound.params["tps"] == "1" and bound.params["plain.concurrency"] == "2"
            assert server.urls[0].params["tps"] == "1"  # published, as the sync server does
            async with govrpc.AsyncClient(memory_registry, local_first=False) as client:
                work = client.proxy("aiogov.Work", cluster="failfast", timeout=3.0)
                outcomes = [await outcome(work.who()) for _ in range(4)]
            assert outcomes[0] == "ok" and outcomes.count("rate") >= 2  # the provider's limiter refuses
        finally:
            await server.stop(grace=0)
    run(main)


@pytest.mark.parametrize("options,named", [({"tps": 0}, "tps"), ({"tps": "fast"}, "tps"),
                                           ({"tps.burst": 0.5}, r"tps\.burst"), ({"concurrency": -1}, "concurrency"),
                                           ({"methods": {"who": {"tps": -2}}}, r"who\.tps"),
                                           ({"trace": "maybe"}, "trace"),
                                           ({"rate": 5}, "unknown provider option 'rate'")])
def test_bad_async_provider_options_are_refused_naming_the_key_and_register_nothing(
        memory_registry, options: dict[str, Any], named: str) -> None:
    async def main() -> None:
        server = govrpc.AsyncServer(memory_registry)
        with pytest.raises(govrpc.ConfigurationError, match=named):
            await server.add(Work(), **options)
        await server.start()
        try:
            with pytest.raises(govrpc.ConfigurationError, match=named):  # after start too
                await server.add(Work(), **options)
            assert server.urls == [] and not server.invokers
            assert not server.registry.lookup("aiogov.Work")
            await server.add(Work())  # the refused one left nothing behind: the key is free
            assert len(server.urls) == 1
        finally:
            await server.stop(grace=0)
    run(main)


# -- configurators reach a running AsyncServer ------------------------------------------------------

@pytest.fixture(params=["file", "zookeeper"])
def live_registry(request: Any, file_registry: str) -> str:
    if request.param == "zookeeper":
        return request.getfixturevalue("zk_url")()
    return file_registry


def test_a_limit_set_through_admin_reaches_a_running_async_provider_and_is_removed(live_registry) -> None:
    async def main() -> None:
        server = await serve(live_registry)
        admin = await asyncio.to_thread(govrpc.Admin, live_registry)
        try:
            async with govrpc.AsyncClient(live_registry, local_first=False) as client:
                work = client.proxy("aiogov.Work", cluster="failfast", timeout=3.0)
                assert [await outcome(work.who()) for _ in range(5)] == ["ok"] * 5
                await asyncio.to_thread(admin.set_flow, "aiogov.Work", {"tps": 1, "tps.burst": 1})

                async def limited() -> bool:
                    return await outcome(work.who()) == "rate"

                await eventually(limited, "the provider-side limit in force")
                assert server.configured_url(KEY).params["tps"] == "1"
                await asyncio.to_thread(admin.remove_flow, "aiogov.Work")

                async def free() -> bool:
                    return [await outcome(work.who()) for _ in range(5)] == ["ok"] * 5

                await eventually(free, "the limit removed")
                assert "tps" not in server.configured_url(KEY).params
                # an override naming another provider's address leaves this one alone
                await asyncio.to_thread(admin.set_override, "aiogov.Work", "elsewhere",
                                        "address = 127.0.0.1:1\nconcurrency = 1\n")
                await asyncio.to_thread(admin.set_override, "aiogov.Work", "here",
                                        f"address = 127.0.0.1:{server.port}\nconcurrency = 3\n")

                async def applied() -> bool:
                    return server.configured_url(KEY).params.get("concurrency") == "3"

                await eventually(applied, "the override for this address applied")
        finally:
            await asyncio.to_thread(admin.close)
            await server.stop(grace=0)
    run(main)


# -- monitoring -------------------------------------------------------------------------------------

def test_async_calls_are_counted_on_both_sides_and_scraped(memory_registry) -> None:
    async def main() -> None:
        server = await serve(memory_registry, metrics_registry=CollectorRegistry(), metrics_port=0)
        try:
            async with govrpc.AsyncClient(memory_registry, local_first=False, metrics_registry=CollectorRegistry(),
                                          metrics_port=0) as client:
                work = client.proxy("aiogov.Work", timeout=3.0)
                for _ in range(5):
                    assert await work.who() == "work"
                assert await work.plain() == "plain"
                for _ in range(2):
                    with pytest.raises(OutOfStock):
                        await work.buy("tea")
                assert client.metrics_port and server.metrics_port and client.metrics_port != server.metrics_port
                consumer = await asyncio.to_thread(scrape, client.metrics_port)
            provider = await asyncio.to_thread(scrape, server.metrics_port)
        finally:
            await server.stop(grace=0)
        method, target = "aiogov.Work/who", "govrpc:///aiogov.Work"
        assert value(consumer, "grpc_client_call_duration_seconds_count", grpc_method=method, grpc_target=target,
                     grpc_status="OK") == 5
        assert value(consumer, "grpc_client_attempt_started_total", grpc_method=method, grpc_target=target) == 5
        assert value(consumer, "govrpc_calls_total", side="consumer", service="aiogov.Work", method="buy",
                     status="UNKNOWN") == 2
        assert value(consumer, "govrpc_inflight_calls", side="consumer", service="aiogov.Work", method="who") == 0
        assert value(provider, "grpc_server_call_started_total", grpc_method=method) == 5
        assert value(provider, "grpc_server_call_duration_seconds_count", grpc_method="aiogov.Work/plain",
                     grpc_status="OK") == 1
        assert value(provider, "govrpc_calls_total", side="provider", service="aiogov.Work", method="buy",
                     status="UNKNOWN") == 2
    run(main)


def test_metrics_true_on_one_async_reference_records_on_the_default_registry(memory_registry) -> None:
    labels = {"grpc_method": "aiogov.Work/who", "grpc_target": "govrpc:///aiogov.Work", "grpc_status": "OK"}
    before = REGISTRY.get_sample_value("grpc_client_call_duration_seconds_count", labels) or 0.0

    async def main() -> None:
        server = await serve(memory_registry)
        try:
            async with govrpc.AsyncClient(memory_registry, local_first=False) as client:
                plain = client.proxy("aiogov.Work", timeout=3.0)
                counted = client.proxy("aiogov.Work", timeout=3.0, metrics=True)
                assert await plain.who() == "work"  # no metrics on this one
                for _ in range(3):
                    assert await counted.who() == "work"
        finally:
            await server.stop(grace=0)
    run(main)
    assert (REGISTRY.get_sample_value("grpc_client_call_duration_seconds_count", labels) or 0.0) - before == 3


def test_an_async_server_publishes_health_summaries_and_deletes_them_on_stop(file_registry) -> None:
    async def main() -> None:
        server = await serve(file_registry, report_interval=0.2, tags={"zone": "z1"})
        admin = await asyncio.to_thread(govrpc.Admin, file_registry)
        try:
            async with govrpc.AsyncClient(file_registry, local_first=False) as client:
                work = client.proxy("aiogov.Work", timeout=3.0)
                for _ in range(10):
                    await work.who()

            async def summary() -> Any:
                listed = await asyncio.to_thread(admin.health, "aiogov.Work")
                return next((h for h in listed.get("aiogov.Work", []) if h.calls), None)

            found = await eventually(summary, "a summary of the calls")
            assert found.address == f"127.0.0.1:{server.port}" and found.zone == "z1" and found.serving
            assert found.calls >= 10 and found.success_rate == 1.0
            await server.set_serving(False)  # the provider's own verdict reaches its next summary

            async def unhealthy() -> bool:
                listed = await asyncio.to_thread(admin.health, "aiogov.Work")
                return any(not h.serving for h in listed.get("aiogov.Work", []))

            await eventually(unhealthy, "the summary saying not serving")
            await server.stop(grace=0.5)

            async def deleted() -> bool:
                return not await asyncio.to_thread(admin.health, "aiogov.Work", stale=True)

            await eventually(deleted, "the summary deleted")
        finally:
            await asyncio.to_thread(admin.close)
            await server.stop(grace=0)
    run(main)


def test_an_async_start_that_fails_to_serve_metrics_leaves_nothing_behind(memory_registry) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()

        async def main() -> None:
            server = govrpc.AsyncServer(memory_registry, metrics_port=taken.getsockname()[1])
            await server.add(Work())
            with pytest.raises(govrpc.ConfigurationError, match="cannot serve metrics"):
                await server.start()
            assert server.state is ServerState.STOPPED
            with govrpc.Admin(memory_registry) as admin:
                assert admin.providers("aiogov.Work") == []
            again = await serve(memory_registry, port=server.port)  # the port was released
            await again.stop(grace=0)
        run(main)


def test_async_health_is_serving_then_not_serving_as_soon_as_a_drain_begins(memory_registry) -> None:
    async def main() -> None:
        server = await serve(memory_registry)
        seen: list[tuple[int, str]] = []
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            async def serving() -> bool:
                answer = await stub.Check(health_pb2.HealthCheckRequest(service="aiogov.Work"), timeout=5)
                return answer.status == SERVING

            await eventually(serving, "the service reported SERVING")
            overall = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            assert overall.status == SERVING
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Check(health_pb2.HealthCheckRequest(service="no.Such"), timeout=5)
            assert caught.value.code() is grpc.StatusCode.NOT_FOUND
            stream = stub.Watch(health_pb2.HealthCheckRequest(service="aiogov.Work"), timeout=20)

            async def watch() -> None:
                try:
                    async for answer in stream:
                        seen.append((answer.status, str(server.state)))
                except grpc.aio.AioRpcError:
                    pass  # the server went away: the stream ends

            watcher = asyncio.ensure_future(watch())

            async def first() -> bool:
                return bool(seen)

            await eventually(first, "the first health answer")
            async with govrpc.AsyncClient(memory_registry, local_first=False) as client:
                slow = asyncio.ensure_future(client.proxy("aiogov.Work", timeout=10.0).slow(1.0))
                await asyncio.sleep(0.2)
                await server.stop(grace=5.0)
                assert await slow == 1.0  # drained, not cut off
            await asyncio.wait_for(watcher, 10)
        finally:
            await channel.close()
            await server.stop(grace=0)
        assert seen[0] == (SERVING, "started")
        assert (NOT_SERVING, "stopping") in seen  # while draining, not after the stop
    run(main)


def test_every_async_answer_carries_a_load_report_with_orca(memory_registry) -> None:
    async def main() -> None:
        server = await serve(memory_registry, orca=True)
        plain = await serve(memory_registry, port=0)
        try:
            assert server.urls[0].params["orca"] == "true"
            chain = server.invokers[KEY]
            context = ProviderContext()
            assert await chain.ainvoke(Invocation(KEY, "who", context=context)) == "work"  # type: ignore[attr-defined]
            reports = [decode_load_report(v) for k, v in context.trailing if k == ORCA_TRAILER]  # type: ignore[arg-type]
            assert len(reports) == 1 and reports[0]["rps_fractional"] > 0
            context = ProviderContext()
            await plain.invokers[KEY].ainvoke(Invocation(KEY, "who", context=context))  # type: ignore[attr-defined]
            assert context.trailing == []
        finally:
            await server.stop(grace=0)
            await plain.stop(grace=0)
    run(main)
