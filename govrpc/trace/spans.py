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
  usual; the SDK's own span metrics are recorded;
- a tracer switched off by the provider's tracer configurator starts no span.

A ``LightSpan`` is a ``ReadableSpan`` (what processors and exporters read) and an API
``Span`` (what code running inside the call may use through ``trace.get_current_span()``:
attributes, events, links, exceptions, status, name). What goes through those public
methods is checked and bounded by the provider's span limits, as the SDK's span does
(``BoundedAttributes``, ``BoundedList``). Only govrpc's own attributes go in unchecked
(``record``, and those at start when the sampler is one of the SDK's, which adds none of
its own), and only while the limits leave room for them. After ``end``, writes are
ignored with the SDK's warning. A tracer that is not the SDK's (another implementation
of the API) is used as it is.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any, Callable, Mapping, Sequence

from opentelemetry import trace as api
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk import trace as sdk
from opentelemetry.sdk.trace import sampling as sdk_sampling
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

try:  # the SDK's span metrics when nothing asked for them: nothing to call
    from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics as _NoOpTracerMetrics
except ImportError:  # pragma: no cover - an SDK laid out otherwise
    _NoOpTracerMetrics = None  # type: ignore[assignment,misc]

__all__ = ["LightSpan", "LightTracer", "light"]

_logger = logging.getLogger(__name__)
_time_ns = time.time_ns
_get_current_span = api.get_current_span
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_DEFAULT = TraceFlags(TraceFlags.DEFAULT)
_RANDOM = getattr(TraceFlags, "RANDOM_TRACE_ID", 0)  # W3C level 2; absent from older APIs
_RECORD_AND_SAMPLE, _DROP = sdk_sampling.Decision.RECORD_AND_SAMPLE, sdk_sampling.Decision.DROP
# made once: a TraceFlags is an object the garbage collector tracks, and a span waiting in a batch
# processor's queue keeps its own alive (each tracked object so kept makes collections come sooner)
_RANDOM_SAMPLED = TraceFlags(_SAMPLED | _RANDOM)
_RANDOM_DEFAULT = TraceFlags(_DEFAULT | _RANDOM)
_UNSET = Status(StatusCode.UNSET)
_TRUSTED_ATTRIBUTES = 64  # limits at least this wide leave room for govrpc's own attributes unchecked


def light(tracer: Any) -> Any:
    """A ``LightTracer`` over ``tracer`` when it is the SDK's, else ``tracer`` itself."""
    if type(tracer) is not sdk.Tracer:
        return tracer
    if not all(hasattr(tracer, name) for name in ("sampler", "id_generator", "span_processor", "resource")):
        return tracer  # an SDK version laid out otherwise: its own spans, unchanged
    return LightTracer(tracer)


_DELEGATES = ("_root", "_remote_parent_sampled", "_remote_parent_not_sampled", "_local_parent_sampled",
              "_local_parent_not_sampled")  # what ParentBased defers to


def _builtin(sampler: Any) -> bool:
    """Whether ``sampler`` is the SDK's own (ParentBased over the SDK's own included): such a sampler
    adds no attributes of its own. Any other may, and those are checked as the SDK checks them."""
    if type(sampler).__module__ != sdk_sampling.__name__:
        return False
    return all(_builtin(getattr(sampler, name)) for name in _DELEGATES if hasattr(sampler, name))


def _static_decisions(sampler: Any) -> tuple[sdk_sampling.Decision, ...] | None:
    """The fixed decisions of the SDK's own ``ALWAYS_ON`` / ``ALWAYS_OFF`` samplers, alone or under
    ``ParentBased``, by parent (none, remote sampled, remote not sampled, local sampled, local not
    sampled); None for any other sampler, which ``should_sample`` then asks per span."""
    def fixed(one: Any) -> sdk_sampling.Decision | None:
        decision = getattr(one, "_decision", None) if type(one) is sdk_sampling.StaticSampler else None
        return decision if isinstance(decision, sdk_sampling.Decision) else None

    if type(sampler) is sdk_sampling.StaticSampler:
        decision = fixed(sampler)
        return None if decision is None else (decision,) * 5
    if type(sampler) is sdk_sampling.ParentBased:
        decisions = tuple(fixed(getattr(sampler, name, None)) for name in _DELEGATES)
        return None if None in decisions else decisions  # type: ignore[return-value]
    return None


class LightTracer:
    """``start_span`` as the SDK tracer's (same sampler, ids, processors, limits), making ``LightSpan``s."""

    __slots__ = ("tracer", "sampler", "ids", "processor", "on_ending", "resource", "scope", "info", "limits",
                 "trusted", "enabled", "metrics", "is_random", "decisions")

    def __init__(self, tracer: sdk.Tracer) -> None:
        self.tracer = tracer
        self.sampler = tracer.sampler
        self.ids = tracer.id_generator
        self.processor = tracer.span_processor  # the provider's: processors added later are in it too
        self.on_ending: Callable[[Any], None] | None = getattr(self.processor, "_on_ending", None)
        self.resource = tracer.resource
        self.info = tracer.instrumentation_info
        self.scope = getattr(tracer, "_instrumentation_scope", None)
        self.limits: sdk.SpanLimits = getattr(tracer, "_span_limits", None) or sdk.SpanLimits()
        most, longest = self.limits.max_span_attributes, self.limits.max_span_attribute_length
        # unchecked only what govrpc built: the SDK's own samplers hand back the attributes they were given
        self.trusted = (most is None or most >= _TRUSTED_ATTRIBUTES) and longest is None and _builtin(self.sampler)
        # ALWAYS_ON and the default ParentBased(ALWAYS_ON) decide by the parent alone: read off a table
        self.decisions = _static_decisions(self.sampler)
        self.enabled: Callable[[], bool] | None = getattr(tracer, "_is_enabled", None)
        metrics = getattr(tracer, "_tracer_metrics", None)
        # the SDK's span metrics, unless they are its no-op ones (its internal metrics are not enabled)
        self.metrics: Callable[..., Callable[[], None]] | None = None if type(metrics) is _NoOpTracerMetrics \
            else getattr(metrics, "start_span", None)
        self.is_random: Callable[[], bool] | None = getattr(self.ids, "is_trace_id_random", None) if _RANDOM else None

    def start_span(self, name: str, context: Any = None, kind: SpanKind = SpanKind.INTERNAL,
                   attributes: Mapping[str, Any] | None = None, links: Sequence[Link] = (),
                   start_time: int | None = None, record_exception: bool = True,
                   set_status_on_exception: bool = True) -> api.Span:
        parent: SpanContext | None = _get_current_span(context).get_span_context()
        if self.enabled is not None and not self.enabled():
            return NonRecordingSpan(parent)  # type: ignore[arg-type]
        if parent is not None and parent.is_valid:
            trace_id = parent.trace_id
            random_id = bool(parent.trace_flags & _RANDOM) if _RANDOM else False
        else:
            parent = None
            trace_id = self.ids.generate_trace_id()
            random_id = self.is_random is not None and self.is_random()
        links = links or ()
        decisions = self.decisions
        if decisions is not None:  # what the static sampler's should_sample answers, by the same rules
            if parent is None:
                decision, trace_state = decisions[0], None
            else:
                decision = decisions[(1 if parent.is_remote else 3) + (0 if parent.trace_flags.sampled else 1)]
                trace_state = parent.trace_state
            sampled_attributes = attributes
        else:
            result = self.sampler.should_sample(context, trace_id, name, kind, attributes, links)
            decision, trace_state, sampled_attributes = result.decision, result.trace_state, result.attributes
        sampled = decision is _RECORD_AND_SAMPLE  # Decision.is_sampled, is_recording: its three members
        if random_id:
            flags = _RANDOM_SAMPLED if sampled else _RANDOM_DEFAULT
        else:
            flags = _SAMPLED if sampled else _DEFAULT
        span_context = SpanContext(trace_id, self.ids.generate_span_id(), False, flags, trace_state)
        end_metrics = self.metrics(parent, decision) if self.metrics is not None else None
        if decision is _DROP:
            return NonRecordingSpan(span_context)
        span = LightSpan(self, name, span_context, parent, sampled_attributes, kind, links,
                         start_time if start_time is not None else _time_ns(), end_metrics,
                         record_exception, set_status_on_exception)
        # typed as the SDK's Span: processors get what it offers them (a ReadableSpan and an API Span)
        self.processor.on_start(span, parent_context=context)  # type: ignore[arg-type]
        return span


class LightSpan(api.Span, sdk.ReadableSpan):
    """A recording span: readable by processors and exporters, writable by the code in the call."""

    def __init__(self, tracer: LightTracer, name: str, context: SpanContext, parent: SpanContext | None,
                 attributes: Mapping[str, Any] | None, kind: SpanKind, links: Sequence[Link], start_time: int,
                 end_metrics: Callable[[], None] | None, record_exception: bool = True,
                 set_status_on_exception: bool = True) -> None:
        sdk.ReadableSpan.__init__(self, name=name, context=context, parent=parent, resource=tracer.resource,
                                  kind=kind, instrumentation_info=tracer.info, status=_UNSET,
                                  start_time=start_time, instrumentation_scope=tracer.scope)
        self._tracer = tracer
        limits = tracer.limits
        if tracer.trusted:
            self._attributes: Any = dict(attributes) if attributes else {}
        else:
            self._attributes = BoundedAttributes(limits.max_span_attributes, attributes, immutable=False,
                                                 max_value_len=limits.max_span_attribute_length)
        self._events: Any = ()
        self._links: Any = self._valid_links(links) if links else ()
        self._end_metrics = end_metrics
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception

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
        return self._context  # type: ignore[return-value]

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
        if self._end_time is not None:
            _logger.warning("Calling end() on an ended span.")
            return
        self._end_time = end_time if end_time is not None else _time_ns()
        if self._end_metrics is not None:
            self._end_metrics()
        tracer = self._tracer
        if tracer.on_ending is not None:
            tracer.on_ending(self)
        tracer.processor.on_end(self)  # ended, so no longer written: the processors read this span itself

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
