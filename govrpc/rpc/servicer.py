"""``Server.add_servicer``: a generated gRPC servicer hosted under governance.

The generated ``add_XServicer_to_server(servicer, server)`` is run against a
recorder that keeps the method handlers it registers. The service is described
from the ``.proto``'s descriptors (the generated module is imported, so its
service is in the default pool): its gRPC service name is the govrpc service,
its message types are published as protobuf methods, and the ``.proto``'s
``idempotency_level`` marks idempotent methods, so govrpc proxies, generated stubs
and any gRPC client call it alike.

Unary methods run through the provider filter chain (trace, limits...) with the
servicer's own method at its end, called with the real ``grpc.ServicerContext``
(``abort``, ``set_code`` and metadata work as in plain grpcio). Streaming methods
are served by the servicer's own handlers, ungoverned.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import grpc

from govrpc.exceptions import ConfigurationError, GovRpcError
from govrpc.invocation import Invocation, Invoker
from govrpc.rpc.server import _fail
from govrpc.rpc.wire import CallContext, attachments_of
from govrpc.service import MethodSpec, ServiceSpec, _proto_idempotent
from govrpc.url import URL, ServiceKey

__all__ = ["ServicerInvoker", "describe_servicer", "servicer_handlers"]


class _Recorder:
    """Stands in for a ``grpc.Server`` while a generated ``add_..._to_server`` runs."""

    def __init__(self) -> None:
        self.service = ""
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}
        self.generic: list[Any] = []

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.service = service
        self.handlers.update(handlers)

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self.generic.extend(handlers)


class _Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def describe_servicer(add_to_server: Callable[[Any, Any], None], servicer: Any, version: str = "",
                      group: str = "") -> tuple[ServiceSpec, dict[str, grpc.RpcMethodHandler]]:
    """The spec and method handlers (by method name) of a generated servicer.

    Raises ``ConfigurationError`` when ``add_to_server`` registers nothing this can read,
    or the service is not in the protobuf descriptor pool."""
    from google.protobuf import descriptor_pool, message_factory

    if not callable(add_to_server):
        raise ConfigurationError(f"add_servicer takes the generated add_..._to_server function, not {add_to_server!r}")
    recorder = _Recorder()
    add_to_server(servicer, recorder)
    names = [recorder.service] if recorder.service else [h.service_name() for h in recorder.generic
                                                          if callable(getattr(h, "service_name", None))]
    if len(names) != 1 or not names[0]:
        raise ConfigurationError(f"{getattr(add_to_server, '__name__', add_to_server)} registered no single "
                                 f"gRPC service (is it a generated add_..._to_server function?)")
    service = names[0]
    try:
        descriptor = descriptor_pool.Default().FindServiceByName(service)
    except KeyError:
        raise ConfigurationError(f"service {service} is not in the protobuf descriptor pool") from None
    handlers = dict(recorder.handlers)
    for generic in recorder.generic:  # older generated code: only a generic handler
        for method in descriptor.methods:
            handler = generic.service(_Details(f"/{service}/{method.name}"))
            if handler is not None:
                handlers.setdefault(method.name, handler)
    methods = []
    for method in descriptor.methods:
        if method.name not in handlers:
            continue
        request = message_factory.GetMessageClass(method.input_type)
        response = message_factory.GetMessageClass(method.output_type)
        methods.append(MethodSpec(method.name, _proto_idempotent(service, method.name), request, response, arity=1))
    if not methods:
        raise ConfigurationError(f"servicer {type(servicer).__qualname__} serves no method of {service}")
    return ServiceSpec(ServiceKey(service, version, group), methods=tuple(methods)), handlers


class _ServicerContext(CallContext):
    __slots__ = ()

    @property
    def servicer_context(self) -> grpc.ServicerContext:
        return self.call


class ServicerInvoker(Invoker):
    """The end of a servicer's provider chain: the generated servicer's own unary behaviour."""

    def __init__(self, url: URL, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.url = url
        self.behaviors = {name: h.unary_unary for name, h in handlers.items() if h.unary_unary is not None}
        self.methods: dict[str, Callable[..., Any]] = {}

    def invoke(self, invocation: Invocation) -> Any:
        context = invocation.context
        if not isinstance(context, _ServicerContext):
            raise ConfigurationError(f"{invocation}: a generated servicer is called over gRPC only")
        return self.behaviors[invocation.method](invocation.args[0], context.servicer_context)


def servicer_handlers(spec: ServiceSpec, handlers: dict[str, grpc.RpcMethodHandler],
                      exported: Any) -> dict[str, grpc.RpcMethodHandler]:
    """gRPC handlers for a servicer: unary ones through the provider chain ``exported.invoker`` (read
    per call: the server swaps it when configurators change), streaming ones as the servicer
    registered them."""
    made: dict[str, grpc.RpcMethodHandler] = {}
    for method in spec.methods:
        original = handlers[method.name]
        if original.unary_unary is None:
            made[method.name] = original
            continue
        made[method.name] = grpc.unary_unary_rpc_method_handler(
            _governed(spec.key, method, exported), request_deserializer=original.request_deserializer,
            response_serializer=original.response_serializer)
    return made


def _governed(key: ServiceKey, spec: MethodSpec, exported: Any) -> Callable[[Any, grpc.ServicerContext], Any]:
    name = spec.name

    def behavior(request: Any, context: grpc.ServicerContext) -> Any:
        metadata = context.invocation_metadata() or ()
        provider_context = _ServicerContext(context, metadata, spec)
        attachments = attachments_of(metadata)
        remaining = context.time_remaining()
        deadline = time.monotonic() + remaining if remaining is not None else float("inf")
        try:
            value = exported.invoker.invoke(Invocation(key, name, (request,), {}, attachments, deadline,
                                                       context=provider_context))
        except GovRpcError as exc:  # a provider filter refused it: the consumer gets the govrpc error
            _fail(context, exc, provider_context.trailing)
        # anything else is the servicer's own (context.abort included): grpc answers it as plain grpcio would
        if provider_context.trailing:
            context.set_trailing_metadata(tuple(provider_context.trailing))
        return value

    return behavior
