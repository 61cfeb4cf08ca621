"""Streaming methods of decorated services, on both ends of the wire (sync).

A method whose spec says ``stream`` (``govrpc.service.STREAM_KINDS``) is served as
that kind of gRPC call: ``server`` (a generator: each value it yields is one
message), ``client`` (its one parameter receives the caller's values as an
iterator) or ``bidi`` (both). Each message is one value encoded with the
service's serializer; a server stream's request is the usual ``[args, kwargs]``.

The provider filters run once per stream, when it opens (the method's call);
a failure while a stream runs ends it with the error, encoded as a unary call's.
On the consumer, ``GrpcInvoker`` opens the call the provider URL's
``{method}.stream`` names: a server or bidi stream returns an iterator of values,
a client stream takes an iterable as its one argument.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Iterator

import grpc

from govrpc import exceptions as errors
from govrpc.invocation import Invocation
from govrpc.rpc.wire import CallContext, attachments_of, decode_envelope
from govrpc.service import MethodSpec
from govrpc.url import ServiceKey

__all__ = ["avalues", "consumer_codec", "stream_handler"]

KIND = {"server": "unary_stream", "client": "stream_unary", "bidi": "stream_stream"}


Fail = Callable[[grpc.ServicerContext, BaseException, Any], None]
Translate = Callable[[grpc.RpcError, Invocation, str], BaseException]


def stream_handler(exported: Any, spec: MethodSpec, _fail: Fail) -> grpc.RpcMethodHandler:
    """The grpc handler serving streaming method ``spec`` of ``exported`` (an ``ExportedService``);
    ``_fail`` aborts a call with an error encoded for the consumer (``rpc.server``'s)."""
    key, name, invoker = exported.key, spec.name, exported.invoker
    where = f"{key}.{name}"
    loads, dumps = exported.serializer.loads, exported.serializer.dumps
    consumes = spec.stream in ("client", "bidi")

    def open_(request: Any, context: grpc.ServicerContext) -> tuple[Any, list[Any]]:
        metadata = context.invocation_metadata() or ()
        attachments = attachments_of(metadata)
        provider_context = CallContext(context, metadata, spec)
        remaining = context.time_remaining()
        deadline = time.monotonic() + remaining if remaining is not None else float("inf")
        try:
            if consumes:
                args: tuple[Any, ...] = ((loads(message) for message in request),)
                kwargs: dict[str, Any] = {}
            else:
                args, kwargs = decode_envelope(loads(request), where)
            result = invoker.invoke(Invocation(key, name, args, kwargs, attachments, deadline,
                                               context=provider_context))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
            _fail(context, exc, provider_context.trailing)
        return result, provider_context.trailing

    if spec.stream == "client":
        def answer(requests: Any, context: grpc.ServicerContext) -> bytes:
            value, trailing = open_(requests, context)
            if trailing:
                context.set_trailing_metadata(tuple(trailing))
            return dumps(value)

        return grpc.stream_unary_rpc_method_handler(answer)

    def produce(request: Any, context: grpc.ServicerContext) -> Iterator[bytes]:
        values, trailing = open_(request, context)
        try:
            for value in values:
                yield dumps(value)
        except BaseException as exc:  # noqa: BLE001 - the stream ends with the error
            _fail(context, exc, trailing)
        if trailing:
            context.set_trailing_metadata(tuple(trailing))

    make = grpc.stream_stream_rpc_method_handler if consumes else grpc.unary_stream_rpc_method_handler
    return make(produce)


def consumer_codec(stream: str, serializer: Any, key: ServiceKey, name: str, address: str, translate: Translate
                   ) -> tuple[str, Callable[[Invocation], Any], Callable[[Any], Any]]:
    """The multicallable kind, request encoder and response decoder of streaming method ``name``
    (``translate``: ``rpc.invoker.translate_error``, for errors while the stream is read)."""
    dumps, loads = serializer.dumps, serializer.loads
    kind = KIND[stream]
    if stream == "server":
        def encode(invocation: Invocation) -> Any:
            return serializer.dumps_call(invocation.args, invocation.kwargs)
    else:
        def encode(invocation: Invocation) -> Any:
            if len(invocation.args) != 1 or invocation.kwargs:
                raise errors.SerializationError(f"{invocation}: a client stream takes one iterable argument",
                                                invocation=invocation)
            values = invocation.args[0]
            if hasattr(values, "__aiter__"):  # an AsyncClient's caller may stream from async code
                return _adumps(values, dumps)
            return (dumps(value) for value in _iterable(invocation, values))
    if stream == "client":
        return kind, encode, loads

    where = Invocation(key, name)  # names the call in errors raised while the stream is read

    def decode(call: Any) -> Iterator[Any]:
        return _values(call, loads, where, address, translate)

    return kind, encode, decode


def _iterable(invocation: Invocation, values: Any) -> Iterable[Any]:
    if not isinstance(values, Iterable):
        raise errors.SerializationError(f"{invocation}: a client stream takes an iterable, not {values!r}",
                                        invocation=invocation)
    return values


async def _adumps(values: Any, dumps: Callable[[Any], bytes]) -> Any:
    async for value in values:
        yield dumps(value)


async def avalues(call: Any, loads: Callable[[bytes], Any], where: Invocation, address: str,
                  translate_error: Translate) -> Any:
    """The asyncio twin of a stream's decoder: the values of a grpc.aio stream, errors translated."""
    try:
        async for message in call:
            yield loads(message)
    except grpc.RpcError as exc:
        raise translate_error(exc, where, address) from None


def _values(call: Any, loads: Callable[[bytes], Any], where: Invocation, address: str,
            translate_error: Translate) -> Iterator[Any]:
    try:
        for message in call:
            yield loads(message)
    except grpc.RpcError as exc:
        raise translate_error(exc, where, address) from None
