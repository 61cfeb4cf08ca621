"""The consumer's end of the wire: one ``GrpcInvoker`` per provider URL.

Channels are shared per address through a ``ChannelPool`` and closed when the
last invoker using them is closed and idle. ``grpc.RpcError`` is translated to
the govrpc hierarchy here and nowhere else.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

import grpc

from govrpc import exceptions as errors
from govrpc.context import _CANCEL_SCOPE
from govrpc.extension import get_extension
from govrpc.invocation import APPLICATION_KEY, Invocation, Invoker
from govrpc.rpc.serialization import Serializer
from govrpc.rpc.server import PING_INTERVAL_KEY, Keepalive
from govrpc.rpc.streams import consumer_codec
from govrpc.rpc.unary import BlockingCall, blocking_call
from govrpc.rpc.wire import ARGS_KEY, ERROR_KEY, EXCEPTION_KEY, KEY_KEY, PUSHBACK_KEY, rebuild_exception, user_agent
from govrpc.security import TLS_KEY, TOKEN_KEY
from govrpc.url import URL

__all__ = ["ChannelPool", "GrpcInvoker", "translate_error"]

log = logging.getLogger("govrpc.rpc")

current_cancel_scope = _CANCEL_SCOPE.get  # bound once: this runs on every call

_UNPUBLISHED_KEPT = 64  # method entries kept per provider beyond those it publishes
_TOO_LARGE = ("larger than max", "message too large", "exceeds")
# "Socket closed" / "Stream removed" come from a connection lost mid-call: the request may have run
_REFUSED = ("connection refused", "failed to connect", "connect failed")

_Entry = tuple[Any, BlockingCall | None, Callable[[Invocation], bytes], Callable[[Any], Any]]
"""A method's multicallable, its blocking call straight to grpc's core (or None), encoder, decoder."""


class ChannelPool:
    """One grpc channel per provider address, shared by every service on it.

    Link liveness: channels ping their provider (``Keepalive``, default every 10 s with
    2 s to answer) and their connectivity is watched. An address whose connection was
    lost (keepalive unanswered, connection cut) or cannot be made is ``down`` until it
    is READY again; meanwhile a prober sends it a health check every ``PROBE_EVERY``
    seconds, which makes the channel reconnect (a frozen provider's handshake hangs
    until it answers again). Every change of ``down`` is told to the ``listeners``
    (the client lists its providers again, leaving out those that are down while any
    other is up).

    With ``credentials`` (grpc's ``ChannelCredentials``) every channel is a TLS one; a pool
    without them dials plaintext and refuses (``secure``) providers that serve TLS only.
    """

    PROBE_EVERY = 1.0

    def __init__(self, *, max_message_size: int = 4 * 1024 * 1024,
                 credentials: grpc.ChannelCredentials | None = None,
                 options: list[tuple[str, Any]] | None = None, keepalive: Keepalive | None = None,
                 application: str = "") -> None:
        self.keepalive = keepalive if keepalive is not None else Keepalive()
        self.application = application  # named by every channel's user-agent (``wire.user_agent``)
        self._base_options = [
            ("grpc.max_receive_message_length", max_message_size),
            ("grpc.max_send_message_length", max_message_size),
            ("grpc.enable_retries", 0),  # the cluster invoker retries, with its own rules
            *((("grpc.primary_user_agent", user_agent(application)),) if application else ()),
        ]
        self._extra_options = list(options or ())  # the caller's own come last: they win
        self.credentials = credentials
        self._lock = threading.Lock()
        self._channels: dict[str, tuple[grpc.Channel, int]] = {}
        self._watchers: dict[str, Callable[[grpc.ChannelConnectivity], None]] = {}
        self.down: frozenset[str] = frozenset()  # swapped whole: readers never lock
        self._ready: set[str] = set()
        self.listeners: list[Callable[[], None]] = []
        self._prober: threading.Thread | None = None
        self._closed = threading.Event()

    def options_for(self, pings: float | None) -> list[tuple[str, Any]]:
        """The channel options for a provider that accepts keepalive pings every ``pings`` s
        (None: it never said, so it is not pinged; ``Keepalive.client_options``)."""
        return [*self._base_options, *self.keepalive.client_options(pings), *self._extra_options]

    def acquire(self, address: str, pings: float | None = 0.0) -> grpc.Channel:
        """The shared channel to ``address`` (made by the first acquirer, with its ``pings``)."""
        with self._lock:
            channel, count = self._channels.get(address, (None, 0))
            if channel is None:
                options = self.options_for(pings)
                channel = (grpc.insecure_channel(address, options=options) if self.credentials is None
                           else grpc.secure_channel(address, self.credentials, options=options))
                if self.keepalive.time:
                    watcher = self._watcher(address)
                    self._watchers[address] = watcher
                    channel.subscribe(watcher)
            self._channels[address] = (channel, count + 1)
            return channel

    def _watcher(self, address: str) -> Callable[[grpc.ChannelConnectivity], None]:
        def changed(state: grpc.ChannelConnectivity) -> None:
            with self._lock:
                if address not in self._channels:
                    return
                if state is grpc.ChannelConnectivity.READY:
                    self._ready.add(address)
                    down = self.down - {address}
                elif state is grpc.ChannelConnectivity.TRANSIENT_FAILURE or address in self._ready:
                    # lost after it was up (keepalive, cut link), or cannot connect at all
                    self._ready.discard(address)
                    down = self.down | {address}
                else:
                    return
                moved = down != self.down
                self.down = down
                if down and self._prober is None and not self._closed.is_set():
                    self._prober = threading.Thread(target=self._probe, name="govrpc-link-probe", daemon=True)
                    self._prober.start()
            if moved:
                log.info("provider link %s is %s", address, "down" if address in down else "up again")
                for listener in list(self.listeners):
                    try:
                        listener()
                    except Exception:  # noqa: BLE001 - one listener must not stop the others
                        log.exception("link listener failed")

        return changed

    def _probe(self) -> None:
        """While some link is down: ask each such provider for its health, which reconnects the channel."""
        timeout = max(self.keepalive.timeout, 0.5)
        while not self._closed.wait(self.PROBE_EVERY):
            with self._lock:
                targets = [self._channels[a][0] for a in self.down if a in self._channels]
                if not targets:
                    self._prober = None
                    return
            for channel in targets:
                try:
                    channel.unary_unary(_HEALTH_CHECK).future(b"", timeout=timeout, wait_for_ready=True)
                except ValueError:  # closed under us: released meanwhile
                    pass

    def is_down(self, address: str) -> bool:
        return address in self.down

    def release(self, address: str) -> None:
        with self._lock:
            channel, count = self._channels.get(address, (None, 0))
            if channel is None:
                return
            if count > 1:
                self._channels[address] = (channel, count - 1)
                return
            del self._channels[address]
            watcher = self._watchers.pop(address, None)
            self._ready.discard(address)
            self.down = self.down - {address}
        _close_channel(channel, watcher)

    def addresses(self) -> list[str]:
        with self._lock:
            return sorted(self._channels)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            channels = [(c, self._watchers.pop(a, None)) for a, (c, _) in self._channels.items()]
            self._channels.clear()
            self.down = frozenset()
        for channel, watcher in channels:
            _close_channel(channel, watcher)


_HEALTH_CHECK = "/grpc.health.v1.Health/Check"  # an empty request asks for the whole server
_REAP_AFTER = 0.5  # grpc's connectivity poller notices an unsubscribe within 0.2 s
_reaping: list[tuple[float, grpc.Channel]] = []
_reap_lock = threading.Lock()
_reaper: threading.Thread | None = None


def _close_channel(channel: grpc.Channel, watcher: Callable[..., None] | None) -> None:
    """Close ``channel``; one that was watched is closed a moment later, on a daemon thread: grpc's
    connectivity poller raises if the channel closes while it still watches (it stops within 0.2 s
    of the unsubscribe)."""
    global _reaper
    if watcher is None:
        channel.close()
        return
    channel.unsubscribe(watcher)
    with _reap_lock:
        _reaping.append((time.monotonic() + _REAP_AFTER, channel))
        if _reaper is None:
            _reaper = threading.Thread(target=_reap, name="govrpc-channel-reaper", daemon=True)
            _reaper.start()


def _reap() -> None:
    global _reaper
    while True:
        time.sleep(_REAP_AFTER / 2)
        now = time.monotonic()
        with _reap_lock:
            due = [c for t, c in _reaping if t <= now]
            _reaping[:] = [(t, c) for t, c in _reaping if t > now]
            if not due and not _reaping:
                _reaper = None
                return
        for channel in due:
            channel.close()


def _response_class(full_name: str) -> Any:
    from google.protobuf import descriptor_pool, message_factory

    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(full_name)
    except KeyError:
        raise errors.SerializationError(
            f"protobuf message type {full_name} is unknown here: import the module generated "
            f"from its .proto before calling") from None
    return message_factory.GetMessageClass(descriptor)


def translate_error(exc: grpc.RpcError, invocation: Invocation, address: str) -> BaseException:
    """The govrpc error (or re-raisable business exception) for a failed grpc call."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else None) or str(code)
    trailing = dict(exc.trailing_metadata() or ()) if hasattr(exc, "trailing_metadata") else {}
    where = f"{invocation} on {address}"
    remote_type = trailing.get(EXCEPTION_KEY)
    if remote_type is not None:  # a safe class is rebuilt from its args, anything else is a RemoteError
        args = trailing.get(ARGS_KEY)
        return rebuild_exception(str(remote_type), details, args if isinstance(args, bytes) else None, invocation)
    error_name = trailing.get(ERROR_KEY)
    known = errors.error_class(error_name) if error_name else None
    if known is not None:
        if issubclass(known, errors.RateLimitedError):
            return _rate_limited(f"{where}: {details}", invocation, trailing)
        return known(f"{where}: {details}", invocation=invocation)
    text = details.lower()
    cls_: type[errors.GovRpcError]
    if code is grpc.StatusCode.UNAVAILABLE:
        refused = any(marker in text for marker in _REFUSED)
        cls_ = errors.ConnectionRefusedByProviderError if refused else errors.ProviderUnavailableError
    elif code is grpc.StatusCode.DEADLINE_EXCEEDED:
        cls_ = errors.CallTimeoutError
    elif code is grpc.StatusCode.UNIMPLEMENTED:
        cls_ = errors.MethodNotFoundError
    elif code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        too_large = any(marker in text for marker in _TOO_LARGE)
        cls_ = errors.MessageTooLargeError if too_large else errors.RateLimitedError
    elif code is grpc.StatusCode.CANCELLED:
        # this consumer cancels nothing it waits for: the provider dropped the call (grpc does so to
        # calls caught in a server's stop window), which another provider can serve
        cls_ = errors.ProviderUnavailableError
        details = f"the provider cancelled the call (shutting down?): {details}"
    elif code is grpc.StatusCode.UNAUTHENTICATED:
        cls_ = errors.UnauthenticatedError
    else:
        error = errors.RpcError(f"{where}: {code.name}: {details}", invocation=invocation)
        error.code = code.name  # type: ignore[misc]
        return error
    return cls_(f"{where}: {details}", invocation=invocation)


def _rate_limited(message: str, invocation: Invocation, trailing: dict[str, Any]) -> errors.RateLimitedError:
    """A provider's flow-control refusal, honouring its pushback: negative (or unreadable) means
    a retry is pointless, so failover does not retry; else ``retry_after`` says when one may pass.
    The refusing limit comes from the ``QuotaFailure`` in the status details."""
    text = trailing.get(PUSHBACK_KEY)
    try:
        pushback = int(text) if isinstance(text, str) else None
    except ValueError:
        pushback = -1  # unparseable: do not retry (gRFC A6)
    reason = limit = ""
    raw = trailing.get("grpc-status-details-bin")
    if isinstance(raw, bytes):
        try:
            from google.rpc import error_details_pb2, status_pb2

            for detail in status_pb2.Status.FromString(raw).details:
                if detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
                    failure = error_details_pb2.QuotaFailure()
                    detail.Unpack(failure)
                    for violation in failure.violations[:1]:
                        reason, _, limit = violation.subject.partition(":")
        except Exception:  # noqa: BLE001 - the details are a courtesy; the status says enough
            log.debug("unreadable status details from a rate-limited call", exc_info=True)
    return errors.RateLimitedError(message, invocation=invocation, reason=reason, limit=limit,
                                   retry_after=pushback / 1000 if pushback is not None and pushback >= 0 else None,
                                   retryable=pushback is None or pushback >= 0)


def accepted_pings(url: URL) -> float | None:
    """How often the provider of ``url`` accepts keepalive pings (s), as its server published
    (``ping_interval``); None when the URL does not say (a plain grpcio server: not pinged)."""
    text = url.params.get(PING_INTERVAL_KEY)
    if text is None:
        return None
    try:
        accepted = float(text)
    except ValueError:
        return None
    return accepted if 0.0 <= accepted <= 86400.0 else None


class GrpcInvoker(Invoker):
    """Calls one provider over its address's shared channel.

    Counts nothing: in-flight calls are the cluster's (``ProviderState``), which closes
    a provider that left only once its last call has ended. The channel is taken from
    the pool on the first call, so making an invoker (on a registry's delivery thread)
    costs no connection; after ``close`` calls fail at once and the channel goes back.
    """

    def __init__(self, url: URL, pool: ChannelPool, *, application: str = "", token: str = "") -> None:
        self.url = url
        self.address = url.address
        self._pool = pool
        self._channel: grpc.Channel | None = None
        serializer_name = url.params.get("serialization", "msgpack")
        self.serializer: Serializer = get_extension("govrpc.serializer", serializer_name)()
        key_metadata = (KEY_KEY, str(url.service_key))
        # the application travels in the channel's user-agent when the pool's channels carry it
        self._static_metadata = ((key_metadata,) if url.params.get("dispatch") == "key" else ()) \
            + (((APPLICATION_KEY, application),) if application and application != pool.application else ())
        self._key_metadata = self._static_metadata + (((TOKEN_KEY, token),) if token else ())
        # a provider that serves TLS only is never dialled in plaintext
        self._refusal = (f"provider {self.address} serves TLS only and this client has no TLS credentials "
                         f"(Client(tls=...) or credentials=)"
                         if url.params.get(TLS_KEY) == "true" and pool.credentials is None else "")
        self.pings = accepted_pings(url)
        self._methods: dict[str, _Entry] = {}
        self._published = frozenset(url.methods)
        self._lock = threading.Lock()  # first call and close only; never per call
        self._closed = False
        self._listener: Callable[[Any], None] | None = None  # read_trailers

    def set_token(self, token: str) -> None:
        """Send ``token`` from the next call on (the metadata tuple is swapped whole)."""
        self._key_metadata = self._static_metadata + (((TOKEN_KEY, token),) if token else ())

    def _method(self, name: str) -> _Entry:
        with self._lock:
            entry = self._methods.get(name)
            if entry is not None:
                return entry
            if self._closed:
                raise errors.ConnectionRefusedByProviderError(f"provider {self.address} has left")
            if self._refusal:
                raise errors.ConnectionRefusedByProviderError(self._refusal)
            if self._channel is None:
                self._channel = self._pool.acquire(self.address, self.pings)
            response_type = self.url.params.get(f"{name}.response")
            stream = self.url.params.get(f"{name}.stream")
            kind = "unary_unary"
            encode: Callable[[Invocation], Any]
            decode: Callable[[Any], Any]
            if stream in ("server", "client", "bidi"):  # a decorated streaming method (rpc/streams.py)
                kind, encode, decode = consumer_codec(stream, self.serializer, self.url.service_key, name,
                                                      self.address, translate_error)
            elif response_type:
                cls = _response_class(response_type)
                encode = _protobuf_request(name, response_type)
                decode = cls.FromString
            else:
                encode = self.serializer.dumps_invocation
                decode = self.serializer.loads
            call = getattr(self._channel, kind)(f"/{self.url.path}/{name}", _registered_method=True)
            # a blocking unary call goes straight to grpc's core where that is known to hold (rpc/unary.py)
            entry = (call, blocking_call(call) if kind == "unary_unary" else None, encode, decode)
            # the provider's own methods are kept; names it does not publish (a generic call's
            # typo, hostile input) only up to a bound
            if name in self._published or len(self._methods) < _UNPUBLISHED_KEPT:
                self._methods[name] = entry
            return entry

    def _left(self, invocation: Invocation) -> errors.ConnectionRefusedByProviderError:
        """What a call gets once this provider's invoker is closed (before sending, or when grpc
        refuses a call on the channel closed under it)."""
        return errors.ConnectionRefusedByProviderError(f"{invocation}: provider {self.address} has left",
                                                       invocation=invocation)

    def _prepare(self, invocation: Invocation) -> tuple[Any, BlockingCall | None, Callable[[Any], Any], bytes, float, Any]:
        """What sending ``invocation`` takes: the method's callable (and its blocking call straight to
        grpc's core, or None), its decoder, the encoded request, the seconds left and the metadata;
        raises what refuses the call before it leaves."""
        if self._closed:
            raise self._left(invocation)
        call, blocking, encode, decode = self._methods.get(invocation.method) or self._method(invocation.method)
        timeout = invocation.deadline - time.monotonic()
        if timeout <= 0:
            raise errors.CallTimeoutError(f"{invocation}: deadline passed before calling {self.address}",
                                          invocation=invocation)
        try:
            request = encode(invocation)
        except errors.GovRpcError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the serializer raises
            raise errors.SerializationError(
                f"{invocation}: cannot encode the arguments with {self.serializer.name}: {exc}",
                invocation=invocation) from exc
        attachments = invocation.attachments
        metadata = (self._key_metadata + tuple(attachments.items()) if attachments
                    else self._key_metadata) or None
        return call, blocking, decode, request, timeout, metadata

    def invoke(self, invocation: Invocation) -> Any:
        call, blocking, decode, request, timeout, metadata = self._prepare(invocation)
        try:
            if invocation.oneway:
                future = call.future(request, timeout=timeout, metadata=metadata)
                future.add_done_callback(lambda f, inv=invocation: self._oneway_done(f, inv))
                return None
            scope = current_cancel_scope()
            if scope is None:
                response = call(request, timeout=timeout, metadata=metadata) if blocking is None \
                    else blocking(request, timeout, metadata)
            else:  # a forking branch: another provider may answer first and cancel this RPC
                pending = call.future(request, timeout=timeout, metadata=metadata)
                scope.add(pending.cancel)
                try:
                    response = pending.result()
                except grpc.FutureCancelledError:
                    raise errors.CancelledError(f"{invocation}: cancelled on {self.address}",
                                                invocation=invocation) from None
        except grpc.RpcError as exc:
            raise translate_error(exc, invocation, self.address) from None
        except ValueError as exc:  # grpc refuses a call on a channel closed under it
            if not self._closed:
                raise
            raise self._left(invocation) from exc
        try:
            return decode(response)
        except Exception as exc:  # noqa: BLE001
            raise errors.SerializationError(f"{invocation}: cannot decode the response: {exc}",
                                            invocation=invocation) from exc

    def start(self, invocation: Invocation) -> Future[Any]:
        """Send the call with grpc's own non-blocking call; the future holds the decoded value or
        the translated error (``.future()`` of a proxy, without a thread waiting on it)."""
        call, _, decode, request, timeout, metadata = self._prepare(invocation)
        result: Future[Any] = Future()
        result.set_running_or_notify_cancel()
        address = self.address

        def done(rpc: Any) -> None:
            try:
                response = rpc.result()
            except grpc.RpcError as exc:
                result.set_exception(translate_error(exc, invocation, address))
                return
            except grpc.FutureCancelledError:
                result.set_exception(errors.CancelledError(f"{invocation}: cancelled on {address}",
                                                           invocation=invocation))
                return
            try:
                result.set_result(decode(response))
            except Exception as exc:  # noqa: BLE001
                result.set_exception(errors.SerializationError(
                    f"{invocation}: cannot decode the response: {exc}", invocation=invocation))

        call.future(request, timeout=timeout, metadata=metadata).add_done_callback(done)
        return result

    def read_trailers(self, listener: Callable[[Any], None] | None) -> None:
        """From now on hand the trailing metadata of each unary answer (or failure) to ``listener``;
        None: read none again. Set when an endpoint binds its filters (a stage listening, such as
        ``govrpc.monitor.orca``'s reader): a transport nobody listens to keeps its plain call."""
        self._listener = listener
        if listener is None:
            self.__dict__.pop("invoke", None)
        else:
            self.invoke = self._invoke_reading  # type: ignore[method-assign]

    def _invoke_reading(self, invocation: Invocation) -> Any:
        listener = self._listener
        if listener is None or invocation.oneway or current_cancel_scope() is not None \
                or self.url.params.get(f"{invocation.method}.stream"):
            return GrpcInvoker.invoke(self, invocation)
        call, _, decode, request, timeout, metadata = self._prepare(invocation)
        try:
            response, rpc = call.with_call(request, timeout=timeout, metadata=metadata)
        except grpc.RpcError as exc:
            listener(exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else ())
            raise translate_error(exc, invocation, self.address) from None
        except ValueError as exc:  # grpc refuses a call on a channel closed under it
            if not self._closed:
                raise
            raise self._left(invocation) from exc
        listener(rpc.trailing_metadata())
        try:
            return decode(response)
        except Exception as exc:  # noqa: BLE001
            raise errors.SerializationError(f"{invocation}: cannot decode the response: {exc}",
                                            invocation=invocation) from exc

    def _oneway_done(self, future: Any, invocation: Invocation) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            log.warning("oneway %s to %s failed: %s", invocation, self.address,
                        translate_error(exc, invocation, self.address))

    @property
    def available(self) -> bool:
        """Not closed, and its link is not down (``ChannelPool``: keepalive unanswered, connection lost)."""
        return not self._closed and self.address not in self._pool.down

    def close(self) -> None:
        """Calls after this fail; the channel goes back to the pool (the cluster calls this once
        the provider's last call has ended)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            channel, self._channel = self._channel, None
        if channel is not None:
            self._pool.release(self.address)

    def __repr__(self) -> str:
        return f"GrpcInvoker({self.address}/{self.url.path})"


def _protobuf_request(method: str, response_type: str) -> Callable[[Any], bytes]:
    from google.protobuf.message import Message

    def encode(invocation: Invocation) -> bytes:
        args = invocation.args
        if len(args) != 1 or invocation.kwargs or not isinstance(args[0], Message):
            raise errors.SerializationError(
                f"{invocation}: a protobuf method takes exactly one protobuf message "
                f"(it returns {response_type})", invocation=invocation)
        return args[0].SerializeToString()

    return encode
