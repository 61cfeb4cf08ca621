"""The spans govrpc records when an OpenTelemetry SDK is set: the SDK's decisions, a lighter span.

The SDK's ``Tracer.start_span`` and its ``Span`` cost about 25 µs of CPU per span on a hot
loop here, and about three times that beside a real call
(``python benchmarks/consumer_cost.py --floor``). Every attribute passes a lock and a type
check, the span keeps a lock and bounded containers, and ``end`` copies it for the
processors. govrpc's spans (a CLIENT span per call, a SERVER span per handled call, a
child span per retry) carry attributes govrpc builds itself from known types. So
``LightTracer`` starts them from the same parts of the SDK tracer, with the same decisions:

- the provider's sampler decides (``should_sample`` with the parent context; the SDK's own
  ``ALWAYS_ON`` / ``ALWAYS_OFF``, alone or under ``ParentBased``, decide by the parent alone, so
  their answers are read off a table made from them); a span it drops is the API's
  ``NonRecordingSpan`` carrying the ids, as the SDK makes it;
- the provider's id generator makes the ids (and the W3C random-trace-id flag as the SDK
  sets it); its resource and govrpc's instrumentation scope go on the span;
- the provider's span processors get ``on_start``, ``_on_ending`` and ``on_end`` as for the
  SDK's own spans, so batch, simple and custom processors, and every exporter, see them as
  usual (the calls are planned once per list of processors: none where the SDK's own
  processor does nothing, a sampled span straight into a ``BatchSpanProcessor``'s queue);
  the SDK's own span metrics are recorded;
- a tracer switched off by the provider's tracer configurator starts no span;
- a call's client span that starts a new trace (nothing current in the caller's context), where the
  sampler samples every new trace and no processor reads a span as it starts, is made and its
  ``traceparent`` written at once (``start_new_trace``);
- a server span that the sampler samples whatever its caller's ``traceparent`` holds
  (``ParentBased(ALWAYS_ON)``, the default, with a sampled caller), and that no processor
  reads as it starts, reads that header only when its ids are first read
  (``start_server_span``): by the code in the call, else as it ends, after the answer.

A ``LightSpan`` is a ``ReadableSpan`` (what processors and exporters read) and an API
``Span`` (what code running inside the call may use through ``trace.get_current_span()``:
attributes, events, links, exceptions, status, name). What goes through those public
methods is checked and bounded by the provider's span limits, as the SDK's span does
(``BoundedAttributes``, ``BoundedList``). Only govrpc's own attributes go in unchecked
(``record``, and those at start when the sampler is one of the SDK's, which adds none of
its own), and only while the limits leave room for them. After ``end``, writes are
ignored with the SDK's warning. A tracer that is not the SDK's (another implementation
of the API) is used as it is, and so is the SDK's where the API's span contexts or the SDK's
``ReadableSpan`` are laid out otherwise than the light spans read and make them
(``_known_layout``: checked once, at import).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import traceback
from typing import Any, Callable, Mapping, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace as api
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk import trace as sdk
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import sampling as sdk_sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.span import DEFAULT_TRACE_STATE
from opentelemetry.trace.status import Status, StatusCode

from govrpc.trace import api as otel_api
from govrpc.trace import w3c

try:  # the SDK's span metrics when nothing asked for them: nothing to call
    from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics as _NoOpTracerMetrics
except ImportError:  # pragma: no cover - an SDK laid out otherwise
    _NoOpTracerMetrics = None  # type: ignore[assignment,misc]

__all__ = ["LightSpan", "LightTracer", "light"]

_logger = logging.getLogger(__name__)
_time_ns = time.time_ns
_get_current_span = api.get_current_span
_current_context = otel_api.current_context
_SPAN_KEY = otel_api.SPAN_KEY
_getrandbits = random.getrandbits  # what the SDK's RandomIdGenerator draws from
_fresh_ids = w3c.fresh_ids
_take_ids = w3c._take_ids
_parent_of = otel_api.parent_of
_trace_state_of = otel_api.trace_state_of
_TRACEPARENT, _TRACESTATE = w3c.TRACEPARENT, w3c.TRACESTATE
_SAMPLED_TEXT = frozenset(f"{flags:02x}" for flags in range(256) if flags & 1)  # a traceparent's, sampled
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_DEFAULT = TraceFlags(TraceFlags.DEFAULT)
_RANDOM = getattr(TraceFlags, "RANDOM_TRACE_ID", 0)  # W3C level 2; absent from older APIs
_RECORD_AND_SAMPLE, _DROP = sdk_sampling.Decision.RECORD_AND_SAMPLE, sdk_sampling.Decision.DROP
# made once: a TraceFlags is an object the garbage collector tracks, and a span waiting in a batch
# processor's queue keeps its own alive (each tracked object so kept makes collections come sooner)
_RANDOM_SAMPLED = TraceFlags(_SAMPLED | _RANDOM)
_RANDOM_DEFAULT = TraceFlags(_DEFAULT | _RANDOM)
_RANDOM_SAMPLED_TEXT = f"{_RANDOM_SAMPLED:02x}"
_UNSET = Status(StatusCode.UNSET)
_SAMPLED_BIT = int(TraceFlags.SAMPLED)
_CLIENT, _SERVER = SpanKind.CLIENT, SpanKind.SERVER  # an enum's member read through its class costs 0.1 µs
# what the SDK's own processors do at a span's start and as it ends: nothing (no call is made)
_NOTHING = frozenset(getattr(kind, name) for kind in (sdk.SpanProcessor, BatchSpanProcessor, SimpleSpanProcessor)
                     for name in ("on_start", "_on_ending") if hasattr(kind, name))
_READABLE = frozenset({"_name", "_context", "_kind", "_instrumentation_info", "_instrumentation_scope", "_parent",
                       "_start_time", "_end_time", "_attributes", "_events", "_links", "_resource", "_status"})
_TRUSTED_ATTRIBUTES = 64  # limits at least this wide leave room for govrpc's own attributes unchecked


def _known_layout() -> bool:
    """Whether the API's span contexts are the tuples govrpc reads and makes (``api.TUPLES``) and the
    SDK's ``ReadableSpan`` keeps exactly the fields ``LightSpan`` sets."""
    if not otel_api.TUPLES:
        return False
    readable = sdk.ReadableSpan(name="probe", resource=Resource.get_empty())
    return set(vars(readable)) == _READABLE


_KNOWN_LAYOUT = _known_layout()


def light(tracer: Any) -> Any:
    """A ``LightTracer`` over ``tracer`` when it is the SDK's, else ``tracer`` itself."""
    if type(tracer) is not sdk.Tracer:
        return tracer
    if not _KNOWN_LAYOUT or not all(hasattr(tracer, name) for name in
                                    ("sampler", "id_generator", "span_processor", "resource")):
        return tracer  # an SDK version laid out otherwise: its own spans, unchanged
    return LightTracer(tracer)


Plan = tuple  # (the processors it was made from, on_start calls, _on_ending calls, on_end calls,
#               on_end calls for a sampled span, whether an ended span only goes into batch queues,
#               the SDK BatchProcessors a sampled span goes straight into, when those are all there is)


def _plan(processor: Any) -> Plan:
    """What the provider's span processors do with a span, as the calls to make. Under the SDK's
    ``SynchronousMultiSpanProcessor`` (a provider's own), each member's, in order: no call where the
    member's ``on_start`` or ``_on_ending`` is the SDK's own, which does nothing; a sampled span goes
    straight into a ``BatchSpanProcessor``'s queue (its ``on_end`` checks that it is sampled, then
    queues it): when every member is one, into the queues of their SDK ``BatchProcessor``s as their
    ``emit`` would put it (``LightSpan.end_with``). Another processor is called as it is."""
    if type(processor) is not sdk.SynchronousMultiSpanProcessor or \
            not isinstance(getattr(processor, "_span_processors", None), tuple):
        ending = getattr(processor, "_on_ending", None)
        return (None, (processor.on_start,), (ending,) if ending is not None else (), (processor.on_end,),
                (processor.on_end,), False, None)
    members = processor._span_processors
    starts = tuple(member.on_start for member in members if getattr(type(member), "on_start", None) not in _NOTHING)
    endings = tuple(member._on_ending for member in members
                    if hasattr(member, "_on_ending") and getattr(type(member), "_on_ending", None) not in _NOTHING)
    emits = tuple(_emit_of(member) for member in members)
    # nothing reads an ended span at once: it waits in batch processors' queues (see queued_only)
    batched = not endings and all(type(member) is BatchSpanProcessor and emit is not member.on_end
                                  for member, emit in zip(members, emits))
    batches = tuple(_batch_of(member) for member in members) if batched else None
    if batches is not None and None in batches:
        batches = None
    return (members, starts, endings, tuple(member.on_end for member in members), emits, batched, batches)


def _emit_of(member: Any) -> Callable[[Any], None]:
    """A member's ``on_end`` for a sampled span: a ``BatchSpanProcessor``'s ``emit`` into its queue."""
    if type(member) is BatchSpanProcessor:
        emit = getattr(getattr(member, "_batch_processor", None), "emit", None)
        if emit is not None:
            return emit
    return member.on_end


def _batch_of(member: BatchSpanProcessor) -> Any:
    """The SDK ``BatchProcessor`` under ``member`` when it keeps what ``LightSpan.end_with`` reads to queue
    a span as its ``emit`` does, else None."""
    batch = getattr(member, "_batch_processor", None)
    if type(batch).__name__ == "BatchProcessor" and all(hasattr(batch, name) for name in _BATCH_FIELDS):
        return batch
    return None


_BATCH_FIELDS = ("_shutdown", "_pid", "_queue", "_max_queue_size", "_max_export_batch_size", "_worker_awaken",
                 "emit")
_PID = [os.getpid()]  # this process's, made again in a forked child (a system call less per span)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


_DELEGATES = ("_root", "_remote_parent_sampled", "_remote_parent_not_sampled", "_local_parent_sampled",
              "_local_parent_not_sampled")  # what ParentBased defers to


def _builtin(sampler: Any) -> bool:
    """Whether ``sampler`` is the SDK's own (ParentBased over the SDK's own included): such a sampler
    adds no attributes of its own. Any other may, and those are checked as the SDK checks them."""
    if type(sampler).__module__ != sdk_sampling.__name__:
        return False
    return all(_builtin(getattr(sampler, name)) for name in _DELEGATES if hasattr(sampler, name))


def _static_decisions(sampler: Any) -> dict[Any, sdk_sampling.Decision] | None:
    """The fixed decisions of the SDK's own ``ALWAYS_ON`` / ``ALWAYS_OFF`` samplers, alone or under
    ``ParentBased``, by parent: None (no parent) or (remote, sampled) as (bool, 0 or 1); None for
    any other sampler, which ``should_sample`` then asks per span."""
    def fixed(one: Any) -> sdk_sampling.Decision | None:
        decision = getattr(one, "_decision", None) if type(one) is sdk_sampling.StaticSampler else None
        return decision if isinstance(decision, sdk_sampling.Decision) else None

    if type(sampler) is sdk_sampling.StaticSampler:
        decision = fixed(sampler)
        found: tuple[sdk_sampling.Decision | None, ...] = (decision,) * 5
    elif type(sampler) is sdk_sampling.ParentBased:
        found = tuple(fixed(getattr(sampler, name, None)) for name in _DELEGATES)
    else:
        return None
    if None in found:
        return None
    return dict(zip(_PARENTS, found))  # type: ignore[arg-type]


_PARENTS = (None, (True, 1), (True, 0), (False, 1), (False, 0))  # in _DELEGATES' order
_new_span = object.__new__
_FROM_CONTEXT: Any = object()  # start_span's parent: the span current in its context
_EMPTY = otel_context.Context()


def _with_parent(context: Any, parent: SpanContext) -> Any:
    """``context`` with ``parent`` as its current span, as the API's propagators make it."""
    return otel_context.Context({**context, _SPAN_KEY: NonRecordingSpan(parent)})


class LightTracer:
    """``start_span`` as the SDK tracer's (same sampler, ids, processors, limits), making ``LightSpan``s."""

    __slots__ = ("tracer", "sampler", "ids", "random_ids", "processor", "multi", "plan", "resource", "scope", "info",
                 "limits", "trusted", "configured", "enabled", "metrics", "is_random", "decisions", "fresh", "deferred")

    def __init__(self, tracer: sdk.Tracer) -> None:
        self.tracer = tracer
        self.sampler = tracer.sampler
        self.ids = tracer.id_generator
        self.random_ids = type(self.ids) is RandomIdGenerator  # its ids drawn here, as it draws them
        self.processor = tracer.span_processor  # the provider's: processors added later are in it too
        # what the processors do with a span (_plan), made again when the provider's list changes
        self.multi: Any = self.processor if type(self.processor) is sdk.SynchronousMultiSpanProcessor else None
        self.plan = _plan(self.processor)
        self.resource = tracer.resource
        self.info = tracer.instrumentation_info
        self.scope = getattr(tracer, "_instrumentation_scope", None)
        self.limits: sdk.SpanLimits = getattr(tracer, "_span_limits", None) or sdk.SpanLimits()
        most, longest = self.limits.max_span_attributes, self.limits.max_span_attribute_length
        # unchecked only what govrpc built: the SDK's own samplers hand back the attributes they were given
        self.trusted = (most is None or most >= _TRUSTED_ATTRIBUTES) and longest is None and _builtin(self.sampler)
        # ALWAYS_ON and the default ParentBased(ALWAYS_ON) decide by the parent alone: read off a table
        self.decisions = _static_decisions(self.sampler)
        # the provider's tracer configurator switches a tracer off by its config (what _is_enabled reads)
        self.configured = hasattr(getattr(tracer, "_tracer_config", None), "is_enabled")
        self.enabled: Callable[[], bool] | None = getattr(tracer, "_is_enabled", None)
        metrics = getattr(tracer, "_tracer_metrics", None)
        # the SDK's span metrics, unless they are its no-op ones (its internal metrics are not enabled)
        self.metrics: Callable[..., Callable[[], None]] | None = None if type(metrics) is _NoOpTracerMetrics \
            else getattr(metrics, "start_span", None)
        self.is_random: Callable[[], bool] | None = getattr(self.ids, "is_trace_id_random", None) if _RANDOM else None
        # a new trace's first span is sampled, its ids are random and nothing reads it as it starts (no sampler
        # call, no metrics): start_new_trace makes it without asking
        decisions = self.decisions
        self.fresh = decisions is not None and decisions[None] is _RECORD_AND_SAMPLE and self.random_ids and \
            self.trusted and self.metrics is None and (self.configured or self.enabled is None)
        # and a server span whose parent is a sampled caller's, or none (a malformed header: a fresh trace), is
        # sampled either way: it reads its caller's header only when its ids are read (start_server_span)
        self.deferred = self.fresh and decisions[True, 1] is _RECORD_AND_SAMPLE  # type: ignore[index]

    def queued_only(self) -> bool:
        """Whether the spans ended now only wait in ``BatchSpanProcessor`` queues (no processor reads
        one as it ends), so that ending one a little later (``govrpc.rpc.executor.after_answer``)
        changes nothing any processor or exporter sees but when."""
        plan = self.plan
        if self.multi is not None and self.multi._span_processors is not plan[0]:
            plan = self.replan()
        return plan[5]

    def replan(self) -> Plan:
        """The processors' plan again: the provider's list of processors changed."""
        self.plan = _plan(self.processor)
        return self.plan

    def start_new_trace(self, name: str, context: Any, attributes: Mapping[str, Any],
                        carrier: dict[str, str]) -> api.Span | None:
        """A call's CLIENT span when ``context`` (the caller's) is empty, so the call starts a new trace, its
        ``traceparent`` written into ``carrier`` (gRPC metadata): what ``start_span(name, context, CLIENT,
        attributes)`` and ``otel.inject`` make, without asking the sampler, when it samples every new trace
        (``fresh``) and no processor reads a span as it starts. Else None: ``start_span`` decides."""
        if context or not self.fresh:
            return None
        plan = self.plan
        if self.multi is not None and self.multi._span_processors is not plan[0]:
            plan = self.replan()
        if plan[1] or (self.configured and not self.tracer._tracer_config.is_enabled):
            return None
        try:  # w3c.fresh_ids, written out: a frame less per call
            trace_id, span_id, header = _take_ids()
        except IndexError:
            trace_id, span_id, header = _fresh_ids()
        span = _new_span(LightSpan)
        span._tracer = self
        span._name = name
        span._kind = _CLIENT
        span._start_time = _time_ns()
        span._trace_id, span._span_id, span._flags, span._state = trace_id, span_id, _RANDOM_SAMPLED, \
            DEFAULT_TRACE_STATE
        span._header = header
        span._attributes = dict(attributes) if attributes else {}
        carrier[_TRACEPARENT] = header + _RANDOM_SAMPLED_TEXT  # a new trace: no tracestate, and no baggage
        return span

    def start_server_span(self, name: str, context: Any, attributes: Mapping[str, Any],
                          carrier: Mapping[str, Any]) -> api.Span:
        """``start_span(name, context, SERVER, attributes, parent=otel.remote_parent(carrier))``: a call's
        server span, the child of the span context its caller sent in ``carrier`` (gRPC metadata).

        When the span is sampled whatever the ``traceparent`` holds (its flags say sampled, a malformed
        one would start a sampled fresh trace: ``deferred``) and no processor reads a span as it starts,
        the header is parsed only when the span's ids are first read (``LightSpan._resolve``): by the
        code in the call, or as the span ends, which a server span does after its call's answer
        (``otel.end_later``)."""
        header = carrier.get(_TRACEPARENT)
        if self.deferred and type(header) is str and header[53:55] in _SAMPLED_TEXT:
            plan = self.plan
            if self.multi is not None and self.multi._span_processors is not plan[0]:
                plan = self.replan()
            if not plan[1] and (not self.configured or self.tracer._tracer_config.is_enabled):
                span = _new_span(LightSpan)
                span._tracer = self
                span._name = name
                span._kind = _SERVER
                span._start_time = _time_ns()
                span._queued = plan[5]
                span._traceparent = header
                state = carrier.get(_TRACESTATE)
                if state is not None:  # read now: it may log, and a log record may read this span's ids
                    span._tracestate = _trace_state_of(state)
                span._attributes = dict(attributes) if attributes else {}
                return span
        return self.start_span(name, context, _SERVER, attributes, parent=_parent_of(header,
                                                                                            carrier.get(_TRACESTATE)))

    def start_span(self, name: str, context: Any = None, kind: SpanKind = SpanKind.INTERNAL,
                   attributes: Mapping[str, Any] | None = None, links: Sequence[Link] = (),
                   start_time: int | None = None, record_exception: bool = True,
                   set_status_on_exception: bool = True, *, parent: Any = _FROM_CONTEXT) -> api.Span:
        """The SDK tracer's ``start_span``; with ``parent`` (govrpc's server span: the span context a
        caller sent, or None for a fresh trace) that span context is the parent, and ``context``, if
        any, holds the rest of the caller's context (baggage), made the parent's only for what reads it."""
        remote = parent is not _FROM_CONTEXT  # context: the caller's, less its span
        if not remote:
            holder = (_current_context() if context is None else context).get(_SPAN_KEY)
            if holder is None:  # no current span: a new trace
                parent = None
            elif type(holder) in _HOLDERS:  # its context, read directly
                parent = holder._context
            else:
                parent = _get_current_span(context).get_span_context()
        elif context is None:  # not the current one: a server span's parent is only what the caller sent
            context = _EMPTY
        if self.configured:
            if not self.tracer._tracer_config.is_enabled:
                return NonRecordingSpan(parent)  # type: ignore[arg-type]
        elif self.enabled is not None and not self.enabled():
            return NonRecordingSpan(parent)  # type: ignore[arg-type]
        # a span context is the tuple (trace id, span id, remote, flags, state, valid): api.TUPLES
        if parent is not None and not parent[5]:
            parent = None
        decisions = self.decisions
        if parent is not None:
            trace_id = parent[0]
            random_id = parent[3] & _RANDOM
            if decisions is not None:  # what the static sampler's should_sample answers, by (remote, sampled)
                decision, trace_state = decisions[parent[2], parent[3] & _SAMPLED_BIT], parent[4]
        else:
            if self.random_ids:  # a new trace: both ids and the traceparent's start from a batch
                trace_id, span_id, header = _fresh_ids()
                random_id = _RANDOM
            else:
                trace_id = self.ids.generate_trace_id()
                random_id = self.is_random is not None and self.is_random()
            if decisions is not None:
                decision, trace_state = decisions[None], DEFAULT_TRACE_STATE
        if decisions is None:
            if remote and parent is not None:  # the sampler reads the parent from the context
                context, remote = _with_parent(context, parent), False
            result = self.sampler.should_sample(context, trace_id, name, kind, attributes, links or ())
            decision, trace_state, attributes = result.decision, result.trace_state, result.attributes
            if trace_state is None:
                trace_state = DEFAULT_TRACE_STATE
            elif trace_state:  # the sampler's own: the traceparent is written whole, with it
                header = None
        sampled = decision is _RECORD_AND_SAMPLE  # Decision.is_sampled, is_recording: its three members
        if random_id:
            flags = _RANDOM_SAMPLED if sampled else _RANDOM_DEFAULT
        else:
            flags = _SAMPLED if sampled else _DEFAULT
        if parent is not None or not self.random_ids:
            header = None
            if self.random_ids:
                span_id = _getrandbits(64)
                while not span_id:
                    span_id = _getrandbits(64)
            else:
                span_id = self.ids.generate_span_id()
        end_metrics = self.metrics(parent, decision) if self.metrics is not None else None
        if decision is _DROP:
            return NonRecordingSpan(SpanContext(trace_id, span_id, False, flags, trace_state))
        # the span, made here (a frame less than a constructor): what it keeps beyond its class's defaults
        span = _new_span(LightSpan)
        span._tracer = self
        span._name = name
        span._kind = kind
        span._start_time = start_time if start_time is not None else _time_ns()
        # its span context and its parent's kept as their parts, made when read (``_context``, ``_parent``):
        # a span context is an object the garbage collector tracks, and a span waits in a batch
        # processor's queue (each tracked object so kept makes collections come sooner)
        span._trace_id, span._span_id, span._flags, span._state = trace_id, span_id, flags, trace_state
        if header is not None:
            span._header = header
        if parent is not None:  # same trace
            span._parent_id, span._parent_remote, span._parent_flags, span._parent_state = \
                parent[1], parent[2], parent[3], parent[4]
        if self.trusted:
            span._attributes = dict(attributes) if attributes else {}
        else:
            limits = self.limits
            span._attributes = BoundedAttributes(limits.max_span_attributes, attributes, immutable=False,
                                                 max_value_len=limits.max_span_attribute_length)
        if links:
            span._links = span._valid_links(links)
        if end_metrics is not None:
            span._end_metrics = end_metrics
        if not record_exception:
            span._record_exception = False
        if not set_status_on_exception:
            span._set_status_on_exception = False
        plan = self.plan
        if self.multi is not None and self.multi._span_processors is not plan[0]:
            plan = self.replan()
        span._queued = plan[5]
        if plan[1]:
            if remote and parent is not None:  # as the sampler, on_start reads the parent from the context
                context = _with_parent(context, parent)
            for on_start in plan[1]:  # typed as the SDK's Span: a ReadableSpan and an API Span
                on_start(span, parent_context=context)
        return span


class LightSpan(api.Span, sdk.ReadableSpan):
    """A recording span: readable by processors and exporters, writable by the code in the call.
    Made by ``LightTracer.start_span`` only (it sets the fields, without a constructor)."""

    # what a span keeps until it writes its own (the ReadableSpan's fields, _known_layout)
    _end_time: int | None = None
    _status = _UNSET
    _events: Any = ()
    _links: Any = ()
    _end_metrics: Callable[[], None] | None = None
    _record_exception = True
    _set_status_on_exception = True

    _made: SpanContext | None = None
    # whether, as it started, nothing read a span as it ends but batch processors' queues (queued_only): one that
    # ends after its call's answer (otel.end_later) changes nothing a processor sees but when
    _queued = False
    _header: str | None = None  # a new trace's: its traceparent less the flags (w3c.fresh_ids)
    _parent_id: int | None = None  # a root span's
    _parent_made: SpanContext | None = None
    # a deferred server span's (LightTracer.start_server_span) until its ids are read (_resolve): its caller's
    _traceparent: str | None = None
    _tracestate: Any = DEFAULT_TRACE_STATE  # its caller's, read as it starts

    def _resolve(self) -> None:
        """A deferred server span's ids and its parent, from its caller's ``traceparent`` (what reads them
        calls this first while ``_traceparent`` is set): the caller's span context as its parent, or, if
        the header is malformed, a fresh trace's root (what ``start_span`` would make), and a span id of
        its own. One thread makes them (the ids are random); those reading at once wait for them. Nothing
        here logs (the trace state was read as the span started): a log record may read these ids."""
        with _RESOLVING:
            header = self._traceparent
            if header is None:  # made meanwhile
                return
            parent = _parent_of(header, None)
            if parent is not None:
                state = self._tracestate
                self._parent_id, self._parent_remote, self._parent_flags, self._parent_state = \
                    parent[1], True, parent[3], state
                self._trace_id, self._state = parent[0], state
                self._flags = _RANDOM_SAMPLED if parent[3] & _RANDOM else _SAMPLED
            else:
                trace_id = _getrandbits(128)
                while not trace_id:
                    trace_id = _getrandbits(128)
                self._trace_id, self._state, self._flags = trace_id, DEFAULT_TRACE_STATE, _RANDOM_SAMPLED
            span_id = _getrandbits(64)
            while not span_id:
                span_id = _getrandbits(64)
            self._span_id = span_id
            self._traceparent = None

    @property
    def _context(self) -> SpanContext:  # type: ignore[override]
        made = self._made
        if made is None:
            if self._traceparent is not None:
                self._resolve()
            made = self._made = SpanContext(self._trace_id, self._span_id, False, self._flags, self._state)
        return made

    @property
    def _parent(self) -> SpanContext | None:  # type: ignore[override]
        if self._traceparent is not None:
            self._resolve()
        if self._parent_id is None:
            return None
        made = self._parent_made
        if made is None:
            made = self._parent_made = SpanContext(self._trace_id, self._parent_id, self._parent_remote,
                                                   self._parent_flags, self._parent_state)
        return made

    # the tracer's, read through it: an exporter reads them once per span
    @property
    def _resource(self) -> Any:  # type: ignore[override]
        return self._tracer.resource

    @property
    def _instrumentation_info(self) -> Any:  # type: ignore[override]
        return self._tracer.info

    @property
    def _instrumentation_scope(self) -> Any:  # type: ignore[override]
        return self._tracer.scope

    # -- what govrpc writes: attributes it built from known types ------------------------------------

    def record(self, attributes: Mapping[str, Any]) -> None:
        """govrpc's own attributes (strings, numbers, tuples of strings): unchecked while the limits
        leave room (``LightTracer.trusted``), else as ``set_attributes``."""
        if self._end_time is not None:
            _logger.warning("Setting attribute on ended span.")
        elif type(self._attributes) is dict:
            self._attributes.update(attributes)
        else:  # checked and bounded: the limits are narrow, or code in the call has written too
            for key, value in attributes.items():
                self._attributes[key] = value

    # -- the API span ---------------------------------------------------------------------------------

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if self._end_time is not None:
            _logger.warning("Setting attribute on ended span.")
            return
        checked = self._checked()
        for key, value in attributes.items():
            checked[key] = value

    def set_attribute(self, key: str, value: Any) -> None:
        self.set_attributes({key: value})

    def _checked(self) -> BoundedAttributes:
        """The attributes as the SDK keeps them (checked and bounded), from the first public write on."""
        attributes = self._attributes
        if type(attributes) is dict:
            limits = self._tracer.limits
            attributes = self._attributes = BoundedAttributes(
                limits.max_span_attributes, attributes, immutable=False,
                max_value_len=limits.max_span_attribute_length)
        return attributes

    def _ended(self, what: str) -> bool:
        if self._end_time is None:
            return False
        _logger.warning("Tried calling %s on an ended span.", what)
        return True

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None,
                  timestamp: int | None = None) -> None:
        if self._ended("add_event"):
            return
        limits = self._tracer.limits
        if type(self._events) is not BoundedList:
            self._events = BoundedList(limits.max_events)
        self._events.append(sdk.Event(name, BoundedAttributes(limits.max_event_attributes, attributes,
                                                              max_value_len=limits.max_attribute_length,
                                                              immutable=True),
                                      timestamp if timestamp is not None else _time_ns()))

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        if self._ended("add_link"):
            return
        if type(self._links) is not BoundedList:
            self._links = BoundedList.from_seq(self._tracer.limits.max_links, self._links)
        self._links.extend(self._valid_links((Link(context, attributes),)))

    def _valid_links(self, links: Sequence[Link]) -> BoundedList:
        """Links with a valid context or attributes, their attributes bounded (the SDK's rule)."""
        limits = self._tracer.limits
        kept = [Link(link.context, BoundedAttributes(limits.max_link_attributes, link.attributes,
                                                     max_value_len=limits.max_attribute_length, immutable=True))
                for link in links if link is not None and (link.context.is_valid or link.attributes)]
        return BoundedList.from_seq(limits.max_links, kept)

    def update_name(self, name: str) -> None:
        if not self._ended("update_name"):
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """As the SDK: an OK status is final, UNSET is never set, ``Status`` or ``(StatusCode, description)``."""
        if self._ended("set_status") or self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            if status.status_code is StatusCode.UNSET:
                return
            if description is not None:
                _logger.warning("Description %s ignored. Use either `Status` or `(StatusCode, Description)`",
                                description)
            self._status = status
        elif isinstance(status, StatusCode) and status is not StatusCode.UNSET:
            self._status = Status(status, description)

    def record_exception(self, exception: BaseException, attributes: Mapping[str, Any] | None = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        """An ``exception`` event with OpenTelemetry's exception attributes."""
        kind = type(exception)
        module = kind.__module__
        recorded: dict[str, Any] = {
            "exception.type": f"{module}.{kind.__qualname__}" if module and module != "builtins" else kind.__qualname__,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(kind, exception, exception.__traceback__)),
            "exception.escaped": str(escaped)}
        if attributes:
            recorded.update(attributes)
        self.add_event("exception", recorded, timestamp)

    def end(self, end_time: int | None = None) -> None:
        self.end_with(None, end_time)

    def end_with(self, attributes: Mapping[str, Any] | None, end_time: int | None = None) -> None:
        """``record(attributes)`` (govrpc's outcome of a call) and ``end()``, in one step."""
        if self._end_time is not None:
            _logger.warning("Calling end() on an ended span.")
            return
        if attributes is not None:
            if type(self._attributes) is dict:
                self._attributes.update(attributes)
            else:
                self.record(attributes)
        self._end_time = end_time if end_time is not None else _time_ns()
        if self._end_metrics is not None:
            self._end_metrics()
        tracer = self._tracer
        plan = tracer.plan
        if tracer.multi is not None and tracer.multi._span_processors is not plan[0]:
            plan = tracer.replan()
        for on_ending in plan[2]:
            on_ending(self)
        if self._traceparent is not None:  # a deferred server span: its ids now, not in the exporter's thread
            self._resolve()
        # ended, so no longer written: the processors read this span itself
        if not self._flags & _SAMPLED_BIT:
            for on_end in plan[3]:
                on_end(self)
        elif plan[6] is None:
            for on_end in plan[4]:
                on_end(self)
        else:
            # into each BatchProcessor's queue as its emit puts it, the process's id read from _PID (not asked
            # of the system per span); the unusual (shut down, forked, a full queue) is emit's to handle
            for batch in plan[6]:
                queue = batch._queue
                if batch._shutdown or batch._pid != _PID[0] or len(queue) >= batch._max_queue_size:
                    batch.emit(self)
                    continue
                queue.appendleft(self)
                if len(queue) >= batch._max_export_batch_size and not batch._worker_awaken.is_set():
                    batch._worker_awaken.set()

    def __exit__(self, exc_type: Any, exc_val: BaseException | None, exc_tb: Any) -> None:
        """As the SDK's span used as a context manager: an escaping exception is recorded, the status set."""
        if exc_val is not None and self.is_recording():
            if self._record_exception:
                self.record_exception(exc_val, escaped=True)
            if self._set_status_on_exception:
                self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        self.end()

    def __repr__(self) -> str:
        return f'LightSpan(name="{self._name}", context={self._context})'


_RESOLVING = threading.Lock()  # LightSpan._resolve
_HOLDERS = frozenset({LightSpan, NonRecordingSpan})  # the current spans whose context start_span reads directly
