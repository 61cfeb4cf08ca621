"""``TraceFilter``: every call carries W3C trace context, and spans record when an SDK is set.

One built-in filter (``auto``) on both sides. On the consumer it runs at the
reference level, outermost, once per logical call: it continues the trace of the
code calling (the current OpenTelemetry span, or the govrpc call this thread is
handling), or starts one, and sends ``traceparent`` / ``tracestate`` / ``baggage``
as gRPC metadata. On the provider it reads them back (a malformed header starts a
fresh trace, the call goes on) and makes the context current while the provider's
method runs, so the calls it makes join the same trace and its log records carry
the ids (``TraceContextFilter``).

Without an SDK this costs a random span id, a string and two contextvar writes
(``benchmarks/overhead.py``). With one, it is a CLIENT span per call and a SERVER
span per handled call, named and attributed as ``opentelemetry-instrumentation-grpc``
does; the cluster and router report through a ``CallRecorder`` what they decided
(providers left after routing, the balancer and provider chosen: attributes set with
the outcome in one batch when the span ends; each retry and why: an event, and a child
span per further attempt), and a limiter's or breaker's refusal is an event.
``.future()`` keeps its non-blocking first attempt: the span starts in the caller's
context and ends in the future's callback. A server span whose processors only queue
spans for a batch exporter is finished after its call's answer is sent (its end time
is the method's), and it reads the caller's ``traceparent`` only when its ids are read
(``LightTracer.start_server_span``): its call's answer waits for neither.

With the SDK's own ``Tracer`` the spans are ``govrpc.trace.spans.LightSpan``s: the
provider's sampler, ids, limits and processors decide and receive them as they do the
SDK's spans, at a fraction of the SDK span's cost. What is known at start goes to
``start_span`` from a per-method (server: per method, caller and peer) cache, the
outcome and the decisions go on in one unchecked batch at the end, and nothing is built
for a span that does not record. ``python benchmarks/consumer_cost.py --sdk
[--side provider | --floor]`` measures both sides against the SDK's own
``start_span(...).end()``.
"""

from __future__ import annotations

import contextvars
import time
from concurrent.futures import Future
from typing import Any, Callable, ClassVar

from govrpc.context import _RECORDER
from govrpc.invocation import APPLICATION_KEY, Filter, Invocation, Invoker
from govrpc.options import Option
from govrpc.rpc.executor import after_answer as _after_answer
from govrpc.rpc.wire import _caller as _caller_from
from govrpc.trace import otel, w3c
from govrpc.url import CONSUMER, URL

__all__ = ["TraceFilter"]

_CURRENT = w3c._CURRENT
_current_ref = _CURRENT.get
_take_fresh = w3c._take_fresh
_refill = w3c._refill
_as_ref = w3c.as_ref
_sdk_tracer = otel.sdk_tracer
_time_ns = time.time_ns
_KNOWN = otel.KNOWN
_api = otel.otel_trace
_TRACEPARENT = w3c.TRACEPARENT
_BAGGAGE = w3c.BAGGAGE
_remote_parent = otel.remote_parent
_Incoming = w3c.Incoming
_new_incoming = object.__new__
if otel.available:
    _attach = otel.attach
    _detach = otel.detach
    _get_current = otel.current_context
    _Context = otel.Context
    _SPAN_KEY = otel.SPAN_KEY  # _Context({**parent, _SPAN_KEY: span}): set_span_in_context(span, parent)
    _CLIENT = otel.otel_trace.SpanKind.CLIENT
    _SERVER = otel.otel_trace.SpanKind.SERVER
    _NO_BAGGAGE = otel.Context()

Run = Callable[[Callable[[], Any]], "Future[Any]"]


def _propagate(attachments: dict[str, str]) -> w3c.Current:
    """Without an SDK: this call's span, the current one's child or a new trace's first, written
    into ``attachments`` (its metadata) as the parent of the call being sent."""
    parent = _current_ref()
    if parent is None:  # a new trace, the common case at an edge: its header is all there is to keep
        try:  # w3c.fresh_traceparent, written out: a frame less per call
            header = _take_fresh()
        except IndexError:
            header = _refill()
        attachments[_TRACEPARENT] = header
        return header
    ref = _as_ref(parent).child()  # type: ignore[union-attr]
    ref.inject(attachments)
    return ref


class TraceFilter(Filter):
    """Trace context on every call; OpenTelemetry spans when an SDK is configured.

    Options: ``trace`` (``false`` switches the stage off for a reference or a
    provider, propagation included; default ``true``).
    """

    side: ClassVar[str] = "both"
    level: ClassVar[str] = "reference"
    order: ClassVar[int] = -1000  # outermost: the span covers every other stage's decision
    auto: ClassVar[bool] = True

    ENABLED = Option.boolean("trace", True, per_method=False,
                             doc="propagate trace context and record spans for this reference or provider")
    options: ClassVar[tuple[Option, ...]] = (ENABLED,)

    def bind(self, url: URL) -> Filter | None:
        if not self.ENABLED.read(url):
            return None
        if url.scheme == CONSUMER:
            return _ConsumerTrace(url)
        return _ProviderTrace(url)

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:  # unbound: as on a provider
        return _ProviderTrace(invoker.url).invoke(invoker, invocation)


class _ConsumerTrace(Filter):
    side: ClassVar[str] = "consumer"
    order: ClassVar[int] = TraceFilter.order

    def __init__(self, url: URL) -> None:
        self.application = url.params.get("application", "")
        self.service = url.path
        self._names: dict[str, tuple[str, dict[str, Any]]] = {}

    def _name(self, method: str) -> tuple[str, dict[str, Any]]:
        entry = self._names.get(method)
        if entry is None:
            entry = (f"/{self.service}/{method}",
                     {"rpc.system": "grpc", "rpc.service": self.service, "rpc.method": method,
                      "govrpc.application": self.application})
            if len(self._names) < 256:  # generic calls may name anything: keep a bound
                self._names[method] = entry
        return entry

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        # no SDK provider set at all (the API's global is None): no call, no span, propagation only
        known = _KNOWN[0]  # otel.sdk_tracer, its answer for the provider it last saw read here: a frame less
        tracer = None if _api is None or (provider := _api._TRACER_PROVIDER) is None else \
            known[1] if provider is known[0] else _sdk_tracer()
        if tracer is None:
            token = _CURRENT.set(_propagate(invocation.attachments))
            try:
                return invoker.invoke(invocation)
            finally:
                _CURRENT.reset(token)
        span, recorder, ctx = self._start(tracer, invocation)
        otoken = _attach(ctx)
        rtoken = _RECORDER.set(recorder)
        exc: BaseException | None = None
        try:
            return invoker.invoke(invocation)
        except BaseException as error:
            exc = error
            raise
        finally:
            _RECORDER.reset(rtoken)
            _detach(otoken)
            if recorder is not None:
                recorder.close(exc)
            else:
                span.end()  # sampled out: records nothing

    async def ainvoke(self, invoker: Any, invocation: Invocation) -> Any:
        """The asyncio twin of ``invoke`` (``AsyncClient``): the same steps around an awaited call."""
        known = _KNOWN[0]  # otel.sdk_tracer, its answer for the provider it last saw read here: a frame less
        tracer = None if _api is None or (provider := _api._TRACER_PROVIDER) is None else \
            known[1] if provider is known[0] else _sdk_tracer()
        if tracer is None:
            token = _CURRENT.set(_propagate(invocation.attachments))
            try:
                return await invoker.ainvoke(invocation)
            finally:
                _CURRENT.reset(token)
        span, recorder, ctx = self._start(tracer, invocation)
        otoken = _attach(ctx)
        rtoken = _RECORDER.set(recorder)
        exc: BaseException | None = None
        try:
            return await invoker.ainvoke(invocation)
        except BaseException as error:
            exc = error
            raise
        finally:
            _RECORDER.reset(rtoken)
            _detach(otoken)
            if recorder is not None:
                recorder.close(exc)
            else:
                span.end()

    def _start(self, tracer: Any, invocation: Invocation) -> tuple[Any, otel.SpanRecorder | None, Any]:
        entry = self._names.get(invocation.method)
        name, attributes = entry if entry is not None else self._name(invocation.method)
        if invocation.oneway:
            attributes = {**attributes, "govrpc.oneway": True}
        parent = _get_current()  # read once: start_span and its sampler would read it three times
        span = tracer.start_new_trace(name, parent, attributes, invocation.attachments) \
            if type(tracer) is otel.LightTracer else None
        if span is None:  # the caller's trace goes on, or the provider's sampler and processors are asked
            span = tracer.start_span(name, parent, _CLIENT, attributes)
            ctx = _Context({**parent, _SPAN_KEY: span})
            otel.inject(span, ctx, invocation.attachments)
        else:  # a new trace's first span, its traceparent sent: the caller's context is empty
            ctx = _Context({_SPAN_KEY: span})
        # sampled out: the ids still travel, nothing is written on the span
        recording = type(span) is otel.LightSpan or span.is_recording()  # a light span just started records
        recorder = otel.SpanRecorder(span, tracer, name, attributes) if recording else None
        return span, recorder, ctx

    def future(self, invoker: Any, invocation: Invocation, run: Run) -> Future[Any]:
        """The call started without a thread when what follows can (``invoker.future``), else on ``run``;
        the span (or the propagated context) is the caller's, and ends when the future is done."""
        tracer = _sdk_tracer()
        if tracer is None:
            token = _CURRENT.set(_propagate(invocation.attachments))
            try:
                return _start_future(invoker, invocation, run)
            finally:
                _CURRENT.reset(token)
        span, recorder, ctx = self._start(tracer, invocation)
        otoken = _attach(ctx)
        rtoken = _RECORDER.set(recorder)
        try:
            started = _start_future(invoker, invocation, run)
        except BaseException as exc:
            if recorder is not None:
                recorder.close(exc)
            else:
                span.end()
            raise
        finally:
            _RECORDER.reset(rtoken)
            _detach(otoken)

        def done(result: Future[Any]) -> None:
            if recorder is not None:
                recorder.close(result.exception())
            else:
                span.end()

        started.add_done_callback(done)
        return started


def _start_future(invoker: Any, invocation: Invocation, run: Run) -> Future[Any]:
    """``invoker.future`` in the current context (what follows a failed first attempt runs in it
    too), or the whole call on ``run`` when it cannot start without a thread."""
    context = contextvars.copy_context()

    def in_context(fn: Callable[[], Any]) -> Future[Any]:
        return run(lambda: context.run(fn))

    started = invoker.future(invocation, in_context)
    if started is None:
        started = run(lambda: context.run(invoker.invoke, invocation))
    return started


class _ProviderTrace(Filter):
    side: ClassVar[str] = "provider"
    order: ClassVar[int] = TraceFilter.order

    def __init__(self, url: URL) -> None:
        self.service = url.path
        self._starts: dict[str, tuple[str, dict[str, Any]]] = {}
        self._callers: dict[tuple[Any, Any, str], dict[str, Any]] = {}

    def scope(self, call: Any, name: str, method: Callable[..., Any], args: tuple[Any, ...],
              kwargs: dict[str, Any]) -> Any:
        """The call without an Invocation (``Filter.scope``), from the gRPC call: the caller's
        context, from the request metadata, is current while ``method`` runs, and with an SDK
        the server span covers it."""
        metadata = call.invocation_metadata()
        known = _KNOWN[0]  # otel.sdk_tracer, its answer for the provider it last saw read here: a frame less
        tracer = None if _api is None or (provider := _api._TRACER_PROVIDER) is None else \
            known[1] if provider is known[0] else _sdk_tracer()
        if tracer is None:  # propagation only: the caller's context, parsed if the method calls on
            incoming = _new_incoming(_Incoming)
            incoming.carrier, incoming.span = metadata, None
            token = _CURRENT.set(incoming)
            try:
                return method(*args, **kwargs)
            finally:
                _CURRENT.reset(token)
        headers = dict(metadata)
        span, otoken = self._begin(tracer, name, headers)
        exc: BaseException | None = None
        try:
            return method(*args, **kwargs)
        except BaseException as error:
            exc = error
            raise
        finally:
            _detach(otoken)
            # otel.end_later, written out (a frame less per call): after the answer where only batch queues wait
            if type(span) is not otel.LightSpan or not span._queued or \
                    not _after_answer(self._served, span, exc, headers, call, _time_ns()):
                self._served(span, exc, headers, call, None)

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        attachments = invocation.attachments
        known = _KNOWN[0]  # otel.sdk_tracer, its answer for the provider it last saw read here: a frame less
        tracer = None if _api is None or (provider := _api._TRACER_PROVIDER) is None else \
            known[1] if provider is known[0] else _sdk_tracer()
        if tracer is None:
            incoming = _new_incoming(_Incoming)
            incoming.carrier, incoming.span = attachments, None
            token = _CURRENT.set(incoming)
            try:
                return invoker.invoke(invocation)
            finally:
                _CURRENT.reset(token)
        span, otoken = self._begin(tracer, invocation.method, attachments)
        exc: BaseException | None = None
        try:
            return invoker.invoke(invocation)
        except BaseException as error:
            exc = error
            raise
        finally:
            _detach(otoken)
            otel.end_later(span, self._invoked, span, exc, invocation)

    async def ainvoke(self, invoker: Any, invocation: Invocation) -> Any:
        """The asyncio twin of ``invoke`` (``AsyncServer``)."""
        attachments = invocation.attachments
        tracer = _sdk_tracer()
        if tracer is None:
            token = _CURRENT.set(w3c.incoming(attachments))
            try:
                return await invoker.ainvoke(invocation)
            finally:
                _CURRENT.reset(token)
        span, otoken = self._begin(tracer, invocation.method, attachments)
        exc: BaseException | None = None
        try:
            return await invoker.ainvoke(invocation)
        except BaseException as error:
            exc = error
            raise
        finally:
            _detach(otoken)
            self._invoked(span, exc, invocation, None)

    def _begin(self, tracer: Any, method: str, carrier: Any) -> tuple[Any, Any]:
        """The server span of a call to ``method``, the caller's child, and the token of its context
        made current. A light tracer reads the caller's headers itself (``start_server_span``)."""
        entry = self._starts.get(method)
        name, attributes = entry if entry is not None else self._start_of(method)
        ctx = otel.baggage_of(carrier) if _BAGGAGE in carrier else _NO_BAGGAGE
        if type(tracer) is otel.LightTracer:
            span = tracer.start_server_span(name, ctx, attributes, carrier)
        else:
            span = tracer.start_span(name, otel.with_parent(ctx, _remote_parent(carrier)), _SERVER, attributes)
        return span, _attach(_Context({**ctx, _SPAN_KEY: span}) if ctx else _Context({_SPAN_KEY: span}))

    def _start_of(self, method: str) -> tuple[str, dict[str, Any]]:
        """The server span's name and attributes at start, made once per method."""
        entry = (f"/{self.service}/{method}", {"rpc.system": "grpc", "rpc.service": self.service, "rpc.method": method})
        if len(self._starts) < 256:  # generic calls may name anything: keep a bound
            self._starts[method] = entry
        return entry

    # the caller (what it is and where from) goes on with the outcome, as the span ends: after the call's
    # answer where the span may end late (otel.end_later)

    def _served(self, span: Any, exc: BaseException | None, carrier: Any, call: Any, end_time: int | None) -> None:
        """End the server span of a gRPC call (``scope``): its caller's application and user agent as sent, its
        address (``call.peer()``), the outcome."""
        otel.finish(span, exc, self._caller_of(carrier.get(APPLICATION_KEY), carrier.get("user-agent"), call.peer()),
                    end_time)

    def _invoked(self, span: Any, exc: BaseException | None, invocation: Invocation, end_time: int | None) -> None:
        """End the server span of a call through the chain (``invoke``): its caller's application and address as the
        transport moved them to ``invocation.context`` (no user agent there), the outcome."""
        context = invocation.context
        if context is not None:
            caller = self._caller_of(context.application, None, context.peer)
        else:
            caller = self._caller_of(invocation.attachments.get(APPLICATION_KEY) or "", None, "")
        otel.finish(span, exc, caller, end_time)

    def _caller_of(self, application: Any, agent: Any, peer: str) -> dict[str, Any]:
        """The caller's attributes, made once per caller (its application header and user agent as sent) and peer
        (a peer is one connection: its address and port stay while it lasts): a copy, the outcome goes in it."""
        key = (application, agent, peer)
        attributes = self._callers.get(key)
        if attributes is None:
            attributes = {}
            caller = _caller_from(application, agent)
            if caller:
                attributes["govrpc.caller"] = caller
            if peer.startswith(("ipv4:", "ipv6:")):
                host, _, port = peer[5:].rpartition(":")
                attributes["net.peer.ip"] = host.strip("[]")
                if port.isdigit():
                    attributes["net.peer.port"] = int(port)
            if len(self._callers) >= 1024:  # peers come and go: start again rather than grow
                self._callers.clear()
            self._callers[key] = attributes
        return dict(attributes)
