"""Local-first: call a provider served in this process without the network.

A started ``govrpc.Server`` publishes each provider URL with its provider
invoker (already wrapped in the server's filters) in a process-wide table, and
withdraws it when it stops. A client with ``local_first=True`` gives a provider
URL found in that table an ``InProcessInvoker``: the call runs the same provider
filters and method on a worker thread, encoded as on the wire but with no
socket. ``LocalFirstRouter`` then keeps the in-process providers when there are
any; with ``prefer_same_host`` it otherwise keeps the providers on this host.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import logging
import socket
import threading
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from govrpc.exceptions import (
    CallTimeoutError,
    GovRpcError,
    MessageTooLargeError,
    ProviderUnavailableError,
    RemoteError,
    SerializationError,
    is_safe_exception,
)
from govrpc.invocation import Invocation, Invoker
from govrpc.router.base import Router
from govrpc.url import URL

if TYPE_CHECKING:
    from govrpc.rpc.serialization import Serializer
    from govrpc.service import MethodSpec

__all__ = ["InProcessInvoker", "LocalExport", "LocalFirstRouter", "export_local", "find_local",
           "local_address", "local_hosts", "withdraw_local"]

log = logging.getLogger("govrpc.router")


class LocalExport:
    """A provider of a started server in this process: its filter-chained invoker and wire format.

    ``alive`` until the server stops. ``serializer``, ``methods`` and
    ``max_message_size`` let an in-process call encode exactly as gRPC would.
    """

    __slots__ = ("url", "invoker", "alive", "serializer", "methods", "max_message_size", "executor")

    def __init__(self, url: URL, invoker: Invoker, serializer: Serializer | None = None,
                 methods: Iterable[MethodSpec] = (), max_message_size: int = 4 * 1024 * 1024,
                 executor: Executor | None = None) -> None:
        self.url = url
        self.invoker = invoker
        self.alive = True
        self.serializer = serializer
        self.methods = {m.name: m for m in methods}
        self.max_message_size = max_message_size
        # the server's own workers for in-process calls (as its gRPC threads serve remote ones)
        self.executor = executor


_exports: dict[tuple[str, str], LocalExport] = {}  # (address, service key) -> export


def _key(url: URL) -> tuple[str, str]:
    # not the whole URL: a configurator may have changed its parameters (weight...) on the way
    return url.address, str(url.service_key)
_exports_lock = threading.Lock()


def export_local(url: URL, invoker: Invoker, serializer: Serializer | None = None,
                 methods: Iterable[MethodSpec] = (), max_message_size: int = 4 * 1024 * 1024,
                 executor: Executor | None = None) -> None:
    """Publish a provider of this process (``Server.start``, before it registers ``url``)."""
    with _exports_lock:
        _exports[_key(url)] = LocalExport(url, invoker, serializer, methods, max_message_size, executor)


def withdraw_local(url: URL) -> None:
    """Withdraw a provider (``Server.stop``); in-process invokers of it fail over from then on."""
    with _exports_lock:
        export = _exports.pop(_key(url), None)
    if export is not None:
        export.alive = False


def find_local(url: URL) -> LocalExport | None:
    """The export of provider ``url`` if a server in this process serves it."""
    return _exports.get(_key(url))


class InProcessInvoker(Invoker):
    """Calls a provider of this process without the network: its filters and method, on a worker thread.

    Everything but the socket is as over gRPC: arguments and results are encoded
    with the provider's serializer (or as protobuf) and decoded again, so values
    arrive as copies with the wire's types and the wire's errors; the message size
    limits of both ends apply; the caller stops waiting at the deadline; govrpc
    errors and ``safe_exception`` classes arrive as themselves, others as ``RemoteError``.
    """

    in_process = True

    def __init__(self, export: LocalExport, url: URL | None = None,
                 max_message_size: int = 4 * 1024 * 1024) -> None:
        self.url = url or export.url
        self._export = export
        self._limit = min(max_message_size, export.max_message_size)

    def invoke(self, invocation: Invocation) -> Any:
        export = self._export
        if not export.alive:
            raise ProviderUnavailableError(f"{invocation}: the in-process provider {self.url.address} has stopped",
                                           invocation=invocation)
        spec = export.methods.get(invocation.method)
        inner = self._request(invocation, spec)
        remaining = invocation.deadline - time.monotonic()  # after encoding, which takes time too
        if remaining <= 0:
            raise CallTimeoutError(f"{invocation}: deadline passed before calling in-process {self.url.address}",
                                   invocation=invocation)
        try:
            # a fresh context: the provider sees only what the call carries, as over gRPC
            future = (export.executor or _executor()).submit(contextvars.Context().run, self._serve, inner, spec)
        except RuntimeError:  # the server shut its workers down after we saw it alive
            raise ProviderUnavailableError(f"{invocation}: the in-process provider {self.url.address} has stopped",
                                           invocation=invocation) from None
        if invocation.oneway:
            future.add_done_callback(lambda f: _log_oneway(f, invocation))
            return None
        try:
            return future.result(timeout=None if remaining == float("inf") else remaining)
        except FutureTimeoutError:
            future.cancel()
            raise CallTimeoutError(f"{invocation}: in-process {self.url.address} did not answer within the deadline",
                                   invocation=invocation) from None
        except GovRpcError:
            raise
        except Exception as exc:  # noqa: BLE001 - travels as it would over the wire
            if is_safe_exception(exc):
                raise
            cls = type(exc)
            raise RemoteError(f"{cls.__module__}.{cls.__qualname__}", str(exc), invocation=invocation) from exc

    def _check_size(self, size: int, invocation: Invocation, what: str) -> None:
        if size > self._limit:
            raise MessageTooLargeError(f"{invocation} in-process: the {what} of {size} bytes is larger than "
                                       f"the {self._limit}-byte limit", invocation=invocation)

    def _request(self, invocation: Invocation, spec: MethodSpec | None) -> Invocation:
        """The invocation as the provider would decode it from the wire."""
        serializer = self._export.serializer
        if spec is None or (serializer is None and not spec.is_protobuf):
            return invocation  # an unknown method: the provider answers MethodNotFoundError
        if spec.is_protobuf:
            args = invocation.args
            if len(args) != 1 or invocation.kwargs or not hasattr(args[0], "SerializeToString"):
                raise SerializationError(f"{invocation}: a protobuf method takes exactly one protobuf message "
                                         f"(it returns {spec.response_type.DESCRIPTOR.full_name})",  # type: ignore[union-attr]
                                         invocation=invocation)
            data = args[0].SerializeToString()
            self._check_size(len(data), invocation, "request")
            return dataclasses.replace(invocation, args=(spec.request_type.FromString(data),))  # type: ignore[union-attr]
        assert serializer is not None
        try:
            data = serializer.dumps_call(invocation.args, invocation.kwargs)
        except Exception as exc:  # noqa: BLE001 - whatever the serializer raises
            raise SerializationError(f"{invocation}: cannot encode the arguments with {serializer.name}: {exc}",
                                     invocation=invocation) from exc
        self._check_size(len(data), invocation, "request")
        args, kwargs = serializer.loads(data)
        return dataclasses.replace(invocation, args=tuple(args), kwargs=kwargs)

    def _serve(self, invocation: Invocation, spec: MethodSpec | None) -> Any:
        """Run on a worker: the provider's chain, then the result through the wire format."""
        value = self._export.invoker.invoke(invocation)
        serializer = self._export.serializer
        if spec is None or (serializer is None and not spec.is_protobuf):
            return value
        try:
            data = value.SerializeToString() if spec.is_protobuf else serializer.dumps(value)  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001
            raise SerializationError(f"{invocation}: cannot encode the result {type(value).__name__}: {exc}",
                                     invocation=invocation) from exc
        self._check_size(len(data), invocation, "response")
        if spec.is_protobuf:
            return spec.response_type.FromString(data)  # type: ignore[union-attr]
        return serializer.loads(data)  # type: ignore[union-attr]

    @property
    def available(self) -> bool:
        return self._export.alive

    def __repr__(self) -> str:
        return f"InProcessInvoker({self.url.address}/{self.url.path})"


def _log_oneway(future: Future[Any], invocation: Invocation) -> None:
    exc = future.exception() if not future.cancelled() else None
    if exc is not None:
        log.warning("oneway %s in-process failed: %s", invocation, exc)


_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    """The threads in-process calls run on (as a gRPC server's would), shared by the process."""
    global _pool
    if _pool is None:
        with _exports_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(32, thread_name_prefix="govrpc-inprocess")
    return _pool


@functools.lru_cache(maxsize=1)
def local_address() -> str:
    """This host's outward IPv4 address (what a consumer publishes), else 127.0.0.1."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        for info in infos:
            address = str(info[4][0])
            if not address.startswith("127."):
                return address
    except OSError:
        pass
    return "127.0.0.1"


@functools.lru_cache(maxsize=1)
def local_hosts() -> frozenset[str]:
    """Names and addresses of this host (loopback included)."""
    names = {"127.0.0.1", "localhost", "::1", "0.0.0.0", local_address()}
    try:
        hostname = socket.gethostname()
        names.add(hostname)
        names.update(str(info[4][0]) for info in socket.getaddrinfo(hostname, None))
    except OSError:
        pass
    return frozenset(str(n) for n in names)


class LocalFirstRouter(Router):
    """Keeps in-process providers when there are any; else, if configured, those on this host.

    Built by the chain from the client's options (``local_first``, ``prefer_same_host``),
    not from rules; it runs last, among the providers the rules kept.
    """

    name = "local-first"
    priority = -1000

    def __init__(self, *, prefer_same_host: bool = False) -> None:
        self.prefer_same_host = prefer_same_host
        self.hosts = local_hosts()

    def route(self, invokers: Sequence[Invoker], invocation: Invocation,
              consumer: URL) -> tuple[Sequence[Invoker], str]:
        local = [i for i in invokers if getattr(i, "in_process", False)]
        if local:
            return local, "in-process provider(s): called without the network"
        if self.prefer_same_host:
            same = [i for i in invokers if i.url.host in self.hosts]
            if same:
                return same, "no in-process provider; kept the providers on this host"
        return invokers, "no in-process provider" + (" nor one on this host" if self.prefer_same_host else "") \
            + ": all kept"
