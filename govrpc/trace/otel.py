"""The OpenTelemetry side of tracing, used only when an SDK ``TracerProvider`` is set.

``sdk_tracer()`` answers "does a real SDK record spans here?" with one call and a
type check (the API's default provider is a proxy that records nothing); without
``opentelemetry-api`` installed it is always None and govrpc propagates on its own
(``govrpc.trace.w3c``). Spans are named and attributed as the official gRPC
instrumentation names them (``/pkg.Service/Method``, ``rpc.system``,
``rpc.service``, ``rpc.method``, ``rpc.grpc.status_code``), so the dashboards and
queries written for it keep working.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

from govrpc.context import CallRecorder
from govrpc.exceptions import GovRpcError
from govrpc.rpc.executor import after_answer as _after_answer
from govrpc.trace import w3c

__all__ = ["STATUS_CODES", "SpanRecorder", "available", "baggage_of", "extract", "end_later", "finish",
           "inject", "remote_parent", "sdk_tracer", "status_code", "with_parent"]

try:  # the otel extra; without it govrpc still propagates W3C context itself
    from opentelemetry import baggage as _baggage
    from opentelemetry import context as otel_context
    from opentelemetry import trace as otel_trace
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    from opentelemetry.trace.status import Status, StatusCode
except ImportError:  # pragma: no cover - exercised on installs without the extra
    otel_trace = None  # type: ignore[assignment]

available = otel_trace is not None

# gRPC's status codes by name, as numbers (the value of rpc.grpc.status_code)
STATUS_CODES = {name: number for number, name in enumerate((
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"))}

REFUSALS = frozenset({"RateLimitedError", "CircuitOpenError"})
"""Errors that mean a govrpc stage refused the call (limiter, breaker): recorded as an event."""

_time_ns = time.time_ns
# the last (SDK provider, govrpc's tracer of it): a tuple read and replaced whole; the filters read it too
KNOWN: list[tuple[Any, Any]] = [(None, None)]
_UNKNOWN = object()


def sdk_tracer() -> Any:
    """govrpc's tracer from the SDK provider in force, or None when nothing records.

    Runs on every call: it reads the API's global provider directly (``get_tracer_provider``
    also consults the environment each time: 1.4 µs), falling back to the public call only
    when a provider is set (or the private global is gone in some later API version).
    """
    if otel_trace is None:
        return None
    provider = getattr(otel_trace, "_TRACER_PROVIDER", _UNKNOWN)
    if provider is None:  # nothing set: the API would hand out its proxy, which records nothing
        return None
    known = KNOWN[0]
    if provider is known[0]:
        return known[1]
    provider = otel_trace.get_tracer_provider()
    if provider is known[0]:
        return known[1]
    if isinstance(provider, (otel_trace.ProxyTracerProvider, otel_trace.NoOpTracerProvider)):
        return None
    from govrpc import __version__

    tracer = _light(provider.get_tracer("govrpc", __version__))
    KNOWN[0] = (provider, tracer)
    return tracer


def _light(tracer: Any) -> Any:
    """govrpc's light spans over an SDK tracer (``govrpc.trace.spans``), or ``tracer`` itself."""
    global LightSpan, LightTracer
    try:
        from govrpc.trace import spans
    except ImportError:  # the API without the SDK: a provider of some other implementation
        return tracer
    LightSpan, LightTracer = spans.LightSpan, spans.LightTracer
    return spans.light(tracer)


class _NoLightSpan:  # until an SDK tracer is wrapped, no span is a LightSpan
    pass


# govrpc.trace.spans' classes, once an SDK tracer is wrapped (until then nothing is of either type)
LightSpan: Any = _NoLightSpan
LightTracer: Any = _NoLightSpan


def status_code(exc: BaseException | None) -> int:
    """``rpc.grpc.status_code`` for an outcome: 0, a govrpc error's code, 2 (UNKNOWN) for a business error."""
    if exc is None:
        return 0
    if isinstance(exc, GovRpcError):
        return STATUS_CODES.get(exc.code, 2)
    return 2


if available:
    from govrpc.trace.api import (DEFAULT_TRACE_STATE, SPAN_KEY, TUPLES, Context, NonRecordingSpan, SpanContext,
                                  attach, current_context, detach, parent_of)


def inject(span: Any, ctx: Any, carrier: dict[str, str]) -> None:
    """Write W3C ``traceparent`` (and ``tracestate``, ``baggage`` when there are any) for ``span``
    as the caller (a light span's own parts, else its span context's)."""
    if type(span) is LightSpan:
        header = span._header
        if header is not None:  # a new trace's first span: its ids were drawn with their header
            carrier[w3c.TRACEPARENT] = header + _FLAG_TEXT[span._flags]
            if ctx.get(_BAGGAGE_KEY) if _BAGGAGE_KEY is not None else _baggage.get_all(ctx):
                _baggage_propagator.inject(carrier, ctx)  # type: ignore[union-attr]
            return  # and no tracestate: a new trace starts with none
        if span._traceparent is not None:  # a deferred server span's ids, not yet read from its caller's
            span._resolve()
        trace_id, span_id, flags, state = span._trace_id, span._span_id, span._flags, span._state
    elif TUPLES:
        span_context = span.get_span_context()
        trace_id, span_id, flags, state = span_context[0], span_context[1], span_context[3], span_context[4]
    else:  # pragma: no cover - an API laid out otherwise
        span_context = span.get_span_context()
        trace_id, span_id = span_context.trace_id, span_context.span_id
        flags, state = span_context.trace_flags, span_context.trace_state
    carrier[w3c.TRACEPARENT] = f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"
    if state is not DEFAULT_TRACE_STATE and state:
        carrier[w3c.TRACESTATE] = state.to_header()
    if ctx.get(_BAGGAGE_KEY) if _BAGGAGE_KEY is not None else _baggage.get_all(ctx):  # get_all copies
        _baggage_propagator.inject(carrier, ctx)  # type: ignore[union-attr]


_FLAG_TEXT = {flags: f"{flags:02x}" for flags in range(256)}  # a TraceFlags is an int: found by value
_tracecontext = TraceContextTextMapPropagator() if available else None
_baggage_propagator = W3CBaggagePropagator() if available else None
_BAGGAGE_KEY = getattr(_baggage, "_BAGGAGE_KEY", None) if available else None
_EMPTY = otel_context.Context() if available else None


def remote_parent(carrier: Mapping[str, str]) -> Any:
    """The caller's span context from gRPC metadata (``traceparent``, ``tracestate``), or None when
    it sent none or an invalid one (a fresh trace): ``parent_of`` the two headers."""
    return parent_of(carrier.get(w3c.TRACEPARENT), carrier.get(w3c.TRACESTATE))


def baggage_of(carrier: Mapping[str, str]) -> Any:
    """The caller's ``baggage`` as an OpenTelemetry context (empty without one)."""
    if w3c.BAGGAGE in carrier:
        return _baggage_propagator.extract(carrier, context=_EMPTY)  # type: ignore[union-attr]
    return _EMPTY


def with_parent(ctx: Any, parent: Any) -> Any:
    """``ctx`` with the remote ``parent`` span context as its current span (what a tracer reads)."""
    return ctx if parent is None else Context({**ctx, SPAN_KEY: NonRecordingSpan(parent)})


def extract(carrier: Mapping[str, str]) -> Any:
    """The caller's context from gRPC metadata; an invalid ``traceparent`` gives one without a span
    (fresh trace), the call goes on."""
    return with_parent(baggage_of(carrier), remote_parent(carrier))


def finish(span: Any, exc: BaseException | None, attributes: dict[str, Any] | None = None,
           end_time: int | None = None) -> None:
    """Set the outcome on ``span`` the way the gRPC instrumentation does (with ``attributes``, in
    one batch: each SDK call takes the span's lock and checks every value again), and end it
    (at ``end_time``, else now)."""
    if exc is None:
        if attributes is None:
            attributes = _OK
        else:
            attributes["rpc.grpc.status_code"] = 0
        if type(span) is LightSpan:  # built here from known types: no check per value, and ended with them
            span.end_with(attributes, end_time)
        else:
            span.set_attributes(attributes)
            span.end(end_time)
        return
    if attributes is None:
        attributes = {}
    attributes["rpc.grpc.status_code"] = status_code(exc)
    if type(span) is LightSpan:
        span.record(attributes)
    else:
        span.set_attributes(attributes)
    name = type(exc).__name__
    if name in REFUSALS:
        span.add_event("govrpc.refused", {"govrpc.error": name, "govrpc.reason": str(exc)[:500]})
        span.set_attribute("govrpc.refused", name)
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{name}: {str(exc)[:200]}"))
    span.end(end_time)


def end_later(span: Any, end: Callable[..., None], *args: Any) -> None:
    """``end(*args, end_time)``, which ends ``span``: once the call being served has answered
    (``after_answer``), with the end time of now, when nothing read a span as it ends as this one
    started (``LightTracer.queued_only``): a server span then costs its call's answer no wait. Else
    at once, ``end_time`` None."""
    if type(span) is LightSpan and span._queued and _after_answer(end, *args, _time_ns()):
        return
    end(*args, None)


_OK = {"rpc.grpc.status_code": 0}  # read, never kept: a span copies what it records


_chosen: dict[tuple[str, str], dict[str, Any]] = {}


def _choice(balancer: str, address: str) -> dict[str, Any]:
    """The attributes of a provider chosen by ``balancer``: ``govrpc.loadbalance``, ``govrpc.provider``,
    ``net.peer.name`` and ``net.peer.port`` of its ``host:port`` (kept: providers are few)."""
    choice = _chosen.get((balancer, address))
    if choice is None:
        host, _, port = address.rpartition(":")
        choice = {"govrpc.loadbalance": balancer, "govrpc.provider": address, "net.peer.name": host}
        if port.isdigit():
            choice["net.peer.port"] = int(port)
        if len(_chosen) >= 1024:
            _chosen.clear()
        _chosen[(balancer, address)] = choice
    return choice


class SpanRecorder(CallRecorder):
    """What the cluster and router decided for a call, written on its span.

    The first attempt's decisions go straight into a light span's attributes (govrpc's own
    values, unchecked: ``LightSpan.record``), or are kept as plain values and set with the
    outcome in one batch (``finish``) on any other span; only a retry makes more: an event on
    the call's span and a child span per further attempt, which carries that attempt's listing
    and choice.
    """

    __slots__ = ("span", "tracer", "name", "attributes", "child", "decided", "shared")

    def __init__(self, span: Any, tracer: Any, name: str, attributes: dict[str, Any]) -> None:
        self.span = span
        self.tracer = tracer
        self.name = name
        self.attributes = attributes
        self.child: Any = None
        # the first attempt's decisions (none listed: refused before the cluster): the light span's own attributes
        # while they are a plain dict, else kept for the end
        self.shared = type(span) is LightSpan and type(span._attributes) is dict
        if self.shared:
            self.decided: dict[str, Any] = span._attributes
            self.decided["govrpc.attempts"] = 1
        else:
            self.decided = {"govrpc.attempts": 1}

    def listed(self, invocation: object, total: int, routed: int, routers: tuple[str, ...]) -> None:
        decided = self.decided if self.child is None else {}
        decided["govrpc.providers.total"] = total
        decided["govrpc.providers.routed"] = routed
        decided["govrpc.routers"] = routers
        if self.child is not None:
            self.child.set_attributes(decided)

    def chose(self, invocation: object, balancer: str, address: str) -> None:
        if address:
            choice = _chosen.get((balancer, address)) or _choice(balancer, address)
            if self.child is None:
                self.decided.update(choice)
            else:
                self.child.set_attributes(choice)

    def retry(self, invocation: Any, attempt: int, failed: str, error: BaseException) -> None:
        self.span.add_event("govrpc.retry", {"govrpc.attempt": attempt, "govrpc.failed_provider": failed,
                                             "govrpc.error": type(error).__name__,
                                             "govrpc.reason": str(error)[:500]})
        if self.child is not None:
            finish(self.child, error)
        self.decided["govrpc.attempts"] = attempt
        parent = otel_trace.set_span_in_context(self.span)
        self.child = self.tracer.start_span(self.name, context=parent, kind=otel_trace.SpanKind.CLIENT,
                                            attributes={**self.attributes, "govrpc.attempt": attempt})
        if invocation.attachments is not None:  # the next attempt's server span is this child's
            inject(self.child, parent, invocation.attachments)

    def event(self, name: str, attributes: dict[str, object]) -> None:
        self.span.add_event(name, attributes)

    def close(self, exc: BaseException | None) -> None:
        """End the retry's child span, if any, and the call's span with the decisions and ``exc``."""
        span = self.span
        decided = self.decided
        if self.shared and decided is span._attributes:  # the decisions are on the span already
            if exc is None and self.child is None and span._end_time is None:  # finish, written out: the usual case
                decided["rpc.grpc.status_code"] = 0
                span.end_with(None)
                return
            decided = {}
        elif self.shared:  # code in the call wrote on the span (its attributes are checked since): the decisions again
            decided = {key: value for key, value in decided.items() if key not in self.attributes}
        if self.child is not None:
            finish(self.child, exc)
            self.child = None
        finish(span, exc, decided)
