"""The in-process transport: call a provider served in this process without a socket.

A started ``govrpc.Server`` publishes each provider URL with its provider
invoker (already wrapped in the server's filters) in a process-wide table
(``export_local``), and withdraws it when it stops (``withdraw_local``). A client
with ``local_first=True`` gives a provider URL found there (``find_local``) an
``InProcessInvoker``: the call runs the same provider filters and method on the
server's in-process workers (``LocalWorkers``, drained by ``Server.stop``),
encoded as on the wire (``wire.py``: the same envelope, attachments, provider
context and exception rebuilding as over gRPC) but with no socket.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import threading
import time
from concurrent.futures import CancelledError as FutureCancelledError
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import TYPE_CHECKING, Any, Callable, Iterable

from govrpc.exceptions import (
    CallTimeoutError,
    GovRpcError,
    MessageTooLargeError,
    ProviderUnavailableError,
    SerializationError,
)
from govrpc.invocation import Invocation, Invoker, ProviderContext
from govrpc.rpc.executor import WorkerPool
from govrpc.rpc.wire import decode_envelope, encode_exception, rebuild_exception, split_metadata
from govrpc.security import TOKEN_KEY
from govrpc.url import URL

if TYPE_CHECKING:
    from govrpc.rpc.serialization import Serializer
    from govrpc.service import MethodSpec

__all__ = ["InProcessInvoker", "LocalExport", "LocalWorkers", "export_local", "find_local", "withdraw_local"]

log = logging.getLogger("govrpc.rpc.inprocess")

PEER = "in-process"


class LocalWorkers:
    """A server's threads for in-process calls (a ``WorkerPool``: one left behind does not hold the
    process at exit), counting the calls not yet finished so stop can drain them."""

    def __init__(self, max_workers: int) -> None:
        self._executor = WorkerPool(max_workers, "govrpc-inprocess")
        self._idle = threading.Condition()
        self._pending = 0

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` on a worker; ``RuntimeError`` once shut down."""
        with self._idle:
            self._pending += 1
        try:
            future = self._executor.submit(fn, *args)
        except BaseException:
            self._done()
            raise
        future.add_done_callback(self._done)
        return future

    def _done(self, _: object = None) -> None:
        with self._idle:
            self._pending -= 1
            if self._pending == 0:
                self._idle.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every submitted call to finish; True if they did."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=max(timeout, 0.0))

    def shutdown(self, wait: bool = False) -> None:
        """Take no more calls; calls still queued are cancelled (their callers fail over); with
        ``wait``, wait for those running, else leave them behind."""
        self._executor.shutdown(wait=wait, cancel_futures=True)


class LocalExport:
    """A provider of a started server in this process: its filter-chained invoker and wire format.

    ``alive`` until the server stops. ``serializer``, ``methods`` and
    ``max_message_size`` let an in-process call encode exactly as gRPC would;
    ``filtered``: provider filters run, so calls carry a ``ProviderContext``.
    """

    __slots__ = ("url", "invoker", "alive", "serializer", "methods", "max_message_size", "executor", "filtered")

    def __init__(self, url: URL, invoker: Invoker, serializer: Serializer | None = None,
                 methods: Iterable[MethodSpec] = (), max_message_size: int = 4 * 1024 * 1024,
                 executor: LocalWorkers | None = None, filtered: bool = True) -> None:
        self.url = url
        self.invoker = invoker
        self.alive = True
        self.serializer = serializer
        self.methods = {m.name: m for m in methods}
        self.max_message_size = max_message_size
        # the server's own workers for in-process calls (as its gRPC threads serve remote ones)
        self.executor = executor
        self.filtered = filtered


_exports: dict[tuple[str, str], LocalExport] = {}  # (address, service key) -> export
_exports_lock = threading.Lock()


def _key(url: URL) -> tuple[str, str]:
    # not the whole URL: a configurator may have changed its parameters (weight...) on the way
    return url.address, str(url.service_key)


def export_local(url: URL, invoker: Invoker, serializer: Serializer | None = None,
                 methods: Iterable[MethodSpec] = (), max_message_size: int = 4 * 1024 * 1024,
                 executor: LocalWorkers | None = None, filtered: bool = True) -> None:
    """Publish a provider of this process (``Server.start``, before it registers ``url``)."""
    with _exports_lock:
        _exports[_key(url)] = LocalExport(url, invoker, serializer, methods, max_message_size, executor, filtered)


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
    limits of both ends apply; a call whose deadline passed in the queue does not
    run; the caller stops waiting at the deadline; govrpc errors arrive as
    themselves, ``safe_exception`` classes rebuilt from their args, others
    (``BaseException`` included) as ``RemoteError``.
    """

    in_process = True

    def __init__(self, export: LocalExport, url: URL | None = None,
                 max_message_size: int = 4 * 1024 * 1024, *, application: str = "", token: str = "") -> None:
        self.url = url or export.url
        self.application = application
        self._token = token  # sent as over gRPC: a provider requiring one checks it in-process too
        self._export = export
        self._limit = min(max_message_size, export.max_message_size)
        self._listener: Callable[[Any], None] | None = None  # read_trailers

    def read_trailers(self, listener: Callable[[Any], None] | None) -> None:
        """As ``GrpcInvoker.read_trailers``: hand ``listener`` the trailing metadata the provider's
        filters set on each answer (or failure), an ORCA load report included; None: not read."""
        self._listener = listener

    def set_token(self, token: str) -> None:
        """Send ``token`` from the next call on."""
        self._token = token

    def _stopped(self, invocation: Invocation) -> ProviderUnavailableError:
        return ProviderUnavailableError(f"{invocation}: the in-process provider {self.url.address} has stopped",
                                        invocation=invocation)

    def invoke(self, invocation: Invocation) -> Any:
        export = self._export
        if not export.alive:
            raise self._stopped(invocation)
        spec = export.methods.get(invocation.method)
        inner = self._request(invocation, spec)
        if export.filtered:  # what the provider's filters see, as over gRPC
            attachments, binary, _ = split_metadata(invocation.attachments.items())
            if self._token:
                attachments[TOKEN_KEY] = self._token
            inner = dataclasses.replace(inner, attachments=attachments,
                                        context=ProviderContext(PEER, self.application, binary, spec))
        remaining = invocation.deadline - time.monotonic()  # after encoding, which takes time too
        if remaining <= 0:
            raise CallTimeoutError(f"{invocation}: deadline passed before calling in-process {self.url.address}",
                                   invocation=invocation)
        try:
            # a fresh context: the provider sees only what the call carries, as over gRPC
            future = (export.executor or _workers()).submit(contextvars.Context().run, self._serve, inner, spec)
        except RuntimeError:  # the server shut its workers down after we saw it alive
            raise self._stopped(invocation) from None
        if invocation.oneway:
            future.add_done_callback(lambda f: _log_oneway(f, invocation))
            return None
        listener, context = self._listener, inner.context
        if listener is not None and context is not None:
            future.add_done_callback(lambda f: listener(tuple(context.trailing)))  # as the answer's trailer
        try:
            return future.result(timeout=None if remaining == float("inf") else remaining)
        except FutureTimeoutError:
            future.cancel()
            raise CallTimeoutError(f"{invocation}: in-process {self.url.address} did not answer within the deadline",
                                   invocation=invocation) from None
        except FutureCancelledError:  # still queued when the server stopped: it never ran
            raise self._stopped(invocation) from None

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
        try:
            args, kwargs = decode_envelope(serializer.loads(data), str(invocation))
        except SerializationError:
            raise
        except Exception as exc:  # noqa: BLE001 - as the provider would answer over gRPC
            raise SerializationError(f"{invocation}: cannot decode the request: {exc}",
                                     invocation=invocation) from exc
        return dataclasses.replace(invocation, args=args, kwargs=kwargs)

    def _serve(self, invocation: Invocation, spec: MethodSpec | None) -> Any:
        """Run on a worker: the provider's chain, then the result through the wire format."""
        if invocation.deadline - time.monotonic() <= 0:  # it waited in the queue past its deadline: not run
            raise CallTimeoutError(f"{invocation}: the deadline passed while the call waited in the in-process "
                                   f"queue of {self.url.address}", invocation=invocation)
        try:
            value = self._export.invoker.invoke(invocation)
        except GovRpcError:
            raise
        except BaseException as exc:  # noqa: BLE001 - SystemExit too: the caller gets what gRPC would give
            remote_type, message, args = encode_exception(exc)
            raise rebuild_exception(remote_type, message, args, invocation) from exc
        serializer = self._export.serializer
        if spec is None or (serializer is None and not spec.is_protobuf):
            return value
        try:
            data = value.SerializeToString() if spec.is_protobuf else serializer.dumps(value)  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001
            raise SerializationError(f"{invocation}: cannot encode the result {type(value).__name__}: {exc}",
                                     invocation=invocation) from exc
        self._check_size(len(data), invocation, "response")
        try:
            if spec.is_protobuf:
                return spec.response_type.FromString(data)  # type: ignore[union-attr]
            return serializer.loads(data)  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - as GrpcInvoker reports it
            raise SerializationError(f"{invocation}: cannot decode the response: {exc}",
                                     invocation=invocation) from exc

    @property
    def available(self) -> bool:
        return self._export.alive

    def __repr__(self) -> str:
        return f"InProcessInvoker({self.url.address}/{self.url.path})"


def _log_oneway(future: Future[Any], invocation: Invocation) -> None:
    exc = future.exception() if not future.cancelled() else None
    if exc is not None:
        log.warning("oneway %s in-process failed: %s", invocation, exc)


_pool: LocalWorkers | None = None


def _workers() -> LocalWorkers:
    """Workers for an export published without its server's own (tests, tools), shared by the process."""
    global _pool
    if _pool is None:
        with _exports_lock:
            if _pool is None:
                _pool = LocalWorkers(32)
    return _pool
