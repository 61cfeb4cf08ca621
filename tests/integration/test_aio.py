"""asyncio twins end to end: AsyncClient and AsyncServer on real grpc.aio servers and registries.

Each test runs one event loop (``run``) bounded in time; the strategies, routers and
balancers under test are the sync side's own objects, driven by the asyncio driver.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import threading
import time
from typing import Any, Awaitable, Callable

import pytest

import govrpc
from govrpc.cluster.stats import stats_of
from tests.integration.services import Echo, OutOfStock


def run(make: Callable[[], Awaitable[Any]], seconds: float = 30.0) -> Any:
    """Run ``make()`` on a fresh event loop; no test waits longer than ``seconds``."""
    async def bounded() -> Any:
        return await asyncio.wait_for(make(), seconds)
    return asyncio.run(bounded())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@govrpc.service("aio.Greeter")
class Greeter:
    def __init__(self, name: str = "greeter") -> None:
        self.name = name
        self.calls = 0
        self.cancelled: list[str] = []
        self.started = 0
        self.notified = asyncio.Event()

    async def hello(self, who: str) -> str:
        self.calls += 1
        return f"hello {who} from {self.name}"

    def plain(self, n: int) -> list:  # a plain function: run on a thread, never on the loop
        return [n * 2, threading.current_thread() is not threading.main_thread()]

    async def whoami(self) -> str:
        self.calls += 1
        return self.name

    async def slow(self, seconds: float) -> float:
        self.started += 1
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.cancelled.append("slow")
            raise
        return seconds

    async def buy(self, item: str) -> None:
        raise OutOfStock(f"no {item} left")

    async def notify(self) -> None:
        self.notified.set()

    async def trace_id(self) -> str:
        from govrpc.trace import current_ids

        return current_ids()[0]


async def serve(registry: str, *services: Any, **options: Any) -> govrpc.AsyncServer:
    server = govrpc.AsyncServer(registry, **options)
    for service in services:
        await server.add(service)
    return await server.start()


def test_async_client_awaits_async_and_plain_providers(memory_registry) -> None:
    async def main() -> None:
        provider = Greeter("a")
        server = await serve(memory_registry, provider)
        try:
            async with govrpc.AsyncClient(memory_registry, local_first=False) as client:
                greeter = client.proxy("aio.Greeter", timeout=2.0)
                assert await greeter.hello("ann") == "hello ann from a"
                assert await greeter.plain(4) == [8, True]
                names = [f"n{i}" for i in range(20)]
                answers = await asyncio.gather(*(greeter.hello(n) for n in names))  # the parallel call model
                assert answers == [f"hello {n} from a" for n in names]
                assert await client.invoke("aio.Greeter", "hello", ["bob"], timeout=2.0) == "hello bob from a"
                with pytest.raises(OutOfStock, match="no tea left"):  # a business error keeps its type
                    await greeter.buy("tea")
                assert await greeter.notify.oneway() is None  # sent; no answer awaited
                await asyncio.wait_for(provider.notified.wait(), 5)
                with pytest.raises(govrpc.MethodNotFoundError):
                    await client.invoke("aio.Greeter", "nope", timeout=2.0)
            with pytest.raises(govrpc.ConfigurationError, match="closed"):
                greeter.hello("late")
        finally:
            await server.stop(grace=0)
    run(main)


def test_async_and_sync_twins_call_each_other(memory_registry, start_server, client_factory) -> None:
    start_server(memory_registry, Echo("sync-provider"))

    async def main() -> None:
        async with govrpc.AsyncClient(memory_registry, local_first=False) as client:
            echo = client.proxy("test.Echo", timeout=2.0)
            assert await echo.whoami() == "sync-provider"
            assert await echo.add(2, b=3) == 5
        server = await serve(memory_registry, Greeter("async-provider"))
        try:
            sync_client = client_factory(memory_registry)
            # the sync client blocks: call it from a thread so the loop keeps serving
            answer = await asyncio.to_thread(sync_client.proxy("aio.Greeter", timeout=2.0).hello, "sue")
            assert answer == "hello sue from async-provider"
        finally:
            await server.stop(grace=0)
    run(main)


def test_async_server_refuses_what_it_cannot_serve(memory_registry) -> None:
    class Unmarked:
        async def hello(self) -> None: ...

    async def main() -> None:
        server = govrpc.AsyncServer(memory_registry)
        with pytest.raises(govrpc.ConfigurationError, match="not marked"):
            await server.add(Unmarked())
        await server.add(Greeter())
        with pytest.raises(govrpc.ConfigurationError, match="already hosted"):
            await server.add(Greeter())
        await server.stop()
        assert server.state == govrpc.server.ServerState.STOPPED
    run(main)


@pytest.mark.parametrize("cluster", ["failover", "failfast", "failsafe", "failback", "forking", "broadcast"])
def test_every_cluster_strategy_on_asyncio(memory_registry, cluster: str) -> None:
    """The strategies' own policies, driven by the asyncio driver, against a live and a dead provider."""
    async def main() -> None:
        live = Greeter("live")
        server = await serve(memory_registry, live)
        dead = f"grpc://127.0.0.1:{free_port()}/aio.Greeter"
        urls = [f"grpc://127.0.0.1:{server.port}/aio.Greeter", dead]
        try:
            async with govrpc.AsyncClient(memory_registry, local_first=False) as client:
                options: dict[str, Any] = {"cluster": cluster, "timeout": 2.0, "loadbalance": "roundrobin"}
                if cluster == "failsafe":
                    options["failsafe.default"] = '"fallback"'
                if cluster == "failback":
                    options["failback.codes"] = "UNAVAILABLE:default"
                    options["failback.default"] = '"fallback"'
                greeter = client.proxy("aio.Greeter", url=urls, **options)
                if cluster in ("failfast", "broadcast"):  # one failure is the caller's: checked below
                    answers = []
                else:
                    answers = [await greeter.whoami() for _ in range(6)]
                if cluster in ("failover", "forking"):
                    assert answers == ["live"] * 6  # the dead provider is retried past / raced
                elif cluster in ("failsafe", "failback"):
                    assert collections.Counter(answers) == {"live": 3, "fallback": 3}
                if cluster == "failfast":
                    assert await client.proxy("aio.Greeter", url=urls[:1], cluster="failfast").whoami() == "live"
                    dead_only = client.proxy("aio.Greeter", url=[dead], cluster="failfast", timeout=2.0)
                    with pytest.raises(govrpc.GovRpcError) as caught:
                        await dead_only.whoami()
                    assert caught.value.retryable
                if cluster == "broadcast":
                    both = client.proxy("aio.Greeter", url=urls[:1], cluster="broadcast", timeout=2.0)
                    assert await both.whoami() == "live"
                    with pytest.raises(govrpc.GovRpcError, match="1 of 2 providers failed"):
                        await greeter.whoami()
                    tolerant = client.proxy("aio.Greeter", url=urls, cluster="broadcast", timeout=2.0,
                                            **{"broadcast.fail.percent": 60})
                    assert await tolerant.whoami() == "live"
                for endpoint in client.reference("aio.Greeter", url=urls, **options).directory.invokers:
                    assert stats_of(endpoint).active == 0  # every attempt's in-flight mark was taken back  # every attempt's in-flight mark was taken back
        finally:
            await server.stop(grace=0)
    run(main)


STARTED = "started"


@govrpc.service("aio.Greeter")
class SlowGreeter(Greeter):
    async def whoami(self) -> str:
        self.cancelled.append(STARTED)
        await self.slow(5.0)
        return self.name


@govrpc.service("aio.Greeter")
class WaitingGreeter(Greeter):
    """Answers once ``other`` is running its call: the race's loser is surely in flight."""

    def __init__(self, name: str, other: Greeter) -> None:
        super().__init__(name)
        self.other = other

    async def whoami(self) -> str:
        for _ in range(200):
            if self.other.cancelled:
                break
            await asyncio.sleep(0.01)
        return self.name


def test_async_forking_returns_the_first_answer_and_cancels_the_other_branch(memory_registry) -> None:
    async def main() -> None:
        slow = SlowGreeter("slow")
        fast = WaitingGreeter("fast", slow)
        servers = [await serve(memory_registry, fast), await serve(memory_registry, slow)]
        try:
            async with govrpc.AsyncClient(memory_registry, local_first=False) as client:
                racing = client.proxy("aio.Greeter", cluster="forking", forks=2, timeout=3.0)
                assert await racing.whoami() == "fast"
                for _ in range(100):  # the losing branch's RPC was cancelled, and so its handler
                    if len(slow.cancelled) == 2:
                        break
                    await asyncio.sleep(0.05)
                assert slow.cancelled == [STARTED, "slow"]
        finally:
            for server in servers:
                await server.stop(grace=0)
    run(main)


def test_deadline_reaches_the_async_provider_and_cancels_its_task(memory_registry) -> None:
    async def main() -> None:
        provider = Greeter()
        server = await serve(memory_registry, provider)
        try:
            async with govrpc.AsyncClient(memory_registry, local_first=False) as client:
                greeter = client.proxy("aio.Greeter", timeout=1.0, retries=0)
                with pytest.raises(govrpc.CallTimeoutError):
                    await greeter.slow(5.0)
                for _ in range(100):  # the provider's task was cancelled, not left sleeping
                    if provider.cancelled:
                        break
                    await asyncio.sleep(0.05)
                assert provider.cancelled == ["slow"]
        finally:
            await server.stop(grace=0)
    run(main)


def test_cancelling_the_awaiting_task_cancels_the_rpc(memory_registry) -> None:
    async def main() -> None:
        provider = Greeter()
        server = await serve(memory_registry, provider)
        try:
            async with govrpc.AsyncClient(memory_registry, local_first=False) as client:
                greeter = client.proxy("aio.Greeter", timeout=10.0, retries=0)
                task = asyncio.ensure_future(greeter.slow(5.0))
                for _ in range(200):  # cancel once the provider runs it
                    if provider.started:
                        break
                    await asyncio.sleep(0.01)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                for _ in range(100):
                    if provider.cancelled:
                        break
                    await asyncio.sleep(0.05)
                assert provider.cancelled == ["slow"]  # the provider's handler was cancelled too
                state = client.reference("aio.Greeter", timeout=10.0, retries=0).directory.invokers[0].state
                assert state.active == 0
        finally:
            await server.stop(grace=0)
    run(main)


def test_async_tag_routing_and_local_first(memory_registry, start_server) -> None:
    local = Echo("local")
    start_server(memory_registry, local)

    async def main() -> None:
        plain = await serve(memory_registry, Greeter("plain"))
        gray = await serve(memory_registry, Greeter("gray"), tags={"tag": "gray"})
        try:
            async with govrpc.AsyncClient(memory_registry, local_first=False) as client:
                tagged = client.proxy("aio.Greeter", tag="gray", timeout=2.0)
                untagged = client.proxy("aio.Greeter", timeout=2.0)
                assert {await tagged.whoami() for _ in range(8)} == {"gray"}
                assert {await untagged.whoami() for _ in range(8)} == {"plain"}
            async with govrpc.AsyncClient(memory_registry, local_first=True) as client:
                echo = client.proxy("test.Echo", timeout=2.0)
                assert [await echo.whoami() for _ in range(3)] == ["local"] * 3
                assert client._core.pool.addresses() == []  # in-process: no channel was opened
        finally:
            await plain.stop(grace=0)
            await gray.stop(grace=0)
    run(main)


def test_trace_context_travels_from_async_client_to_async_provider(memory_registry) -> None:
    async def main() -> None:
        server = await serve(memory_registry, Greeter())
        try:
            async with govrpc.AsyncClient(memory_registry, local_first=False) as client:
                greeter = client.proxy("aio.Greeter", timeout=2.0)
                first, second = await greeter.trace_id(), await greeter.trace_id()
                assert len(first) == 32 and int(first, 16) and first != second  # one trace per call
                untraced = client.proxy("aio.Greeter", timeout=2.0, trace="false")
                assert await untraced.trace_id() != first
        finally:
            await server.stop(grace=0)
    run(main)


@pytest.mark.parametrize("kind", ["file", "zookeeper"])
def test_async_pair_on_file_and_zookeeper_registries(kind: str, file_registry, request) -> None:
    """Registry deliveries arrive on the registry's threads and reach the loop safely: a provider
    that stops is dropped, one that starts is called."""
    registry = file_registry if kind == "file" else request.getfixturevalue("zk_url")()

    async def main() -> None:
        first = await serve(registry, Greeter("first"))
        async with govrpc.AsyncClient(registry, local_first=False) as client:
            greeter = client.proxy("aio.Greeter", timeout=2.0)
            assert await greeter.whoami() == "first"
            second = await serve(registry, Greeter("second"))
            await first.stop(grace=1.0)
            seen = set()
            for _ in range(200):
                seen.add(await greeter.whoami())
                if "second" in seen:
                    break
                await asyncio.sleep(0.05)
            assert "second" in seen
            for _ in range(5):
                assert await greeter.whoami() == "second"
            await second.stop(grace=0)
    run(main, 60)


def test_async_failover_loses_no_call_when_a_provider_is_sigkilled(file_registry) -> None:
    from tests.integration.test_cluster_failover import spawn, stop

    procs = []
    try:
        for name in ("p0", "p1", "p2"):
            procs.append(spawn(file_registry, name)[0])

        async def main() -> tuple[collections.Counter[str], list[BaseException]]:
            async with govrpc.AsyncClient(file_registry, timeout=5.0, local_first=False) as client:
                ledger = client.proxy("e2e.Ledger", cluster="failover", retries=2, loadbalance="roundrobin")
                seen: set[str] = set()
                for _ in range(300):
                    seen.add((await ledger.balance("warm", 0))[0])
                    if len(seen) == 3:
                        break
                assert seen == {"p0", "p1", "p2"}
                answers: collections.Counter[str] = collections.Counter()
                errors: list[BaseException] = []

                async def load(worker: int) -> None:
                    for n in range(60):
                        if worker == 0 and n == 20:
                            procs[0].kill()  # SIGKILL mid-load: no goodbye to the registry
                        try:
                            name, account, got = await ledger.balance(f"acct{worker}", n)
                        except Exception as exc:  # noqa: BLE001 - counted below
                            errors.append(exc)
                            continue
                        assert (account, got) == (f"acct{worker}", n)
                        answers[name] += 1

                await asyncio.gather(*(load(w) for w in range(8)))
                return answers, errors

        answers, errors = run(main, 60)
        assert errors == []
        assert sum(answers.values()) == 8 * 60
        assert answers["p1"] and answers["p2"]
    finally:
        stop(procs)


def test_async_failcache_resends_through_the_loop_once_the_provider_is_back(memory_registry) -> None:
    from govrpc.cluster.failcache import RetryAccepted

    async def main() -> None:
        port = free_port()
        provider = Greeter("late")
        async with govrpc.AsyncClient(memory_registry, local_first=False) as client:
            greeter = client.proxy("aio.Greeter", url=f"grpc://127.0.0.1:{port}", cluster="failcache",
                                   timeout=1.0, **{"failcache.period": 0.2, "failcache.retries": 20})
            queued = await greeter.hello("ann")
            assert isinstance(queued, RetryAccepted) and provider.calls == 0
            server = await serve(memory_registry, provider, port=port)
            try:
                for _ in range(200):
                    if provider.calls:
                        break
                    await asyncio.sleep(0.05)
                assert provider.calls == 1  # the timer thread's re-send was awaited on this loop
            finally:
                await server.stop(grace=0)
    run(main)


def test_async_breakers_and_masks_share_the_sync_decisions(memory_registry) -> None:
    """The breaker of a dead provider opens from AsyncClient calls and ``list`` leaves it out; a
    mask answers a failed call: the same decision objects as on the sync side, awaited."""
    async def main() -> None:
        server = await serve(memory_registry, Greeter("live"))
        dead = f"grpc://127.0.0.1:{free_port()}/aio.Greeter"
        urls = [f"grpc://127.0.0.1:{server.port}/aio.Greeter", dead]
        try:
            async with govrpc.AsyncClient(memory_registry, local_first=False) as client:
                greeter = client.proxy("aio.Greeter", url=urls, cluster="failfast", loadbalance="roundrobin",
                                       timeout=2.0, breaker={"failures": 2, "open": 30})
                outcomes = []
                for _ in range(12):
                    try:
                        outcomes.append(await greeter.whoami())
                    except govrpc.GovRpcError as exc:
                        outcomes.append(type(exc).__name__)
                assert outcomes[-6:] == ["live"] * 6  # the dead provider's circuit is open: not listed
                assert outcomes.count("live") >= 8
                endpoint = next(e for e in client.reference("aio.Greeter", url=urls, cluster="failfast",
                                                            loadbalance="roundrobin", timeout=2.0,
                                                            breaker={"failures": 2, "open": 30}).directory.invokers
                                if e.url.address.endswith(dead.split(":")[2].split("/")[0]))
                assert endpoint.state.breaker.get("whoami").state.name == "open"
                only_dead = client.proxy("aio.Greeter", url=[dead], cluster="failfast", timeout=2.0,
                                         breaker={"failures": 1, "open": 30})
                with pytest.raises(govrpc.GovRpcError):
                    await only_dead.whoami()
                with pytest.raises(govrpc.CircuitOpenError):
                    await only_dead.whoami()
                masked = client.proxy("aio.Greeter", url=[dead], cluster="failfast", timeout=2.0,
                                      mock='fail:return "masked"')
                assert await masked.whoami() == "masked"
        finally:
            await server.stop(grace=0)
    run(main)


def test_async_spans_with_an_sdk_join_one_trace(memory_registry, monkeypatch) -> None:
    from opentelemetry import trace as otel_trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER", provider)

    async def main() -> str:
        server = await serve(memory_registry, Greeter())
        dead = f"grpc://127.0.0.1:{free_port()}/aio.Greeter"
        try:
            async with govrpc.AsyncClient(memory_registry, local_first=False) as client:
                live = f"grpc://127.0.0.1:{server.port}/aio.Greeter"
                greeter = client.proxy("aio.Greeter", url=[dead, live], loadbalance="roundrobin", timeout=2.0)
                return await greeter.trace_id()
        finally:
            await server.stop(grace=0)

    try:
        seen = run(main)
    finally:
        provider.shutdown()
    spans = exporter.get_finished_spans()
    client_span = next(s for s in spans if s.kind is otel_trace.SpanKind.CLIENT and s.name.endswith("/trace_id"))
    server_span = next(s for s in spans if s.kind is otel_trace.SpanKind.SERVER)
    assert f"{client_span.context.trace_id:032x}" == seen  # the provider's task ran in the caller's trace
    assert server_span.context.trace_id == client_span.context.trace_id
    assert server_span.parent is not None


def test_async_consumer_limits_refuse_with_the_sync_gates(memory_registry) -> None:
    """``actives`` (the consumer's concurrency limit) on an AsyncClient: the same gate refuses the
    call over the limit, at once and never silently, and the provider is not blamed for it."""
    async def main() -> None:
        provider = Greeter()
        server = await serve(memory_registry, provider)
        try:
            async with govrpc.AsyncClient(memory_registry, local_first=False) as client:
                greeter = client.proxy("aio.Greeter", timeout=5.0, actives=1)
                outcomes = await asyncio.gather(*(greeter.slow(0.3) for _ in range(3)), return_exceptions=True)
                refused = [o for o in outcomes if isinstance(o, govrpc.RateLimitedError)]
                assert [o for o in outcomes if o == 0.3] == [0.3] and len(refused) == 2
                assert "actives" in str(refused[0])
                assert provider.started == 1  # refused before leaving the consumer
                assert await greeter.slow(0.0) == 0.0  # the slot came back
        finally:
            await server.stop(grace=0)
    run(main)
