"""``Client.channel(service)``: a ``grpc.Channel`` whose calls go through governance.

A generated stub built on it (``GreeterStub(client.channel("helloworld.Greeter"))``)
asks the channel for one multicallable per method, as it would a plain channel.
Every call then becomes an ``Invocation`` of the channel's reference (registry or
``url=`` providers, a plain grpcio server's address included) and goes through
the consumer filters, the cluster strategy, routers and the load balancer to a
``StubInvoker``, which sends the stub's own message with the stub's own
serializers on the chosen provider's channel.

- Unary calls are governed per call: each attempt may go to another provider
  (failover), and a govrpc refusal reaches the stub's caller as a ``grpc.RpcError``
  (``ChannelRpcError``: ``code()``, ``details()``, the govrpc error as ``error``).
- Streaming calls (all three kinds) are governed per stream: the filters (trace,
  limits) and the balancer run once when it opens, and the stream stays on the
  provider picked then; a stream is never retried (its requests may be half sent),
  and errors while it runs are grpc's own.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Callable

import grpc

from govrpc import exceptions as errors
from govrpc.context import _ATTACHMENTS
from govrpc.invocation import Invocation
from govrpc.rpc.invoker import ChannelPool, GrpcInvoker, _Entry
from govrpc.url import URL

if TYPE_CHECKING:
    from govrpc.client import Client, Reference

__all__ = ["ChannelRpcError", "GovernedChannel", "StubInvoker"]

UNARY, UNARY_STREAM, STREAM_UNARY, STREAM_STREAM = "unary_unary", "unary_stream", "stream_unary", "stream_stream"
Codec = tuple[str, Callable[[Any], bytes] | None, Callable[[bytes], Any] | None]
_identity: Callable[[Any], Any] = lambda value: value  # noqa: E731 - grpc (de)serializes with the stub's codecs


class _EndedCall(grpc.Call):
    """A ``grpc.Call`` that has ended (what ``with_call`` returns for an answered governed call)."""

    def initial_metadata(self) -> tuple[()]:
        return ()

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.OK

    def details(self) -> str:
        return ""

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False


class ChannelRpcError(grpc.RpcError, _EndedCall):
    """A govrpc error (no provider, timeout, refused by a limit...) as a stub's caller expects it."""

    def __init__(self, error: errors.GovRpcError) -> None:
        super().__init__(error.message or str(error))
        self.error = error
        self._code = getattr(grpc.StatusCode, error.code, grpc.StatusCode.UNKNOWN)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self.error.message or str(self.error)

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("govrpc-error", type(self.error).__name__),)


class StubInvoker(GrpcInvoker):
    """Sends a stub's messages to one provider with the stub's own codecs (``codecs``, by method
    name, filled by the channel as the stub asks for its methods)."""

    defer_answer = True  # a client-streaming call returns its future (grpc.aio's calls are awaitables already)

    def __init__(self, url: URL, pool: ChannelPool, codecs: dict[str, Codec], *, application: str = "",
                 token: str = "") -> None:
        super().__init__(url, pool, application=application, token=token)
        self._codecs = codecs

    def _method(self, name: str) -> _Entry:
        with self._lock:
            entry = self._methods.get(name)
            if entry is not None:
                return entry
            if self._closed:
                raise errors.ConnectionRefusedByProviderError(f"provider {self.address} has left")
            codec = self._codecs.get(name)
            if codec is None:
                raise errors.MethodNotFoundError(f"{self.url.path} has no stub method {name!r} on this channel")
            if self._channel is None:
                self._channel = self._pool.acquire(self.address, self.pings)
            kind, serialize, deserialize = codec
            multicallable = getattr(self._channel, kind)(f"/{self.url.path}/{name}", request_serializer=serialize,
                                                         response_deserializer=deserialize, _registered_method=True)
            if kind == STREAM_UNARY and self.defer_answer:  # opened now, answered later: never retried
                multicallable = multicallable.future
            entry = (multicallable, None, _first_arg, _identity)  # grpc's own call: it serializes the messages
            self._methods[name] = entry
            return entry


def _first_arg(invocation: Invocation) -> Any:
    return invocation.args[0]


class _MultiCallable:
    __slots__ = ("_channel", "_name", "_kind")

    def __init__(self, channel: GovernedChannel, name: str, kind: str) -> None:
        self._channel = channel
        self._name = name
        self._kind = kind

    def _call(self, request: Any, timeout: float | None, metadata: Any) -> Any:
        channel = self._channel
        try:
            return channel.reference.invoke(channel.invocation(self._name, request, timeout, metadata))
        except errors.GovRpcError as exc:
            raise ChannelRpcError(exc) from exc

    def __call__(self, request: Any, timeout: float | None = None, metadata: Any = None, credentials: Any = None,
                 wait_for_ready: bool | None = None, compression: Any = None) -> Any:
        opened = self._call(request, timeout, metadata)
        if self._kind == STREAM_UNARY:
            return opened.result()
        return opened

    def with_call(self, request: Any, timeout: float | None = None, metadata: Any = None, credentials: Any = None,
                  wait_for_ready: bool | None = None, compression: Any = None) -> tuple[Any, grpc.Call]:
        value = self(request, timeout, metadata)
        return value, _EndedCall()

    def future(self, request: Any, timeout: float | None = None, metadata: Any = None, credentials: Any = None,
               wait_for_ready: bool | None = None, compression: Any = None) -> Future[Any]:
        if self._kind == STREAM_UNARY:
            return self._call(request, timeout, metadata)
        return self._channel.client._run(lambda: self(request, timeout, metadata))


class GovernedChannel(grpc.Channel):
    """What ``Client.channel`` returns: a ``grpc.Channel`` for stubs of one service."""

    transport: type[StubInvoker] = StubInvoker

    def __init__(self, client: Client, service: str, options: dict[str, Any]) -> None:
        self.client = client
        self.service = service
        self.codecs: dict[str, Codec] = {}
        codecs, pool, application, cls = self.codecs, client.pool, client.application, self.transport

        def transport(url: URL) -> StubInvoker:
            invoker = cls(url, pool, codecs, application=application, token=client._token)
            with client._transport_lock:  # where Client.rotate_token changes the token
                client._transports.add(invoker)
            return invoker

        self.reference: Reference = client.reference(service, transport=transport, **options)

    def invocation(self, name: str, request: Any, timeout: float | None, metadata: Any) -> Invocation:
        """The ``Invocation`` of one stub call: the stub's message, its metadata as attachments."""
        reference = self.reference
        attachments = dict(_ATTACHMENTS.get() or {})
        if metadata:
            attachments.update((k.lower(), v) for k, v in metadata)
        seconds = timeout if timeout is not None else reference.timeout_of(name)
        return Invocation(reference.key, name, (request,), {}, attachments, time.monotonic() + seconds)

    def _method(self, method: str, kind: str, serializer: Any, deserializer: Any) -> Any:
        service, _, name = method.lstrip("/").partition("/")
        if service != self.service or not name:
            raise errors.ConfigurationError(
                f"this channel governs calls to {self.service}, not {method!r}: make one channel per service")
        self.codecs[name] = (kind, serializer, deserializer)
        return self._multicallable(name, kind)

    def _multicallable(self, name: str, kind: str) -> Any:
        return _MultiCallable(self, name, kind)

    def unary_unary(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                    _registered_method: bool = False) -> Any:
        return self._method(method, UNARY, request_serializer, response_deserializer)

    def unary_stream(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                     _registered_method: bool = False) -> Any:
        return self._method(method, UNARY_STREAM, request_serializer, response_deserializer)

    def stream_unary(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                     _registered_method: bool = False) -> Any:
        return self._method(method, STREAM_UNARY, request_serializer, response_deserializer)

    def stream_stream(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                      _registered_method: bool = False) -> _MultiCallable:
        return self._method(method, STREAM_STREAM, request_serializer, response_deserializer)

    def subscribe(self, callback: Any, try_to_connect: bool = False) -> None:
        raise NotImplementedError("a governed channel has no one connection to watch; see the reference's providers")

    def unsubscribe(self, callback: Any) -> None:
        raise NotImplementedError("a governed channel has no one connection to watch")

    def close(self) -> None:
        """Nothing to do: the providers' channels belong to the client (closed with it)."""

    def __enter__(self) -> GovernedChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


