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
from govrpc.invocation import Filter, Invocation, Invoker, build_async_filter_chain
from govrpc.registry.base import Registry, acquire_registry, release_registry
from govrpc.rpc.server import ERROR_KEY, ExportedService, GrpcServer, _failure
from govrpc.rpc.wire import CallContext, attachments_of, decode_envelope, truncate
from govrpc.security import TLS
from govrpc.server import Server, ServerState, _provider_options
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
    key, name = exported.key, spec.name
    where = f"{key}.{name}"
    loads, dumps = exported.serializer.loads, exported.serializer.dumps
    protobuf = spec.is_protobuf
    from_string = spec.request_type.FromString if protobuf else None  # type: ignore[union-attr]
    monotonic = time.monotonic

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
        metadata = context.invocation_metadata() or ()
        attachments = attachments_of(metadata)
        provider_context = CallContext(context, metadata, spec)
        deadline = monotonic() + remaining if remaining is not None else float("inf")
        limit = asyncio.timeout(remaining)  # the deadline reaches the provider: its task is cancelled
        failure: BaseException | None = None
        try:
            async with limit:
                # read per call: configurators rebind the chain at run time (a plain attribute swap)
                value = await exported.invoker.ainvoke(  # type: ignore[attr-defined]
                    Invocation(key, name, args, kwargs, attachments, deadline, context=provider_context))
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
    key, name = exported.key, spec.name
    where = f"{key}.{name}"
    loads, dumps = exported.serializer.loads, exported.serializer.dumps
    consumes = spec.stream in ("client", "bidi")

    async def decoded(requests: Any) -> Any:
        async for message in requests:
            yield loads(message)

    async def open_(request: Any, context: grpc.aio.ServicerContext) -> tuple[Any, list[Any]]:
        metadata = context.invocation_metadata() or ()
        attachments = attachments_of(metadata)
        provider_context = CallContext(context, metadata, spec)
        remaining = context.time_remaining()
        deadline = time.monotonic() + remaining if remaining is not None else float("inf")
        failure: BaseException | None = None
        try:
            args, kwargs = ((decoded(request),), {}) if consumes else decode_envelope(loads(request), where)
            result = await exported.invoker.ainvoke(  # type: ignore[attr-defined]
                Invocation(key, name, args, kwargs, attachments, deadline, context=provider_context))
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
    """``GrpcServer``'s dispatch tables served by a ``grpc.aio`` server (start/stop/wait awaited),
    with grpc.health.v1 served by grpcio-health-checking's asyncio servicer."""

    rpc_handler = staticmethod(_async_rpc_handler)

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, max_message_size: int = 4 * 1024 * 1024,
                 credentials: grpc.ServerCredentials | None = None, health: bool | None = None) -> None:
        super().__init__(host, port, max_workers=1, max_message_size=max_message_size, credentials=credentials,
                         health=health)
        if self.health is not None:
            from grpc_health.v1 import health as grpc_health

            self.health = grpc_health.aio.HealthServicer()
        self._dispatcher.unimplemented = _async_unimplemented
        self._aio: grpc.aio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[asyncio.Future[Any]] = set()

    async def start(self) -> int:  # type: ignore[override]
        server = grpc.aio.server(handlers=[self._dispatcher], options=self._options)
        if self.health is not None:
            from grpc_health.v1 import health_pb2_grpc

            health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        try:
            address = f"{self.host}:{self.requested_port}"
            self.port = (server.add_insecure_port(address) if self.credentials is None
                         else server.add_secure_port(address, self.credentials))
        except RuntimeError as exc:
            await server.stop(None)
            raise OSError(f"cannot bind {self.host}:{self.requested_port}: {exc}") from exc
        await server.start()
        self._aio, self._loop = server, asyncio.get_running_loop()
        return self.port

    def set_serving(self, service: str, serving: bool) -> None:
        """As ``GrpcServer.set_serving``, from the loop or any thread (the servicer lives on the loop)."""
        if self.health is None:
            return
        from grpc_health.v1 import health_pb2

        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # not serving yet: start() begins SERVING
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            task = loop.create_task(self.health.set(service, status))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        else:
            asyncio.run_coroutine_threadsafe(self.health.set(service, status), loop)

    def enter_graceful_shutdown(self) -> None:
        raise TypeError("AsyncGrpcServer's health is asyncio's: await drain()")

    async def drain(self) -> None:
        """Every service, and the server, NOT_SERVING from now on (a stop has begun)."""
        if self.health is not None:
            await self.health.enter_graceful_shutdown()

    async def stop(self, grace: float | None) -> None:  # type: ignore[override]
        if self._aio is not None:
            await self._aio.stop(grace)

    async def wait(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        if self._aio is None:
            return True
        return await self._aio.wait_for_termination(timeout)


class _AsyncCore(Server):
    """``Server``'s hosting, shared whole: argument checks, provider URLs, the configurator watch
    and rebinding of each service's chain (``_export``, ``_rebind``, ``_swap``), metrics, health
    summaries and ORCA; with asyncio chain ends and links. It never serves: ``AsyncServer`` runs
    its pieces, the blocking ones (registry writes) on a thread. A rebind happens on the registry's
    delivery thread and is a plain attribute swap, read by each call on the loop."""

    in_process = False

    def _provider(self, instance: Any, spec: ServiceSpec, url: URL) -> Invoker:
        return AsyncProviderInvoker(instance, spec, url)

    def _chain(self, target: Invoker, url: URL) -> Invoker:
        return build_async_filter_chain(self.filters, target, url)

    def _serve(self) -> None:  # the grpc.aio server serves from its start, on the loop
        pass


class AsyncServer:
    """An asyncio gRPC server hosting govrpc services, registered in a registry.

    Arguments as ``govrpc.Server`` (no ``max_workers``: calls are tasks; plain-function
    methods use asyncio's default thread pool; no ``reflection`` or keepalive settings).
    Every verb is awaited. ``credentials`` / ``tls`` serve TLS only on the grpc.aio port
    (published as ``tls=true``) and ``token`` puts the same ``TokenAuthFilter`` first in the
    chain, as on ``Server``. Provider options (``add(service, tps=...)``), registry
    configurators rebinding the chain, metrics (``metrics``, ``metrics_port``,
    ``metrics_registry``), health summaries (``report_interval``), ``orca`` and grpc.health.v1
    (NOT_SERVING from the start of a stop) behave as on ``Server``: the same code does them.
    """

    def __init__(self, registry: str | Registry | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 weight: int = 100, tags: Mapping[str, str] | None = None, application: str = "",
                 warmup: int = 600, serializer: str = "msgpack", max_message_size: int = 4 * 1024 * 1024,
                 filters: Iterable[Filter | str] = (), advertise: str | None = None, credentials: Any = None,
                 tls: TLS | None = None, token: str | Iterable[str] | None = None,
                 metrics_port: int | None = None, metrics_registry: Any = None, metrics: bool = False,
                 health: bool | None = None, report_interval: float | None = None,
                 orca: bool | Callable[[], Mapping[str, float]] = False) -> None:
        # the sync server's hosting checks the arguments, builds the credentials, the token filter,
        # the metrics recorder and the provider URLs (tls=true included); it never serves
        self._core = _AsyncCore(registry, host=host, port=port, weight=weight, tags=tags, application=application,
                                warmup=warmup, serializer=serializer, max_message_size=max_message_size,
                                filters=filters, advertise=advertise, credentials=credentials, tls=tls,
                                token=token, metrics_port=metrics_port, metrics_registry=metrics_registry,
                                metrics=metrics, health=health, report_interval=report_interval, orca=orca)
        self._grpc = AsyncGrpcServer(host, port, max_message_size=max_message_size,
                                     credentials=self._core._grpc.credentials, health=health)
        self._core._grpc = self._grpc  # its provider URLs read this server's port and hosted services

    @property
    def port(self) -> int:
        return self._grpc.port

    @property
    def state(self) -> ServerState:
        return self._core.state

    @property
    def registry(self) -> Registry | None:
        return self._core.registry

    @property
    def urls(self) -> list[URL]:
        return self._core.urls

    @property
    def invokers(self) -> dict[ServiceKey, Invoker]:
        """Service key -> the provider chain calls run through now (awaited: ``ainvoke``)."""
        return self._core.invokers

    @property
    def metrics_port(self) -> int | None:
        """The port metrics are served on (after start), or None."""
        return self._core.metrics_port

    def configured_url(self, key: ServiceKey) -> URL:
        """The URL the provider filters of ``key`` are bound to (see ``govrpc.Server.configured_url``)."""
        return self._core.configured_url(key)

    async def add(self, instance: Any, **options: Any) -> AsyncServer:
        """Host ``instance`` (``async def`` and plain methods); registered on start, or at once after it.

        ``options`` are the provider settings of ``govrpc.Server.add`` (``tps=200``,
        ``concurrency=8``, ``methods={"find": {"tps": 50}}``...), checked the same way: an
        unknown option or a bad value raises ``ConfigurationError`` naming it, and nothing is hosted.
        """
        spec = describe(instance, allow_async=True)
        AsyncProviderInvoker.check(instance, spec)
        settings = _provider_options(options)
        if self._core.state == ServerState.STARTED:  # served and registered at once: registry writes
            await asyncio.to_thread(self._core._host, instance, spec, settings)
        else:
            self._core._host(instance, spec, settings)
        return self

    async def start(self) -> AsyncServer:
        """Bind, serve, then register every service added so far; a failed start leaves nothing behind."""
        core = self._core
        if core.state != ServerState.NEW:
            raise ConfigurationError(f"server already {core.state}")
        registry = await asyncio.to_thread(acquire_registry, core._registry_address, provider=True)
        try:
            await self._grpc.start()
        except BaseException:
            release_registry(registry)
            core._state = ServerState.STOPPED
            raise
        core.registry = registry

        def begin() -> list[tuple[Any, ServiceSpec]]:
            with core._lock:
                return core._begin()

        try:
            services = await asyncio.to_thread(begin)
        except BaseException:
            await self._grpc.stop(0)
            release_registry(registry)
            core._state = ServerState.STOPPED
            raise
        try:
            await asyncio.to_thread(core._publish, services)
        except BaseException:
            log.warning("start of %s:%d failed: deregistering and stopping", core.host, self.port)
            await self.stop(grace=0)
            raise
        return self

    async def stop(self, grace: float = 5.0) -> None:
        """Deregister, let consumers notice, drain in-flight calls for up to ``grace`` s, stop."""
        core = self._core
        with core._lock:
            if core._state != ServerState.STARTED:
                core._state = ServerState.STOPPED
                return
            core._state = ServerState.STOPPING
        await self._grpc.drain()  # health checks say NOT_SERVING before anything else changes
        delay = await asyncio.to_thread(core._withdraw)
        if grace:
            await asyncio.sleep(min(delay, grace))
        await self._grpc.stop(grace)
        await asyncio.to_thread(core._release)

    async def set_serving(self, serving: bool, service: str = "") -> None:
        """The provider's own verdict on its health (see ``govrpc.Server.set_serving``)."""
        await asyncio.to_thread(self._core.set_serving, serving, service)

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
