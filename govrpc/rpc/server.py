"""The provider's end of the wire: one grpc server dispatching ``/service/method``.

A request arrives; a call whose deadline passed while it waited in the queue is
refused unrun (DEADLINE_EXCEEDED). The request is decoded (protobuf or the
server's serializer; a malformed one gets INVALID_ARGUMENT and runs nothing),
becomes an ``Invocation`` with a ``ProviderContext`` (peer, caller's
application, ``-bin`` metadata, method spec, trailers to send), runs through the
provider filter chain to the user's method, and its value or exception is
encoded back. Business exceptions (``BaseException`` included: the caller never
waits for a provider that died) travel as status UNKNOWN with the exception's
``module.QualName`` and args in trailing metadata (``wire.py``); govrpc errors
raised by provider filters travel with their class name, so the consumer
rebuilds the same error. A single generic handler does the dispatch with one
dict lookup; it answers unknown services and methods with UNIMPLEMENTED naming
what was asked for.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterable

import grpc

from govrpc.exceptions import ConfigurationError, GovRpcError, RateLimitedError, SerializationError
from govrpc.invocation import Invocation, Invoker
from govrpc.rpc.executor import WorkerPool
from govrpc.rpc.serialization import Serializer
from govrpc.rpc.streams import stream_handler
from govrpc.rpc.wire import (
    ARGS_KEY,
    ERROR_KEY,
    EXCEPTION_KEY,
    KEY_KEY,
    PUSHBACK_KEY,
    CallContext,
    attachments_of,
    decode_envelope,
    encode_exception,
    truncate,
)
from govrpc.service import MethodSpec
from govrpc.url import ServiceKey

__all__ = ["ARGS_KEY", "ERROR_KEY", "EXCEPTION_KEY", "KEY_KEY", "STOP_BOUND", "ExportedService", "GrpcServer",
           "Keepalive", "PING_INTERVAL_KEY"]

log = logging.getLogger("govrpc.rpc.server")

Trailers = Iterable[tuple[str, "str | bytes"]]


class ExportedService:
    """A service as the transport sees it: its key, methods and the invoker behind them."""

    def __init__(self, key: ServiceKey, methods: Iterable[MethodSpec], invoker: Invoker,
                 serializer: Serializer, direct: dict[str, Callable[..., Any]] | None = None,
                 handlers: dict[str, grpc.RpcMethodHandler] | None = None, scope: Any = None) -> None:
        self.key = key
        self.methods = {m.name: m for m in methods}
        self.invoker = invoker
        self.serializer = serializer
        # the user's bound methods, given when no provider filter reads the Invocation: then a
        # call skips building one (and its ProviderContext), run by the bound filters' nested
        # ``scope`` when there are any (``Filter.scope``), else as it is
        self.direct = direct or {}
        self.scope = scope
        self.handlers = handlers or {}  # ready-made handlers by method (a generated servicer's)


def _status(code_name: str) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, code_name, grpc.StatusCode.UNKNOWN)


class _Status(grpc.Status):
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: tuple[Any, ...]) -> None:
        self.code, self.details, self.trailing_metadata = code, details, trailing_metadata


def _rate_limited_status(exc: RateLimitedError, trailing: Trailers) -> grpc.Status:
    """RESOURCE_EXHAUSTED with the signals any gRPC client reads: ``google.rpc.RetryInfo`` and
    ``QuotaFailure`` in the status details (grpcio-status), and ``grpc-retry-pushback-ms``
    (gRFC A6; -1 when a retry is pointless)."""
    from google.protobuf import any_pb2, duration_pb2
    from google.rpc import code_pb2, error_details_pb2, status_pb2
    from grpc_status import rpc_status

    message = truncate(exc.message or str(exc))
    details = []
    if exc.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(exc.retry_after * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    details.append(error_details_pb2.QuotaFailure(violations=[error_details_pb2.QuotaFailure.Violation(
        subject=f"{exc.reason or 'flow'}:{exc.limit}", description=message)]))
    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=message)
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    pushback = str(int(exc.retry_after * 1000)) if exc.retry_after is not None else "-1"
    converted = rpc_status.to_status(status)
    return _Status(converted.code, converted.details, (*converted.trailing_metadata, (ERROR_KEY, type(exc).__name__),
                                                       (PUSHBACK_KEY, pushback), *trailing))


def _failure(exc: BaseException, trailing: Trailers = ()) -> tuple[grpc.StatusCode, str, Trailers]:
    """The status code, message and trailing metadata that carry ``exc`` to the consumer."""
    if isinstance(exc, RateLimitedError):
        status = _rate_limited_status(exc, trailing)
        return status.code, status.details, status.trailing_metadata
    if isinstance(exc, GovRpcError):
        return _status(exc.code), truncate(exc.message or str(exc)), ((ERROR_KEY, type(exc).__name__), *trailing)
    if not isinstance(exc, Exception):  # SystemExit, KeyboardInterrupt...: the caller must not wait for them
        log.warning("provider raised %s (answered as a RemoteError): %s", type(exc).__name__, exc)
    remote_type, message, args = encode_exception(exc)
    pairs: list[tuple[str, str | bytes]] = [(EXCEPTION_KEY, remote_type)]
    if args is not None:
        pairs.append((ARGS_KEY, args))
    return grpc.StatusCode.UNKNOWN, message, (*pairs, *trailing)


def _fail(context: grpc.ServicerContext, exc: BaseException, trailing: Trailers = ()) -> None:
    """Abort the call with ``exc`` encoded for the consumer (raises); ``trailing``: a filter's own.
    (The asyncio server awaits the same ``_failure``.)"""
    code, message, trailers = _failure(exc, trailing)
    context.set_trailing_metadata(trailers)
    context.abort(code, message)


def _refuse(context: grpc.ServicerContext, code: grpc.StatusCode, error: str, message: str) -> None:
    context.set_trailing_metadata(((ERROR_KEY, error),))
    context.abort(code, truncate(message))


def _unary_behavior(exported: ExportedService, spec: MethodSpec) -> Callable[[Any, grpc.ServicerContext], Any]:
    """The function grpc calls for one method; closes over everything it needs."""
    key, name = exported.key, spec.name
    where = f"{key}.{name}"
    loads, dumps = exported.serializer.loads, exported.serializer.dumps
    protobuf = spec.is_protobuf
    from_string = spec.request_type.FromString if protobuf else None  # type: ignore[union-attr]
    monotonic = time.monotonic
    rerouted: list[_KeyedHandler | None] = [None]  # see _KeyedHandler.reroute

    def behavior(request: Any, context: grpc.ServicerContext) -> Any:
        keyed = rerouted[0]
        if keyed is not None:  # registered with grpc at start, joined by more versions since
            handler = keyed.pick_by(context.invocation_metadata())
            if handler.unary_unary is not behavior:
                return _hand_over(handler, request, context)
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:  # it waited in the queue past its deadline: not run
            _refuse(context, grpc.StatusCode.DEADLINE_EXCEEDED, "CallTimeoutError",
                    f"{where}: the deadline passed while the call waited in the server's queue")
        try:
            decoded = from_string(request) if from_string is not None else loads(request)
        except Exception as exc:  # noqa: BLE001 - any decoding failure is the caller's
            _refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "SerializationError",
                    f"{where}: cannot decode the request: {exc}")
        args: tuple[Any, ...]
        kwargs: dict[str, Any]
        if from_string is not None:
            args, kwargs = (decoded,), {}
        elif type(decoded) is list and len(decoded) == 2 and type(decoded[0]) is list and decoded[1] == {}:
            args, kwargs = tuple(decoded[0]), {}  # the common call: positional arguments only
        else:
            try:
                args, kwargs = decode_envelope(decoded, where)
            except SerializationError as exc:
                _refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "SerializationError", exc.message)
        trailing: list[tuple[str, str | bytes]] = []
        direct = exported.direct.get(name)  # read per call: the server rebinds its chain at run time
        if direct is not None:
            scope = exported.scope
            try:
                value = direct(*args, **kwargs) if scope is None else scope(context, name, direct, args, kwargs)
            except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller at once
                _fail(context, exc)
        else:
            metadata = context.invocation_metadata() or ()
            attachments = attachments_of(metadata)
            provider_context = CallContext(context, metadata, spec)
            trailing = provider_context.trailing
            deadline = monotonic() + remaining if remaining is not None else float("inf")
            try:
                value = exported.invoker.invoke(Invocation(key, name, args, kwargs, attachments, deadline,
                                                  context=provider_context))
            except BaseException as exc:  # noqa: BLE001
                _fail(context, exc, trailing)
        try:
            encoded = value if protobuf else dumps(value)
        except Exception as exc:  # noqa: BLE001
            context.set_trailing_metadata(((ERROR_KEY, "SerializationError"), *trailing))
            context.abort(grpc.StatusCode.INTERNAL,
                          truncate(f"{where}: cannot encode the result {type(value).__name__}: {exc}"))
        if trailing:
            context.set_trailing_metadata(tuple(trailing))
        return encoded

    behavior.rerouted = rerouted  # type: ignore[attr-defined]
    return behavior


def _hand_over(handler: grpc.RpcMethodHandler, request: Any, context: grpc.ServicerContext) -> Any:
    """Run a call that grpc gave the handler registered first on the version its key chose."""
    if handler.unary_unary is None:
        _refuse(context, grpc.StatusCode.UNIMPLEMENTED, "MethodNotFoundError",
                "this version serves the method as a stream; the server registered it as unary at start")
    value = handler.unary_unary(request, context)
    serialize = handler.response_serializer
    return serialize(value) if serialize is not None else value


def _rpc_handler(exported: ExportedService, spec: MethodSpec) -> grpc.RpcMethodHandler:
    if spec.stream:
        return stream_handler(exported, spec, _fail)
    behavior = _unary_behavior(exported, spec)
    if spec.is_protobuf:
        # the request is parsed by the behaviour, so garbage gets INVALID_ARGUMENT (grpc's own: INTERNAL)
        return grpc.unary_unary_rpc_method_handler(
            behavior, response_serializer=spec.response_type.SerializeToString)  # type: ignore[union-attr]
    return grpc.unary_unary_rpc_method_handler(behavior)


def _unimplemented(message: str) -> grpc.RpcMethodHandler:
    def behavior(request: Any, context: grpc.ServicerContext) -> Any:
        context.set_trailing_metadata(((ERROR_KEY, "MethodNotFoundError"),))
        context.abort(grpc.StatusCode.UNIMPLEMENTED, message)

    return grpc.unary_unary_rpc_method_handler(behavior)


class _KeyedHandler:
    """Chooses among several versions/groups of one service by the ``govrpc-key`` metadata.

    A call without the key goes to the first one exported: its provider URL was
    published before a second version made the key necessary.
    """

    def __init__(self, path: str, unimplemented: Callable[[str], grpc.RpcMethodHandler] = _unimplemented) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}
        self.path = path
        self.unimplemented = unimplemented

    def reroute(self, registered: grpc.RpcMethodHandler) -> None:
        """``registered`` was given to grpc at start; from now on its behaviour hands each call
        to the version the call's key names (grpc keeps calling it for this path)."""
        registered.unary_unary.rerouted[0] = self

    def pick(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        return self.pick_by(details.invocation_metadata)

    def pick_by(self, metadata: Iterable[tuple[str, Any]]) -> grpc.RpcMethodHandler:
        wanted = None
        for key, value in metadata:
            if key == KEY_KEY:
                wanted = value
                break
        if wanted is None:
            return next(iter(self.handlers.values()))
        handler = self.handlers.get(wanted)
        if handler is None:
            return self.unimplemented(
                f"{self.path}: this server hosts {', '.join(sorted(self.handlers))}, not {wanted}")
        return handler


class _Dispatcher(grpc.GenericRpcHandler):
    """Finds the handler of a path grpc did not find among the registered ones: paths added
    after start, those served in several versions (``_KeyedHandler``), and unknown ones."""

    def __init__(self, unimplemented: Callable[[str], grpc.RpcMethodHandler] = _unimplemented) -> None:
        self.registered: set[str] = set()  # paths grpc was given at start (``registrable``)
        self.paths: dict[str, Any] = {}
        self.services: dict[str, set[str]] = {}
        self.unimplemented = unimplemented  # the asyncio server's answers are coroutines

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        path = handler_call_details.method
        handler = self.paths.get(path)
        if handler is None:
            return self._missing(path)
        if isinstance(handler, _KeyedHandler):
            return handler.pick(handler_call_details)
        return handler

    def registrable(self) -> dict[str, dict[str, grpc.RpcMethodHandler]]:
        """By service, the handlers grpc can be given as registered methods at start: grpc then
        finds them itself (no generic handler is asked, the path is not decoded per call). One
        version's unary methods with govrpc's own codec (their behaviour can hand a call over
        should a second version join later); the rest stay with this dispatcher."""
        table: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
        for path, handler in self.paths.items():
            if (not isinstance(handler, _KeyedHandler) and handler.unary_unary is not None
                    and hasattr(handler.unary_unary, "rerouted") and handler.response_serializer is None):
                service, _, method = path[1:].partition("/")
                table.setdefault(service, {})[method] = handler
        return table

    def _missing(self, path: str) -> grpc.RpcMethodHandler:
        service, _, method = path.lstrip("/").partition("/")
        if service in self.services:
            known = ", ".join(sorted(self.services[service]))
            return self.unimplemented(f"service {service} has no method {method!r}; its methods: {known}")
        hosted = ", ".join(sorted(self.services)) or "none"
        return self.unimplemented(f"no service {service!r} on this server; it hosts: {hosted}")


_STANDARD_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection")


_health_missing_told = False


def _health_servicer(required: bool) -> Any:
    """The servicer, or None when grpcio-health-checking is missing and ``required`` is False (said once)."""
    global _health_missing_told
    try:
        from grpc_health.v1 import health
    except ImportError:
        if not required:
            if not _health_missing_told:
                _health_missing_told = True
                log.warning("grpcio-health-checking is not installed: servers do not serve grpc.health.v1 "
                            "(pip install 'govrpc[monitor]')")
            return None
        raise ConfigurationError("the grpc.health.v1 service needs grpcio-health-checking: "
                                 "pip install 'govrpc[monitor]', or Server(health=False)") from None
    # Watch streams are answered from a callback, not by parking one of the server's workers each
    return health.HealthServicer(experimental_non_blocking=True)


def _reflection_servicer() -> Any:
    try:
        from grpc_reflection.v1alpha import reflection
    except ImportError:
        raise ConfigurationError("server reflection needs grpcio-reflection: pip install 'govrpc[monitor]'") from None
    return reflection.ReflectionServicer(_STANDARD_SERVICES)


PING_INTERVAL_KEY = "ping_interval"
"""Provider URL key: the shortest interval (s) between keepalive pings the server accepts, idle or not."""


class Keepalive:
    """HTTP/2 keepalive of one side: ping every ``time`` s, a peer silent ``timeout`` s more is gone.

    Defaults: a ping every 10 s, 2 s to answer, so a frozen (SIGSTOP) or cut-off peer is
    noticed within about 12 s; pings also while no call is in flight. Both gRPC keys
    are set: ``grpc.keepalive_timeout_ms`` alone does not notice a stopped peer (the
    HTTP/2 ping timeout, ``grpc.http2.ping_timeout_ms``, stays at 60 s). A server accepts
    pings as often as every ``min_ping_interval`` s (default 1 s); a client pinging more
    often is told to go away (gRPC's rule). ``time=0`` switches keepalive off. A govrpc
    server publishes that interval in its provider URLs (``PING_INTERVAL_KEY``); a consumer pings
    only providers that published one (``client_options``).
    """

    __slots__ = ("time", "timeout", "min_ping_interval")

    def __init__(self, time: float = 10.0, timeout: float = 2.0, min_ping_interval: float = 1.0) -> None:
        for name, value, low in (("keepalive_time", time, 0.0), ("keepalive_timeout", timeout, 0.001),
                                 ("keepalive_min_ping_interval", min_ping_interval, 0.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= 86400:
                raise ConfigurationError(f"{name} must be a number of seconds from {low:g} to 86400, not {value!r}")
        if time and time < min_ping_interval:
            raise ConfigurationError(f"keepalive_time ({time} s) must be at least the servers' "
                                     f"keepalive_min_ping_interval ({min_ping_interval} s)")
        self.time = float(time)
        self.timeout = float(timeout)
        self.min_ping_interval = float(min_ping_interval)

    def _pings(self, every: float) -> list[tuple[str, int]]:
        if not every:
            return [("grpc.keepalive_time_ms", 2**31 - 1)]
        timeout_ms = max(1, int(self.timeout * 1000))
        return [("grpc.keepalive_time_ms", max(1, int(every * 1000))),
                ("grpc.keepalive_timeout_ms", timeout_ms),
                ("grpc.http2.ping_timeout_ms", timeout_ms),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.max_pings_without_data", 0)]

    def client_options(self, accepted: float | None = 0.0) -> list[tuple[str, int]]:
        """A channel's pings to a server that accepts them every ``accepted`` s (what a govrpc
        server publishes as ``ping_interval``): every ``time`` s, never more often than accepted.
        ``accepted=None``, a server that never said (a plain grpcio server, whose default policy
        sends GOAWAY "too_many_pings" to a client pinging an idle connection more often than
        every 5 minutes): no pings, gRPC's own default."""
        if accepted is None:
            return self._pings(0.0)
        return self._pings(max(self.time, accepted) if self.time else 0.0)

    def server_options(self) -> list[tuple[str, int]]:
        interval_ms = int(self.min_ping_interval * 1000)
        return [*self._pings(self.time),
                ("grpc.http2.min_recv_ping_interval_without_data_ms", interval_ms),
                ("grpc.http2.min_ping_interval_without_data_ms", interval_ms),
                ("grpc.http2.max_ping_strikes", 0 if not interval_ms else 2)]

    def __repr__(self) -> str:
        return f"Keepalive(time={self.time}, timeout={self.timeout})"


STOP_BOUND = 5.0  # seconds a stop may last past its grace: grpc's own shutdown once it has cancelled calls


class GrpcServer:
    """A grpc server hosting exported services; knows nothing of registries or routing.

    Calls run on a ``WorkerPool``, not a ThreadPoolExecutor: once ``stop`` has given
    up on a call still running, that call does not hold the process at exit.
    (``govrpc.aio.server.AsyncGrpcServer`` is its asyncio twin: other handlers, same tables.)
    """

    rpc_handler = staticmethod(_rpc_handler)

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, max_workers: int = 16,
                 max_message_size: int = 4 * 1024 * 1024, options: Iterable[tuple[str, Any]] = (),
                 keepalive: Keepalive | None = None, health: bool | None = None, reflection: bool = False,
                 credentials: grpc.ServerCredentials | None = None) -> None:
        self.host = host
        self.credentials = credentials  # None: plaintext (grpc's insecure port)
        self.requested_port = port
        self.max_workers = max_workers
        self.keepalive = keepalive if keepalive is not None else Keepalive()
        self._options = [
            ("grpc.max_receive_message_length", max_message_size),
            ("grpc.max_send_message_length", max_message_size),
            ("grpc.so_reuseport", 0),
            *self.keepalive.server_options(),
            *options,
        ]
        # grpc.health.v1 (grpcio-health-checking): per service and overall ("")
        self.health = _health_servicer(health is True) if health is not False else None
        self._reflection: Any = _reflection_servicer() if reflection else None
        self._dispatcher = _Dispatcher()
        self._exports: list[ExportedService] = []
        self._export_lock = threading.Lock()
        self._server: grpc.Server | None = None
        self._executor: WorkerPool | None = None
        self.port = 0

    def export(self, exported: ExportedService) -> None:
        """Serve ``exported``; allowed before and after ``start`` (the dispatch table is swapped)."""
        with self._export_lock:  # writers one at a time; grpc's threads read without a lock
            self._export(exported)

    def _export(self, exported: ExportedService) -> None:
        self._exports.append(exported)
        dispatcher = self._dispatcher
        services = dict(dispatcher.services)
        services[exported.key.service] = services.get(exported.key.service, set()) | set(exported.methods)
        paths = dict(dispatcher.paths)
        for spec in exported.methods.values():
            path = f"/{exported.key.service}/{spec.name}"
            handler = exported.handlers.get(spec.name) or self.rpc_handler(exported, spec)
            current = paths.get(path)
            if current is None:
                paths[path] = handler
                continue
            if not isinstance(current, _KeyedHandler):
                first = next(e for e in self._exports if e.key.service == exported.key.service)
                keyed = _KeyedHandler(path, dispatcher.unimplemented)
                keyed.handlers[str(first.key)] = current
                if path in dispatcher.registered:  # grpc calls the first version's handler for good
                    keyed.reroute(current)
                current = keyed
            current.handlers[str(exported.key)] = handler
            paths[path] = current
        # readers (grpc's threads) see either the old tables or the new ones, never a half-built one
        dispatcher.services, dispatcher.paths = services, paths
        self.set_serving(exported.key.service, True)
        if self._reflection is not None:  # the servicer keeps a sorted tuple of names: give it the new one
            self._reflection._service_names = tuple(sorted({*services, *_STANDARD_SERVICES}))

    def set_serving(self, service: str, serving: bool) -> None:
        """Report ``service`` ("" for the whole server) SERVING or NOT_SERVING on grpc.health.v1."""
        if self.health is not None:
            from grpc_health.v1 import health_pb2

            status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
            self.health.set(service, status)

    def enter_graceful_shutdown(self) -> None:
        """Every service, and the server, NOT_SERVING from now on (a stop has begun)."""
        if self.health is not None:
            self.health.enter_graceful_shutdown()

    def hosts(self, service: str) -> int:
        """How many versions/groups of ``service`` this server hosts."""
        return sum(1 for e in self._exports if e.key.service == service)

    def start(self) -> int:
        """Bind and start serving; returns the bound port. A failed bind leaves nothing running."""
        self.bind()
        self.serve()
        return self.port

    def bind(self) -> int:
        """Make the grpc server and bind its port (``port`` is known from here), serving nothing
        yet: what is exported before ``serve`` is given to grpc as registered methods."""
        executor = WorkerPool(self.max_workers, "govrpc-server")
        server = grpc.server(executor, options=self._options)
        try:
            address = f"{self.host}:{self.requested_port}"
            self.port = (server.add_insecure_port(address) if self.credentials is None
                         else server.add_secure_port(address, self.credentials))
        except RuntimeError as exc:
            server.stop(None)
            executor.shutdown(wait=False)
            raise OSError(f"cannot bind {self.host}:{self.requested_port}: {exc}") from exc
        self._server, self._executor = server, executor
        return self.port

    def serve(self) -> None:
        """Start serving what is exported (and what is exported later) on the bound port."""
        server = self._server
        assert server is not None, "bind() first"
        # the standard services first: the dispatcher answers every other path (UNIMPLEMENTED included)
        if self.health is not None:
            from grpc_health.v1 import health_pb2_grpc

            health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if self._reflection is not None:
            from grpc_reflection.v1alpha import reflection_pb2_grpc

            reflection_pb2_grpc.add_ServerReflectionServicer_to_server(self._reflection, server)
        with self._export_lock:  # exports made from now on go to the dispatcher
            registrable = self._dispatcher.registrable()
            for service, handlers in registrable.items():
                server.add_registered_method_handlers(service, handlers)
            self._dispatcher.registered = {f"/{service}/{method}" for service, handlers in registrable.items()
                                           for method in handlers}
        server.add_generic_rpc_handlers((self._dispatcher,))
        server.start()

    def stop(self, grace: float | None) -> None:
        """Refuse new calls, let in-flight ones finish for up to ``grace`` seconds, then stop.

        Returns within ``grace`` + ``STOP_BOUND`` seconds: calls still running then are
        cancelled for their consumers, and a provider method that goes on running is left
        behind on its worker thread (it does not keep the process from exiting).
        """
        server, executor = self._server, self._executor
        if server is None or executor is None:
            return
        if not server.stop(grace).wait(timeout=(grace or 0) + STOP_BOUND):
            log.warning("grpc server %s:%d did not stop within %.1f s of its grace", self.host, self.port,
                        STOP_BOUND)
        executor.shutdown(wait=False, cancel_futures=True)

    def wait(self, timeout: float | None = None) -> bool:
        if self._server is None:
            return True
        return self._server.wait_for_termination(timeout)
