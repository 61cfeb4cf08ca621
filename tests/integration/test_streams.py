"""Streaming methods of decorated services: server, client and bidi streams, sync and asyncio."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Iterator

import pytest

import govrpc
from tests.integration.services import OutOfStock


@govrpc.service("streams.Counter")
class Counter:
    def count(self, n: int, start: int = 0) -> Iterator[int]:  # a generator: server streaming
        yield from range(start, start + n)

    def total(self, values: Iterator[int]) -> int:  # an iterator parameter: client streaming
        return sum(values)

    def doubled(self, values: Iterator[int]) -> Iterator[int]:  # both: bidi
        for value in values:
            yield value * 2

    def broken(self, n: int) -> Iterator[int]:
        yield n
        raise OutOfStock("ran out after one")

    def plain(self, n: int) -> int:
        return n


@govrpc.service("streams.Counter")
class AsyncCounter:
    async def count(self, n: int, start: int = 0) -> AsyncIterator[int]:
        for i in range(start, start + n):
            await asyncio.sleep(0)
            yield i

    async def total(self, values: AsyncIterator[int]) -> int:
        return sum([v async for v in values])

    async def doubled(self, values: AsyncIterator[int]) -> AsyncIterator[int]:
        async for value in values:
            yield value * 2

    async def broken(self, n: int) -> AsyncIterator[int]:
        yield n
        raise OutOfStock("ran out after one")

    async def plain(self, n: int) -> int:
        return n


def test_the_spec_tells_each_kind_of_stream() -> None:
    from govrpc.service import describe

    kinds = {m.name: m.stream for m in describe(Counter).methods}
    assert kinds == {"count": "server", "total": "client", "doubled": "bidi", "broken": "server", "plain": ""}
    assert {m.name: m.stream for m in describe(AsyncCounter, allow_async=True).methods} == kinds


def test_sync_streams_through_a_proxy(memory_registry, start_server, client_factory) -> None:
    server = start_server(memory_registry, Counter())
    assert "count.stream=server" in str(server.urls[0]) and "doubled.stream=bidi" in str(server.urls[0])
    counter = client_factory(memory_registry).proxy("streams.Counter", timeout=5.0)
    assert list(counter.count(4, start=2)) == [2, 3, 4, 5]
    assert counter.total(iter(range(10))) == 45
    assert list(counter.doubled([1, 2, 3])) == [2, 4, 6]
    stream = counter.broken(7)
    assert next(stream) == 7
    with pytest.raises(OutOfStock, match="ran out after one"):  # the stream ends with the provider's error
        next(stream)
    assert counter.plain(3) == 3


def test_async_streams_both_ways(memory_registry, start_server) -> None:
    async def main() -> None:
        server = govrpc.AsyncServer(memory_registry)
        await server.add(AsyncCounter())
        await server.start()
        try:
            async with govrpc.AsyncClient(memory_registry, local_first=False) as client:
                counter = client.proxy("streams.Counter", timeout=5.0)
                assert [v async for v in await counter.count(3, start=1)] == [1, 2, 3]

                async def values() -> AsyncIterator[int]:
                    for v in (4, 5, 6):
                        yield v

                assert await counter.total(values()) == 15
                assert await counter.total([1, 2]) == 3  # a plain iterable streams too
                assert [v async for v in await counter.doubled(values())] == [8, 10, 12]
                seen = []
                with pytest.raises(OutOfStock, match="ran out after one"):
                    async for v in await counter.broken(9):
                        seen.append(v)
                assert seen == [9]
            # a sync client reads the async server's streams (from a thread: the loop keeps serving)
            with govrpc.Client(memory_registry, local_first=False) as sync_client:
                proxy = sync_client.proxy("streams.Counter", timeout=5.0)
                assert await asyncio.to_thread(lambda: list(proxy.count(2))) == [0, 1]
        finally:
            await server.stop(grace=0)

    asyncio.run(asyncio.wait_for(main(), 30))


def test_async_server_refuses_a_plain_streaming_method(memory_registry) -> None:
    async def main() -> None:
        with pytest.raises(govrpc.ConfigurationError, match="async generator"):
            await govrpc.AsyncServer(memory_registry).add(Counter())

    asyncio.run(main())
