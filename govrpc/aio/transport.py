"""The asyncio twin of the transport's consumer end: calls on ``grpc.aio`` channels.

``AsyncGrpcInvoker`` is a ``GrpcInvoker`` (same encoding, metadata and error
translation) whose channels come from an ``AsyncChannelPool``: one ``grpc.aio``
channel per address, made on the event loop of the first call. Its verb is
``ainvoke``; cancelling the task that awaits it cancels the RPC (grpc.aio does).
A channel released from another thread (a registry's delivery thread retiring a
provider) is closed on the loop, handed over with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

import grpc
import grpc.aio

from govrpc import exceptions as errors
from govrpc.invocation import Invocation
from govrpc.rpc.invoker import ChannelPool, GrpcInvoker, translate_error
from govrpc.rpc.streams import avalues

__all__ = ["AsyncChannelPool", "AsyncGrpcInvoker"]

log = logging.getLogger("govrpc.rpc")
_Metadata = grpc.aio.Metadata


class AsyncChannelPool(ChannelPool):
    """One ``grpc.aio`` channel per provider address, shared by every service on it (one loop).

    ``credentials`` and ``options`` as ``ChannelPool``'s: with credentials every channel is
    a TLS one, and without them a provider that serves TLS only is refused, never dialled.
    """

    def __init__(self, *, max_message_size: int = 4 * 1024 * 1024,
                 credentials: grpc.ChannelCredentials | None = None,
                 options: list[tuple[str, Any]] | None = None, application: str = "") -> None:
        super().__init__(max_message_size=max_message_size, credentials=credentials, options=options,
                         application=application)
        self._aio: dict[str, tuple[grpc.aio.Channel, int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def acquire(self, address: str, pings: float | None = 0.0) -> Any:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()  # channels belong to the loop of the first call
            channel, count = self._aio.get(address, (None, 0))
            if channel is None:
                options = self.options_for(pings)
                channel = (grpc.aio.insecure_channel(address, options=options) if self.credentials is None
                           else grpc.aio.secure_channel(address, self.credentials, options=options))
            self._aio[address] = (channel, count + 1)
            return channel

    def release(self, address: str) -> None:
        with self._lock:
            channel, count = self._aio.get(address, (None, 0))
            if channel is None:
                return
            if count > 1:
                self._aio[address] = (channel, count - 1)
                return
            del self._aio[address]
            loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._close_later, channel)

    def _close_later(self, channel: grpc.aio.Channel) -> None:
        task = asyncio.ensure_future(channel.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def addresses(self) -> list[str]:
        with self._lock:
            return sorted(self._aio)

    async def aclose(self) -> None:
        """Close every channel (the calls still on them are cancelled)."""
        with self._lock:
            channels = [c for c, _ in self._aio.values()]
            self._aio.clear()
        for channel in channels:
            await channel.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def close(self) -> None:  # a sync close cannot await: the channels are closed on their loop
        with self._lock:
            addresses = list(self._aio)
        for address in addresses:
            self.release(address)


class AsyncGrpcInvoker(GrpcInvoker):
    """Calls one provider over its address's shared ``grpc.aio`` channel (verb: ``ainvoke``)."""

    start = None  # type: ignore[assignment]  # no concurrent.futures call here: awaited instead
    _tasks: set[asyncio.Task[Any]] = set()  # oneway calls in flight (kept from the collector)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._streams = any(key.endswith(".stream") for key in self.url.params)

    def invoke(self, invocation: Invocation) -> Any:
        raise errors.ConfigurationError(f"{invocation}: an AsyncClient's providers are awaited (ainvoke)")

    async def ainvoke(self, invocation: Invocation) -> Any:
        call, _, decode, request, timeout, pairs = self._prepare(invocation)
        # grpc.aio's own Metadata: a tuple is checked against typing's Sequence and copied into one
        metadata = _Metadata(*pairs) if pairs else None
        stream = self.url.params.get(f"{invocation.method}.stream") if self._streams else None
        if stream == "server" or stream == "bidi":  # opened: its caller iterates it
            return avalues(call(request, timeout=timeout, metadata=metadata), self.serializer.loads,
                           invocation, self.address, translate_error)
        listener = self._listener  # an ORCA reader's (``read_trailers``); None: trailers are not read
        try:
            if invocation.oneway:
                task = asyncio.ensure_future(self._oneway(call(request, timeout=timeout, metadata=metadata),
                                                          invocation))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                return None
            rpc = call(request, timeout=timeout, metadata=metadata)
            response = await rpc
            if listener is not None:
                listener(await rpc.trailing_metadata())
        except grpc.RpcError as exc:
            if listener is not None:
                listener(exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else ())
            raise translate_error(exc, invocation, self.address) from None
        except asyncio.CancelledError:
            raise
        except (ValueError, RuntimeError, grpc.aio.UsageError) as exc:  # the channel was closed under the call
            if not self._closed:
                raise
            raise self._left(invocation) from exc
        try:
            return decode(response)
        except Exception as exc:  # noqa: BLE001
            raise errors.SerializationError(f"{invocation}: cannot decode the response: {exc}",
                                            invocation=invocation) from exc

    def read_trailers(self, listener: Callable[[Any], None] | None) -> None:
        """``GrpcInvoker.read_trailers``, awaited: each unary answer's (or failure's) trailing
        metadata goes to ``listener`` (an ORCA reader); None: none is read."""
        self._listener = listener

    async def _oneway(self, call: Any, invocation: Invocation) -> None:
        try:
            await call
        except grpc.RpcError as exc:
            log.warning("oneway %s to %s failed: %s", invocation, self.address,
                        translate_error(exc, invocation, self.address))
        except asyncio.CancelledError:
            pass

    def __repr__(self) -> str:
        return f"AsyncGrpcInvoker({self.address}/{self.url.path})"

