"""``govrpc.AsyncServer``: the asyncio twin of ``govrpc.Server``, on ``grpc.aio``.

Services are the same ``@govrpc.service`` classes; a method may be ``async def``
(awaited on the loop) or a plain function (run on a thread, so it cannot stall
the loop). Provider URLs, registration and the stop order (deregister, let
consumers notice, drain, stop) are the sync server's; provider filters run
through their ``ainvoke`` twins. The call's deadline reaches the provider: when
it passes, the handler's task is cancelled and the consumer gets DEADLINE_EXCEEDED;
when the consumer cancels, grpc cancels the handler's task.

Services hosted here are not offered in-process to consumers of this process
(local-first); those call them over gRPC.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Any, Callable, Iterable, Mapping

import grpc
import grpc.aio

from govrpc.exceptions import CallTimeoutError, ConfigurationError, MethodNotFoundError, SerializationError
from govrpc.invocation import Filter, Invocation, Invoker, ProviderContext, build_async_filter_chain
from govrpc.registry.base import Registry, acquire_registry, release_registry
from govrpc.rpc.server import ERROR_KEY, ExportedService, GrpcServer, _failure
from govrpc.rpc.wire import decode_envelope, split_metadata, truncate
from govrpc.security import TLS
from govrpc.server import SETTLE_SECONDS, Server, ServerState
from govrpc.service import MethodSpec, ServiceSpec, describe
from govrpc.url import URL, ServiceKey

__all__ = ["AsyncGrpcServer", "AsyncProviderInvoker", "AsyncServer"]

log = logging.getLogger("govrpc.server")


class AsyncProviderInvoker(Invoker):
    """Calls the user's method: awaited if ``async def``, else on a thread (verb: ``ainvoke``)."""

    def __init__(self, instance: Any, spec: ServiceSpec, url: URL) -> None:
        self.url = url
        self.spec = spec
        self.methods = {m.name: getattr(instance, m.name) for m in spec.methods}
        self.awaited = frozenset(n for n, fn in self.methods.items() if inspect.iscoroutinefunction(fn))
        self.streams = frozenset(n for n, fn in self.methods.items() if inspect.isasyncgenfunction(fn))
        for m in spec.methods:
            if m.stream and m.name not in self.awaited | self.streams:
                raise ConfigurationError(f"service {spec.key}: {m.name} streams, so on AsyncServer it must be an "
                                         f"async generator or async def (its stream is an async iterator)")

    @classmethod
    def check(cls, instance: Any, spec: ServiceSpec) -> None:
        """Raise ``ConfigurationError`` for a method this invoker could not serve."""
        cls(instance, spec, URL("grpc", "127.0.0.1", 0, spec.key.service))

    def invoke(self, invocation: Invocation) -> Any:
        raise ConfigurationError(f"{invocation}: an AsyncServer's provider is awaited (ainvoke)")

    async def ainvoke(self, invocation: Invocation) -> Any:
        method = self.methods.get(invocation.method)
        if method is None:
            raise MethodNotFoundError(
                f"service {self.spec.key} has no method {invocation.method!r}; "
                f"its methods: {', '.join(sorted(self.methods))}", invocation=invocation)
        if invocation.method in self.awaited:
            return await method(*invocation.args, **invocation.kwargs)
        if invocation.method in self.streams:  # an async generator: the handler iterates it
            return method(*invocation.args, **invocation.kwargs)
        return await asyncio.to_thread(method, *invocation.args, **invocation.kwargs)


async def _refuse(context: grpc.aio.ServicerContext, code: grpc.StatusCode, error: str, message: str) -> None:
    await context.abort(code, truncate(message), trailing_metadata=((ERROR_KEY, error),))


def _async_behavior(exported: ExportedService, spec: MethodSpec) -> Callable[..., Any]:
    """The coroutine grpc.aio runs for one method (the twin of ``rpc.server._unary_behavior``)."""
    key, name, invoker = exported.key, spec.name, exported.invoker
    where = f"{key}.{name}"
    loads, dumps = exported.serializer.loads, exported.serializer.dumps
    protobuf = spec.is_protobuf
    from_string = spec.request_type.FromString if protobuf else None  # type: ignore[union-attr]
    monotonic = time.monotonic
    ainvoke = invoker.ainvoke  # type: ignore[attr-defined]

    async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            await _refuse(context, grpc.StatusCode.DEADLINE_EXCEEDED, "CallTimeoutError",
                          f"{where}: the deadline passed while the call waited in the server's queue")
        try:
            decoded = from_string(request) if from_string is not None else loads(request)
            args, kwargs = ((decoded,), {}) if from_string is not None else decode_envelope(decoded, where)
        except Exception as exc:  # noqa: BLE001 - any decoding failure is the caller's
            text = exc.message if isinstance(exc, SerializationError) else f"{where}: cannot decode the request: {exc}"
            await _refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "SerializationError", text)
        metadata = context.invocation_metadata()
        attachments, binary, application = split_metadata(metadata) if metadata else ({}, {}, "")
        provider_context = ProviderContext(context.peer(), application, binary, spec)
        deadline = monotonic() + remaining if remaining is not None else float("inf")
        limit = asyncio.timeout(remaining)  # the deadline reaches the provider: its task is cancelled
        failure: BaseException | None = None
        try:
            async with limit:
                value = await ainvoke(Invocation(key, name, args, kwargs, attachments, deadline,
                                                 context=provider_context))
        except asyncio.CancelledError:
            raise  # the consumer went away: grpc cancelled this handler
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
            failure = exc
            if isinstance(exc, TimeoutError) and limit.expired():
                failure = CallTimeoutError(f"{where}: the deadline passed while the provider ran "
                                           f"(its task was cancelled)")
        trailing = provider_context.trailing
        if failure is not None:
            code, message, trailers = _failure(failure, trailing)
            await context.abort(code, message, trailing_metadata=tuple(trailers))
        try:
            encoded = value if protobuf else dumps(value)
        except Exception as exc:  # noqa: BLE001
            await context.abort(grpc.StatusCode.INTERNAL,
                                truncate(f"{where}: cannot encode the result {type(value).__name__}: {exc}"),
                                trailing_metadata=((ERROR_KEY, "SerializationError"), *trailing))
        if trailing:
            context.set_trailing_metadata(tuple(trailing))
        return encoded

    return behavior


def _async_stream_handler(exported: ExportedService, spec: MethodSpec) -> grpc.RpcMethodHandler:
    """The asyncio twin of ``rpc.streams.stream_handler``: a streaming method on grpc.aio."""
    key, name, invoker = exported.key, spec.name, exported.invoker
    where = f"{key}.{name}"
    loads, dumps = exported.serializer.loads, exported.serializer.dumps
    consumes = spec.stream in ("client", "bidi")
    ainvoke = invoker.ainvoke  # type: ignore[attr-defined]

    async def decoded(requests: Any) -> Any:
        async for message in requests:
            yield loads(message)

    async def open_(request: Any, context: grpc.aio.ServicerContext) -> tuple[Any, list[Any]]:
        metadata = context.invocation_metadata()
        attachments, binary, application = split_metadata(metadata) if metadata else ({}, {}, "")
        provider_context = ProviderContext(context.peer(), application, binary, spec)
        remaining = context.time_remaining()
        deadline = time.monotonic() + remaining if remaining is not None else float("inf")
        failure: BaseException | None = None
        try:
            args, kwargs = ((decoded(request),), {}) if consumes else decode_envelope(loads(request), where)
            result = await ainvoke(Invocation(key, name, args, kwargs, attachments, deadline,
                                              context=provider_context))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
            failure = exc
        if failure is not None:
            code, message, trailers = _failure(failure, provider_context.trailing)
            await context.abort(code, message, trailing_metadata=tuple(trailers))
        return result, provider_context.trailing

    if spec.stream == "client":
        async def answer(requests: Any, context: grpc.aio.ServicerContext) -> bytes:
            value, trailing = await open_(requests, context)
            if trailing:
                context.set_trailing_metadata(tuple(trailing))
            return dumps(value)

        return grpc.stream_unary_rpc_method_handler(answer)

    async def produce(request: Any, context: grpc.aio.ServicerContext) -> Any:
        values, trailing = await open_(request, context)
        failure: BaseException | None = None
        try:
            async for value in values:
                yield dumps(value)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - the stream ends with the error
            failure = exc
        if failure is not None:
            code, message, trailers = _failure(failure, trailing)
            await context.abort(code, message, trailing_metadata=tuple(trailers))
        if trailing:
            context.set_trailing_metadata(tuple(trailing))

    make = grpc.stream_stream_rpc_method_handler if consumes else grpc.unary_stream_rpc_method_handler
    return make(produce)


def _async_rpc_handler(exported: ExportedService, spec: MethodSpec) -> grpc.RpcMethodHandler:
    if spec.stream:
        return _async_stream_handler(exported, spec)
    behavior = _async_behavior(exported, spec)
    if spec.is_protobuf:
        return grpc.unary_unary_rpc_method_handler(
            behavior, response_serializer=spec.response_type.SerializeToString)  # type: ignore[union-attr]
    return grpc.unary_unary_rpc_method_handler(behavior)


def _async_unimplemented(message: str) -> grpc.RpcMethodHandler:
    async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await _refuse(context, grpc.StatusCode.UNIMPLEMENTED, "MethodNotFoundError", message)

    return grpc.unary_unary_rpc_method_handler(behavior)


class AsyncGrpcServer(GrpcServer):
    """``GrpcServer``'s dispatch tables served by a ``grpc.aio`` server (start/stop/wait awaited)."""

    rpc_handler = staticmethod(_async_rpc_handler)

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, max_message_size: int = 4 * 1024 * 1024,
                 credentials: grpc.ServerCredentials | None = None) -> None:
        super().__init__(host, port, max_workers=1, max_message_size=max_message_size, credentials=credentials)
        self._dispatcher.unimplemented = _async_unimplemented
        self._aio: grpc.aio.Server | None = None

    async def start(self) -> int:  # type: ignore[override]
        server = grpc.aio.server(handlers=[self._dispatcher], options=self._options)
        try:
            address = f"{self.host}:{self.requested_port}"
            self.port = (server.add_insecure_port(address) if self.credentials is None
                         else server.add_secure_port(address, self.credentials))
        except RuntimeError as exc:
            await server.stop(None)
            raise OSError(f"cannot bind {self.host}:{self.requested_port}: {exc}") from exc
        await server.start()
        self._aio = server
        return self.port

    async def stop(self, grace: float | None) -> None:  # type: ignore[override]
        if self._aio is not None:
            await self._aio.stop(grace)

    async def wait(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        if self._aio is None:
            return True
        return await self._aio.wait_for_termination(timeout)


class AsyncServer:
    """An asyncio gRPC server hosting govrpc services, registered in a registry.

    Arguments as ``govrpc.Server`` (no ``max_workers``: calls are tasks; plain-function
    methods use asyncio's default thread pool). Every verb is awaited. ``credentials`` /
    ``tls`` serve TLS only on the grpc.aio port (published as ``tls=true``) and ``token``
    puts the same ``TokenAuthFilter`` first in the chain, as on ``Server``.
    """

    def __init__(self, registry: str | Registry | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 weight: int = 100, tags: Mapping[str, str] | None = None, application: str = "",
                 warmup: int = 600, serializer: str = "msgpack", max_message_size: int = 4 * 1024 * 1024,
                 filters: Iterable[Filter | str] = (), advertise: str | None = None, credentials: Any = None,
                 tls: TLS | None = None, token: str | Iterable[str] | None = None) -> None:
        # the sync server checks the arguments, builds the credentials, the token filter and the
        # provider URLs (tls=true included); it never serves
        self._core = Server(registry, host=host, port=port, weight=weight, tags=tags, application=application,
                            warmup=warmup, serializer=serializer, max_message_size=max_message_size,
                            filters=filters, advertise=advertise, credentials=credentials, tls=tls, token=token)
        self._grpc = AsyncGrpcServer(host, port, max_message_size=max_message_size,
                                     credentials=self._core._grpc.credentials)
        self._core._grpc = self._grpc  # its provider URLs read this server's port and hosted services
        self._registry_address = registry
        self.registry: Registry | None = None
        self._services: dict[ServiceKey, tuple[Any, ServiceSpec]] = {}
        self.urls: list[URL] = []
        self._state = ServerState.NEW

    @property
    def port(self) -> int:
        return self._grpc.port

    @property
    def state(self) -> ServerState:
        return self._state

    async def add(self, instance: Any) -> AsyncServer:
        """Host ``instance`` (``async def`` and plain methods); registered on start, or at once after it."""
        spec = describe(instance, allow_async=True)
        AsyncProviderInvoker.check(instance, spec)
        if self._state in (ServerState.STOPPING, ServerState.STOPPED):
            raise ConfigurationError(f"cannot add service {spec.key}: the server is {self._state}")
        if spec.key in self._services:
            other = type(self._services[spec.key][0]).__qualname__
            raise ConfigurationError(
                f"service {spec.key} is already hosted by this server (class {other}); "
                f"give {type(instance).__qualname__} another name, version or group")
        self._services[spec.key] = (instance, spec)
        if self._state == ServerState.STARTED:
            await self._export(instance, spec)
        return self

    async def _export(self, instance: Any, spec: ServiceSpec) -> None:
        url = self._core._provider_url(spec)
        invoker = build_async_filter_chain(self._core.filters, AsyncProviderInvoker(instance, spec, url), url)
        self._grpc.export(ExportedService(spec.key, spec.methods, invoker, self._core._serializer))
        assert self.registry is not None
        await asyncio.to_thread(self.registry.register, url)  # a ZooKeeper write must not stall the loop
        self.urls.append(url)

    async def start(self) -> AsyncServer:
        """Bind, serve, then register every service added so far; a failed start leaves nothing behind."""
        if self._state != ServerState.NEW:
            raise ConfigurationError(f"server already {self._state}")
        self.registry = await asyncio.to_thread(acquire_registry, self._registry_address, provider=True)
        try:
            await self._grpc.start()
        except BaseException:
            release_registry(self.registry)
            self._state = ServerState.STOPPED
            raise
        self._state = ServerState.STARTED
        try:
            for instance, spec in list(self._services.values()):
                await self._export(instance, spec)
        except BaseException:
            log.warning("start of %s:%d failed: deregistering and stopping", self._core.host, self.port)
            await self.stop(grace=0)
            raise
        return self

    async def stop(self, grace: float = 5.0) -> None:
        """Deregister, let consumers notice, drain in-flight calls for up to ``grace`` s, stop."""
        if self._state != ServerState.STARTED:
            self._state = ServerState.STOPPED
            return
        self._state = ServerState.STOPPING
        registry = self.registry
        assert registry is not None
        for url in self.urls:
            try:
                await asyncio.to_thread(registry.unregister, url)
            except Exception:  # noqa: BLE001 - stopping must go on
                log.exception("cannot deregister %s", url)
        if grace:
            await asyncio.sleep(min(max(registry.propagation_delay, SETTLE_SECONDS), grace))
        await self._grpc.stop(grace)
        release_registry(registry)
        self._state = ServerState.STOPPED

    def rotate_token(self, tokens: str | Iterable[str]) -> None:
        """Accept ``tokens`` from now on (see ``govrpc.Server.rotate_token``)."""
        self._core.rotate_token(tokens)

    async def wait(self, timeout: float | None = None) -> bool:
        """Until the server stops (or ``timeout`` passes); True if it stopped."""
        return await self._grpc.wait(timeout)

    async def __aenter__(self) -> AsyncServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
