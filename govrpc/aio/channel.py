"""``AsyncClient.channel(service)``: the asyncio twin of ``govrpc.rpc.channel``, for stubs on grpc.aio.

A generated stub built on it is used as on a ``grpc.aio`` channel: ``await
stub.SayHello(request)``, ``async for reply in stub.ListHellos(request)``, ``await
stub.CollectHellos(requests)``, ``async for reply in stub.ChatHellos(requests)``.
Unary calls are governed per call, streams when they open (see ``govrpc.rpc.channel``);
cancelling the awaiting task cancels the RPC.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, AsyncIterator

import grpc

from govrpc import exceptions as errors
from govrpc.aio.transport import AsyncGrpcInvoker
from govrpc.invocation import Invocation
from govrpc.rpc.channel import STREAM_UNARY, UNARY, ChannelRpcError, GovernedChannel, StubInvoker, _MultiCallable
from govrpc.rpc.invoker import translate_error

if TYPE_CHECKING:
    from govrpc.aio.client import AsyncClient, AsyncReference

__all__ = ["AsyncGovernedChannel", "AsyncStubInvoker"]


class AsyncStubInvoker(StubInvoker, AsyncGrpcInvoker):
    """A stub's messages to one provider on its ``grpc.aio`` channel (verb: ``ainvoke``)."""

    defer_answer = False

    async def ainvoke(self, invocation: Invocation) -> Any:
        call, _, _, request, timeout, metadata = self._prepare(invocation)
        rpc = call(request, timeout=timeout, metadata=metadata)
        if self._codecs[invocation.method][0] != UNARY:
            return rpc  # a stream, open: its caller iterates (or awaits) it
        try:
            return await rpc
        except grpc.RpcError as exc:
            raise translate_error(exc, invocation, self.address) from None


class _AsyncMultiCallable(_MultiCallable):
    __slots__ = ()

    async def _open(self, request: Any, timeout: float | None, metadata: Any) -> Any:
        channel = self._channel
        assert isinstance(channel, AsyncGovernedChannel)
        try:
            return await channel.areference.ainvoke(channel.invocation(self._name, request, timeout, metadata))
        except errors.GovRpcError as exc:
            raise ChannelRpcError(exc) from exc

    def __call__(self, request: Any, timeout: float | None = None, metadata: Any = None, credentials: Any = None,
                 wait_for_ready: bool | None = None, compression: Any = None) -> Any:
        opening = self._open(request, timeout, metadata)
        if self._kind == UNARY:
            return opening
        if self._kind == STREAM_UNARY:
            return _answer(opening)
        return _Stream(opening)


async def _answer(opening: Any) -> Any:
    return await (await opening)


class _Stream:
    """A governed stream: opened (filters, balancer) when first iterated, then grpc.aio's own."""

    def __init__(self, opening: Any) -> None:
        self._opening = opening

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        call = await self._opening
        async for reply in call:
            yield reply


class AsyncGovernedChannel(GovernedChannel):
    """What ``AsyncClient.channel`` returns: a channel for grpc.aio stubs of one service."""

    transport = AsyncStubInvoker

    def __init__(self, client: AsyncClient, service: str, options: dict[str, Any]) -> None:
        super().__init__(client._core, service, options)
        self.areference: AsyncReference = client._wrap(self.reference)

    def _multicallable(self, name: str, kind: str) -> Any:
        return _AsyncMultiCallable(self, name, kind)

    async def close(self) -> None:  # type: ignore[override]
        """Nothing to do: the providers' channels belong to the client (closed with it)."""

    async def __aenter__(self) -> AsyncGovernedChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
