"""``@govrpc.service`` marks a class as a service; ``describe`` reads the mark.

The decorator only marks: nothing is registered on import. A server collects
and validates the class when it is added (``describe``): every public method
becomes an RPC method; a method whose one parameter and return value are
annotated with protobuf message classes travels as plain protobuf, so any gRPC
client can call it.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import typing
from typing import Any, Callable, TypeVar

from govrpc.exceptions import ConfigurationError
from govrpc.url import ServiceKey

__all__ = ["STREAM_KINDS", "MethodSpec", "ServiceSpec", "describe", "method", "service"]

T = TypeVar("T")
_MARK = "__govrpc_service__"
_METHOD_MARK = "__govrpc_method__"


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """One RPC method of a service."""

    name: str
    idempotent: bool = False
    request_type: type | None = None   # protobuf message class, or None for Python values
    response_type: type | None = None
    arity: int | None = None           # positional parameters; None: any number (*args)
    stream: str = ""                   # "" (unary), "server", "client" or "bidi" (see STREAM_KINDS)

    @property
    def is_protobuf(self) -> bool:
        return self.request_type is not None


STREAM_KINDS = ("server", "client", "bidi")
"""A generator method streams its results ("server"); one whose one parameter is annotated
``Iterator``/``Iterable`` (``AsyncIterator``/``AsyncIterable``) receives a stream ("client");
both at once is "bidi"."""

_STREAM_TYPES = (collections.abc.Iterator, collections.abc.Iterable, collections.abc.AsyncIterator,
                 collections.abc.AsyncIterable)


def _stream_kind(fn: Callable[..., Any], params: list[inspect.Parameter], hints: dict[str, Any]) -> str:
    produces = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
    consumes = len(params) == 1 and (typing.get_origin(hints.get(params[0].name)) or
                                     hints.get(params[0].name)) in _STREAM_TYPES
    return "bidi" if produces and consumes else "server" if produces else "client" if consumes else ""


@dataclasses.dataclass(frozen=True)
class ServiceSpec:
    """A service class's mark: its key and options."""

    key: ServiceKey
    idempotent: bool = False
    methods: tuple[MethodSpec, ...] = ()


def service(name: str, *, version: str = "", group: str = "", idempotent: bool = False) -> Callable[[type[T]], type[T]]:
    """Mark a class as the implementation of service ``name``.

    Args:
        name: the service name (the gRPC service, e.g. ``helloworld.Greeter``).
        version, group: distinguish implementations of one name.
        idempotent: every method may be retried on another provider.
    Raises:
        ConfigurationError: a bad name, or the class is already marked.
    """
    key = ServiceKey(name, version, group)

    def mark(cls: type[T]) -> type[T]:
        if not inspect.isclass(cls):
            raise ConfigurationError(f"@govrpc.service({name!r}) decorates classes, not {cls!r}")
        if _MARK in vars(cls):
            raise ConfigurationError(
                f"class {cls.__qualname__} is already marked as service {vars(cls)[_MARK].key}; "
                f"cannot mark it again as {key}")
        setattr(cls, _MARK, ServiceSpec(key, idempotent))
        return cls

    return mark


def method(*, idempotent: bool = True) -> Callable[[T], T]:
    """Options of one method (``@govrpc.method(idempotent=True)``)."""

    def mark(fn: T) -> T:
        setattr(fn, _METHOD_MARK, {"idempotent": idempotent})
        return fn

    return mark


def _is_message(tp: Any) -> bool:
    try:
        from google.protobuf.message import Message
    except ImportError:  # pragma: no cover - protobuf is a dependency
        return False
    return inspect.isclass(tp) and issubclass(tp, Message)


def _proto_idempotent(service: str, method: str) -> bool:
    """Does the .proto mark RPC ``service/method`` ``idempotency_level = IDEMPOTENT`` or ``NO_SIDE_EFFECTS``?"""
    try:
        from google.protobuf import descriptor_pool

        descriptor = descriptor_pool.Default().FindServiceByName(service)
    except (ImportError, KeyError):
        return False  # no generated module imported for that service: nothing declared
    rpc = descriptor.methods_by_name.get(method)
    return rpc is not None and rpc.GetOptions().idempotency_level in (1, 2)  # NO_SIDE_EFFECTS, IDEMPOTENT


def _method_spec(cls: type, name: str, fn: Callable[..., Any], default_idempotent: bool,
                 service: str = "") -> MethodSpec:
    options = getattr(fn, _METHOD_MARK, {})
    idempotent = options.get("idempotent", default_idempotent)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: treat as Python values
        hints = {}
    params = [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
    request = hints.get(params[0].name) if len(params) == 1 else None
    response = hints.get("return")
    if _is_message(request) or _is_message(response):
        if not (_is_message(request) and _is_message(response)):
            raise ConfigurationError(
                f"{cls.__qualname__}.{name}: a protobuf method takes exactly one message and returns one")
        if "idempotent" not in options and not idempotent:  # the .proto's own marker counts too
            idempotent = _proto_idempotent(service, name)
        return MethodSpec(name, idempotent, request, response, arity=1)
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    arity = None if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params) \
        else sum(1 for p in params if p.kind in positional)
    return MethodSpec(name, idempotent, arity=arity, stream=_stream_kind(inspect.unwrap(fn), params, hints))


def _check_sync(cls: type, key: ServiceKey, name: str, fn: Callable[..., Any]) -> None:
    """Refuse ``async def`` and async generator methods: threads cannot await them."""
    for candidate in (fn, inspect.unwrap(fn)):
        if inspect.iscoroutinefunction(candidate) or inspect.isasyncgenfunction(candidate):
            kind = "an async generator" if inspect.isasyncgenfunction(candidate) else "an async def method"
            raise ConfigurationError(
                f"service {key}: {cls.__qualname__}.{name} is {kind}, which govrpc.Server cannot call "
                f"(it runs methods on worker threads and cannot await them); host the class on "
                f"govrpc.AsyncServer, or make the method a plain def")


def describe(obj: Any, *, allow_async: bool = False) -> ServiceSpec:
    """The service spec of a marked instance or class, with its methods collected.

    Args:
        allow_async: accept ``async def`` methods (an asyncio server describing its class).
    Raises:
        ConfigurationError: the object's class is not marked, has no public method, or
            (unless ``allow_async``) has an ``async def`` or async generator method.
    """
    cls = obj if inspect.isclass(obj) else type(obj)
    spec = getattr(cls, _MARK, None)
    if not isinstance(spec, ServiceSpec):
        raise ConfigurationError(f"{cls.__qualname__} is not marked with @govrpc.service(...)")
    methods = []
    for name, fn in inspect.getmembers(cls, inspect.isfunction):
        if name.startswith("_"):
            continue
        if not allow_async:
            _check_sync(cls, spec.key, name, fn)
        methods.append(_method_spec(cls, name, fn, spec.idempotent, spec.key.service))
    if not methods:
        raise ConfigurationError(f"service {spec.key} ({cls.__qualname__}) has no public method")
    return dataclasses.replace(spec, methods=tuple(methods))
