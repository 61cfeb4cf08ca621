"""govrpc.trace.spans: the light spans record what the SDK's own spans record, with the same decisions."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (ALWAYS_OFF, ALWAYS_ON, Decision, ParentBased, Sampler, SamplingResult,
                                           TraceIdRatioBased)
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.status import Status, StatusCode

from govrpc.trace import otel
from govrpc.trace.spans import LightSpan, LightTracer, light

START = {"rpc.system": "grpc", "rpc.service": "x.Echo", "rpc.method": "echo"}


def _provider(**options: Any) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(**options)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _comparable(span: ReadableSpan) -> dict[str, Any]:
    """What an exporter sees of ``span``, without what differs between any two spans (ids, times)."""
    data = json.loads(span.to_json())
    for key in ("context", "start_time", "end_time"):
        data.pop(key)
    data["parent_id"] = data.pop("parent_id") is not None
    for event in data["events"]:
        event.pop("timestamp")
        event["attributes"].pop("exception.stacktrace", None)  # names the line that raised
    data["dropped"] = (span.dropped_attributes, span.dropped_events, span.dropped_links)
    data["scope"] = (span.instrumentation_scope.name, span.instrumentation_scope.version)
    return data


def _both(write: Callable[[Any], None], **options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``write`` on an SDK span and on a light span from the same provider set-up: what each exported."""
    exported = []
    for make in (lambda t: t, light):
        provider, exporter = _provider(**options)
        tracer = make(provider.get_tracer("govrpc", "1.0"))
        span = tracer.start_span("/x.Echo/echo", kind=SpanKind.CLIENT, attributes=START)
        write(span)
        span.end()
        (finished,) = exporter.get_finished_spans()
        exported.append(_comparable(finished))
    return exported[0], exported[1]


def _writes(span: Any) -> None:
    span.set_attribute("user.id", 7)
    span.set_attributes({"user.tags": ("a", "b"), "user.ok": True, "bad": object()})  # not an attribute type
    span.add_event("cache.miss", {"key": "k1"})
    span.add_link(SpanContext(0x1234, 0x5678, True, TraceFlags(1)), {"why": "batch"})
    span.update_name("/x.Echo/echo2")
    try:
        raise ValueError("boom")
    except ValueError as exc:
        span.record_exception(exc, {"extra": 1})
    span.set_status(StatusCode.ERROR, "went wrong")


def test_a_light_span_exports_what_the_sdk_span_exports_for_the_same_writes() -> None:
    sdk_span, light_span = _both(_writes)
    assert light_span == sdk_span
    assert light_span["name"] == "/x.Echo/echo2" and light_span["status"]["status_code"] == "ERROR"
    assert [e["name"] for e in light_span["events"]] == ["cache.miss", "exception"]
    assert light_span["attributes"]["user.id"] == 7 and light_span["attributes"]["user.tags"] == ["a", "b"]
    assert light_span["attributes"]["bad"] is None  # checked as the SDK checks: replaced


def test_span_limits_bound_a_light_span_as_they_bound_the_sdk_span() -> None:
    limits = SpanLimits(max_span_attributes=4, max_events=1, max_links=1, max_span_attribute_length=3)

    def write(span: Any) -> None:
        span.set_attributes({"a": "long value", "b": 2})
        span.add_event("one")
        span.add_event("two")
        span.add_link(SpanContext(1, 2, True, TraceFlags(1)))
        span.add_link(SpanContext(3, 4, True, TraceFlags(1)))
        if isinstance(span, LightSpan):  # govrpc's own attributes, past the limits' room
            span.record({"govrpc.attempts": 1, "govrpc.provider": "127.0.0.1:1"})
        else:
            span.set_attributes({"govrpc.attempts": 1, "govrpc.provider": "127.0.0.1:1"})

    sdk_span, light_span = _both(write, span_limits=limits)
    assert light_span == sdk_span
    assert len(light_span["attributes"]) == 4 and light_span["dropped"] == (3, 1, 1)
    assert light_span["attributes"]["govrpc.provider"] == "127"  # truncated to the limit's length


def test_the_status_rules_are_the_sdks() -> None:
    def write(span: Any) -> None:
        span.set_status(Status(StatusCode.UNSET))  # never set
        span.set_status(StatusCode.OK)
        span.set_status(StatusCode.ERROR, "ignored: OK is final")

    sdk_span, light_span = _both(write)
    assert light_span == sdk_span and light_span["status"]["status_code"] == "OK"


def test_the_providers_sampler_decides_and_a_dropped_span_still_carries_ids() -> None:
    provider, exporter = _provider(sampler=ALWAYS_OFF)
    span = light(provider.get_tracer("govrpc")).start_span("/x.Echo/echo", kind=SpanKind.CLIENT)
    assert isinstance(span, NonRecordingSpan) and not span.is_recording()
    context = span.get_span_context()
    assert context.is_valid and not context.trace_flags.sampled
    span.end()
    assert exporter.get_finished_spans() == ()

    provider, exporter = _provider(sampler=ParentBased(TraceIdRatioBased(1.0)))
    tracer = light(provider.get_tracer("govrpc"))
    unsampled = otel_trace.set_span_in_context(NonRecordingSpan(SpanContext(0xABC, 0xDEF, True, TraceFlags(0))))
    child = tracer.start_span("/x.Echo/echo", context=unsampled)
    assert not child.is_recording() and child.get_span_context().trace_id == 0xABC  # the caller's decision holds
    sampled = otel_trace.set_span_in_context(NonRecordingSpan(SpanContext(0xABC, 0xDEF, True, TraceFlags(1))))
    child = tracer.start_span("/x.Echo/echo", context=sampled)
    child.end()
    (finished,) = exporter.get_finished_spans()
    assert finished.context.trace_id == 0xABC and finished.parent.span_id == 0xDEF


def test_processors_see_the_span_start_and_a_processor_added_later_sees_it_too() -> None:
    started: list[Any] = []

    class Stamp(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            started.append(parent_context)
            span.set_attribute("stamped", True)

    provider, exporter = _provider()
    tracer = light(provider.get_tracer("govrpc"))
    provider.add_span_processor(Stamp())  # after the tracer was made, as a user may
    parent = otel_context.Context()
    tracer.start_span("/x.Echo/echo", context=parent, attributes=START).end()
    (finished,) = exporter.get_finished_spans()
    assert finished.attributes["stamped"] is True and started == [parent]


def test_a_span_made_inside_is_its_child_and_writes_after_end_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    provider, exporter = _provider()
    tracer = light(provider.get_tracer("govrpc"))
    outer = tracer.start_span("/x.Echo/echo", kind=SpanKind.SERVER, attributes=START)
    token = otel_context.attach(otel_trace.set_span_in_context(outer))
    try:
        provider.get_tracer("user").start_span("work").end()  # the SDK's own span, under govrpc's
    finally:
        otel_context.detach(token)
    outer.end()
    with caplog.at_level(logging.WARNING, logger="govrpc.trace.spans"):
        outer.set_attribute("late", 1)
        outer.end()
    inner, finished = exporter.get_finished_spans()
    assert inner.parent.span_id == outer.get_span_context().span_id
    assert "late" not in finished.attributes and not finished.get_span_context().is_remote
    assert any("ended span" in r.getMessage() for r in caplog.records)


def test_govrpc_takes_the_light_tracer_for_an_sdk_provider_only(monkeypatch: pytest.MonkeyPatch) -> None:
    provider, _ = _provider()
    monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER", provider)
    assert isinstance(otel.sdk_tracer(), LightTracer)

    class Other(otel_trace.NoOpTracer):  # another implementation of the API: used as it is
        pass

    other = Other()
    assert light(other) is other


def test_attributes_a_users_sampler_adds_are_checked_as_the_sdk_checks_them() -> None:
    class Tagging(Sampler):  # not the SDK's: it adds attributes of its own, of any type
        def should_sample(self, parent_context: Any, trace_id: int, name: str, kind: Any = None,
                          attributes: Any = None, links: Any = None, trace_state: Any = None) -> SamplingResult:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, {**(attributes or {}), "sampler.note": object(),
                                                               "sampler.rate": 0.5})

        def get_description(self) -> str:
            return "Tagging"

    sdk_span, light_span = _both(lambda span: None, sampler=ParentBased(Tagging()))
    assert light_span == sdk_span
    assert light_span["attributes"]["sampler.note"] is None and light_span["attributes"]["sampler.rate"] == 0.5
    assert not LightTracer(_provider(sampler=ParentBased(Tagging()))[0].get_tracer("govrpc")).trusted
    assert LightTracer(_provider(sampler=ParentBased(TraceIdRatioBased(0.5)))[0].get_tracer("govrpc")).trusted


@pytest.mark.parametrize("sampler", [
    ALWAYS_ON, ALWAYS_OFF, ParentBased(ALWAYS_ON), ParentBased(ALWAYS_OFF),
    ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON, local_parent_sampled=ALWAYS_OFF),
    ParentBased(TraceIdRatioBased(1.0)),  # not static: asked per span
], ids=["on", "off", "parent-on", "parent-off", "parent-mixed", "parent-ratio"])
def test_each_parent_gets_the_decision_and_trace_state_the_sdks_sampler_gives(sampler: Sampler) -> None:
    state = TraceState([("vendor", "v1")])
    parents = {
        "none": None,
        "remote sampled": SpanContext(0xABC, 0xDEF, True, TraceFlags(1), state),
        "remote unsampled": SpanContext(0xABC, 0xDEF, True, TraceFlags(0), state),
        "local sampled": SpanContext(0xABC, 0xDEF, False, TraceFlags(1), state),
        "local unsampled": SpanContext(0xABC, 0xDEF, False, TraceFlags(0), state),
    }
    provider, exporter = _provider(sampler=sampler)
    tracer = provider.get_tracer("govrpc", "1.0")
    lighter = light(tracer)
    asked = isinstance(getattr(sampler, "_root", None), TraceIdRatioBased)
    assert (lighter.decisions is None) == asked  # the static ones are read off a table
    for what, parent in parents.items():
        context = None if parent is None else otel_trace.set_span_in_context(NonRecordingSpan(parent))
        spans = [t.start_span("/x.Echo/echo", context=context, kind=SpanKind.SERVER, attributes=START)
                 for t in (tracer, lighter)]
        # a server span's way: the parent as the caller sent it, the rest of its context (empty) beside it
        spans.append(lighter.start_span("/x.Echo/echo", otel_context.Context(), SpanKind.SERVER, START, parent=parent))
        seen = [(s.is_recording(), s.get_span_context().trace_flags.sampled, s.get_span_context().trace_state,
                 s.get_span_context().trace_id == (parent.trace_id if parent else s.get_span_context().trace_id))
                for s in spans]
        assert seen[1] == seen[0] and seen[2] == seen[0], what
        for span in spans:
            span.end()
        exported = [_comparable(s) for s in exporter.get_finished_spans()]
        exporter.clear()
        assert len(exported) == (3 if seen[0][0] else 0), what
        if exported:
            assert exported[1] == exported[0] and exported[2] == exported[0], what
            assert exported[1]["attributes"] == START


def test_a_new_traces_traceparent_names_its_span_and_a_samplers_trace_state_goes_with_it() -> None:
    """A new trace's first span takes its ids with its header's start (``w3c.fresh_ids``): what
    ``inject`` writes is still exactly its span context, and a sampler's trace state is sent too."""
    class Stating(Sampler):
        def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, trace_state=TraceState([("vendor", "v1")]))

        def get_description(self) -> str:
            return "Stating"

    for sampler, state in ((ALWAYS_ON, None), (ALWAYS_OFF, None), (Stating(), "vendor=v1")):
        provider, _ = _provider(sampler=sampler)
        tracer = light(provider.get_tracer("govrpc"))
        made = set()
        for _ in range(300):
            span = tracer.start_span("/x.Echo/echo", otel_context.Context(), SpanKind.CLIENT, START)
            carrier: dict[str, str] = {}
            otel.inject(span, otel_context.Context(), carrier)
            made.add(carrier["traceparent"])
            context = span.get_span_context()
            assert carrier["traceparent"] == f"00-{context.trace_id:032x}-{context.span_id:016x}-" \
                                              f"{int(context.trace_flags):02x}"
            assert carrier.get("tracestate") == state
            span.end()
        assert len(made) == 300


def test_a_parent_given_as_a_span_context_is_what_a_sampler_and_on_start_read_with_the_rest_of_the_context() -> None:
    """``start_span(..., parent=...)`` (the server span: the caller's span context, made into no
    context unless something reads one): a sampler asked per span and a processor's ``on_start``
    still get a context whose current span is that parent, beside the caller's other entries."""
    asked: list[Any] = []
    started: list[Any] = []

    class Asking(Sampler):
        def should_sample(self, parent_context: Any, *args: Any, **kwargs: Any) -> SamplingResult:
            asked.append(parent_context)
            return SamplingResult(Decision.RECORD_AND_SAMPLE)

        def get_description(self) -> str:
            return "Asking"

    class Stamp(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            started.append(parent_context)

    remote = SpanContext(0xABC, 0xDEF, True, TraceFlags(1))
    rest = otel_context.set_value("caller.entry", "kept", otel_context.Context())
    for sampler in (Asking(), ALWAYS_ON):
        asked.clear()
        started.clear()
        provider, exporter = _provider(sampler=sampler)
        provider.add_span_processor(Stamp())
        tracer = light(provider.get_tracer("govrpc"))
        tracer.start_span("/x.Echo/echo", rest, SpanKind.SERVER, START, parent=remote).end()
        other = otel_trace.set_span_in_context(NonRecordingSpan(SpanContext(0x77, 0x88, False, TraceFlags(1))))
        token = otel_context.attach(other)  # what this thread runs in is no caller's
        try:
            tracer.start_span("/x.Echo/echo", None, SpanKind.SERVER, START, parent=None).end()  # a fresh trace
        finally:
            otel_context.detach(token)
        first, fresh = exporter.get_finished_spans()
        assert first.parent == remote and first.context.trace_id == 0xABC and fresh.parent is None
        for seen in ([asked[0], started[0]] if asked else [started[0]]):
            assert otel_trace.get_current_span(seen).get_span_context() == remote
            assert otel_context.get_value("caller.entry", seen) == "kept"
        # no parent sent: the context is not the current one (a server's thread may hold anything)
        for seen in ([asked[1], started[1]] if asked else [started[1]]):
            assert isinstance(seen, otel_context.Context)  # None would mean "the current one"
            assert otel_trace.get_current_span(seen).get_span_context() is otel_trace.INVALID_SPAN_CONTEXT


def test_the_sdks_span_metrics_count_light_spans_as_its_own_and_cost_nothing_when_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    def counted(make: Callable[[Any], Any]) -> dict[str, list[tuple[Any, ...]]]:
        reader = InMemoryMetricReader()
        provider = TracerProvider(meter_provider=MeterProvider(metric_readers=[reader]))
        tracer = make(provider.get_tracer("govrpc"))
        tracer.start_span("/x.Echo/echo").end()
        tracer.start_span("/x.Echo/echo")  # still live
        seen: dict[str, list[tuple[Any, ...]]] = {}
        for resource in reader.get_metrics_data().resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    seen[metric.name] = sorted((tuple(sorted(p.attributes.items())), p.value)
                                               for p in metric.data.data_points)
        return seen

    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    sdk_counts, light_counts = counted(lambda t: t), counted(light)
    assert light_counts == sdk_counts and "otel.sdk.span.started" in sdk_counts and "otel.sdk.span.live" in sdk_counts
    monkeypatch.delenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED")
    provider, _ = _provider()
    assert light(provider.get_tracer("govrpc")).metrics is None  # the SDK's no-op metrics: not called


def test_an_incoming_headers_flags_are_one_shared_object_per_value() -> None:
    """A queued span keeps its parent's flags: one object per value, not one per call (unsampled included)."""
    def flags(header: str) -> Any:
        return otel_trace.get_current_span(otel.extract({"traceparent": header})).get_span_context().trace_flags

    unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    sampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert flags(unsampled) is flags(unsampled) and int(flags(unsampled)) == 0 and not flags(unsampled).sampled
    assert flags(sampled) is flags(sampled) and flags(sampled).sampled
    assert flags(sampled) is not flags(unsampled)


def test_each_processor_is_called_as_the_sdk_calls_it_also_one_added_while_a_span_runs() -> None:
    """The processors' calls are planned once per list of processors (a batch processor's queue
    taken directly for a sampled span, no call where the SDK's own processor does nothing) and
    planned again when the provider's list changes, between a span's start and its end too."""
    seen: list[tuple[str, str]] = []

    class Watch(SpanProcessor):
        def __init__(self, label: str) -> None:
            self.label = label

        def on_start(self, span: Any, parent_context: Any = None) -> None:
            seen.append((self.label, "start"))

        def _on_ending(self, span: Any) -> None:
            seen.append((self.label, "ending"))

        def on_end(self, span: Any) -> None:
            seen.append((self.label, "end:" + ("sampled" if span.context.trace_flags.sampled else "unsampled")))

    class RecordOnly(Sampler):
        def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
            return SamplingResult(Decision.RECORD_ONLY)

        def get_description(self) -> str:
            return "RecordOnly"

    for sampler, sampled in ((ALWAYS_ON, True), (RecordOnly(), False)):
        seen.clear()
        exporter = InMemorySpanExporter()
        provider = TracerProvider(sampler=sampler)
        batch = BatchSpanProcessor(exporter)
        provider.add_span_processor(batch)
        provider.add_span_processor(Watch("first"))
        tracer = light(provider.get_tracer("govrpc"))
        span = tracer.start_span("/x.Echo/echo", attributes=START)
        provider.add_span_processor(Watch("later"))  # while the span runs
        span.end()
        batch.force_flush()
        ending = "end:sampled" if sampled else "end:unsampled"
        assert seen == [("first", "start"), ("first", "ending"), ("later", "ending"), ("first", ending),
                        ("later", ending)]
        exported = exporter.get_finished_spans()
        assert [s.name for s in exported] == (["/x.Echo/echo"] if sampled else [])  # the batch exports sampled only
        if sampled:
            assert exported[0] is span and exported[0].attributes == START
        provider.shutdown()


CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"


@pytest.mark.parametrize("carrier", [
    {"traceparent": CALLER + "-01"},
    {"traceparent": CALLER + "-03", "tracestate": "vendor=v1,other=o2"},  # W3C random flag, a trace state
    {"traceparent": "00-0af7651916cd43dd8448eb211c80319X-b7ad6b7169203331-01"},  # malformed: a fresh trace
    {"traceparent": "00-00000000000000000000000000000000-b7ad6b7169203331-01"},  # zero trace id: a fresh trace
    {"traceparent": CALLER + "-00"},  # unsampled: dropped, as the sampler says
    {"traceparent": CALLER},  # cut short
    {},
], ids=["sampled", "random-state", "malformed", "zero", "unsampled", "short", "none"])
def test_a_server_span_started_from_its_callers_headers_is_the_one_start_span_makes(carrier: dict[str, str]) -> None:
    """``start_server_span`` reads a sampled caller's header only when the span's ids are read (here: by
    ``inject`` and by the exporter), and what comes out is what ``start_span(parent=remote_parent(...))``
    makes: the same parent, trace, flags, trace state and export."""
    provider, exporter = _provider()
    tracer = light(provider.get_tracer("govrpc", "1.0"))
    eager = tracer.start_span("/x.Echo/echo", otel_context.Context(), SpanKind.SERVER, START,
                              parent=otel.remote_parent(carrier))
    deferred = tracer.start_server_span("/x.Echo/echo", otel_context.Context(), START, carrier)
    assert type(deferred) is type(eager)
    header = carrier.get("traceparent", "")
    if len(header) == 55 and int(header[-1], 16) & 1:
        assert deferred._traceparent == header  # not read yet
    elif type(deferred) is LightSpan:
        assert deferred._traceparent is None
    if type(eager) is not LightSpan:  # dropped: the ids travel on, nothing records
        dropped, also = deferred.get_span_context(), eager.get_span_context()
        assert not deferred.is_recording() and (dropped.trace_id, dropped.trace_flags) == (also.trace_id, also.trace_flags)
        return
    injected: dict[str, str] = {}
    otel.inject(deferred, otel_context.Context(), injected)
    context = deferred.get_span_context()
    assert injected["traceparent"] == f"00-{context.trace_id:032x}-{context.span_id:016x}-" \
                                      f"{int(context.trace_flags):02x}"
    assert injected.get("tracestate") == carrier.get("tracestate")
    for span in (eager, deferred):
        span.end()
    first, second = exporter.get_finished_spans()
    assert _comparable(second) == _comparable(first)
    assert second.context.trace_flags == first.context.trace_flags and second.context.trace_state == first.context.trace_state
    assert second.parent == first.parent
    if first.parent is not None:  # the caller's trace
        assert second.context.trace_id == first.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
        assert second.parent.span_id == 0xB7AD6B7169203331 and second.parent.is_remote
    else:  # a fresh trace of its own each
        assert second.context.trace_id not in (0, first.context.trace_id)
    assert second.context.span_id not in (0, first.context.span_id)


def test_a_server_span_reads_its_callers_header_at_start_where_something_reads_the_span_then() -> None:
    """A sampler asked per span, or a processor's ``on_start``, reads the parent as the span starts: no deferring."""
    class Starting(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            assert span.parent.span_id == 0xB7AD6B7169203331

    for sampler, processor in ((TraceIdRatioBased(1.0), None), (ALWAYS_ON, Starting())):
        provider, exporter = _provider(sampler=sampler)
        if processor is not None:
            provider.add_span_processor(processor)
        tracer = light(provider.get_tracer("govrpc"))
        span = tracer.start_server_span("/x.Echo/echo", otel_context.Context(), START,
                                        {"traceparent": CALLER + "-01"})
        assert span._traceparent is None and span._trace_id == 0x0AF7651916CD43DD8448EB211C80319C
        span.end()
        assert exporter.get_finished_spans()[0].parent.span_id == 0xB7AD6B7169203331


def test_a_span_ends_later_only_where_it_waits_in_batch_queues_alone() -> None:
    """``queued_only``: the spans go into ``BatchSpanProcessor`` queues only (nothing reads one as it ends),
    so a server span may end after its call's answer; a processor added later that reads spans at once
    stops that at once."""
    provider = TracerProvider()
    tracer = light(provider.get_tracer("govrpc"))
    assert tracer.queued_only()  # no processor: nothing to wait for
    provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    assert tracer.queued_only()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    assert not tracer.queued_only()
    provider.shutdown()
    other, _ = _provider()
    assert not light(other.get_tracer("govrpc")).queued_only()


def test_a_sampled_span_goes_into_the_batch_queue_as_emit_puts_it_and_the_unusual_cases_to_emit_itself(
        caplog: pytest.LogCaptureFixture) -> None:
    """The batch processor's queue is filled as its ``emit`` fills it (the worker woken at a full batch),
    without asking the system for the process id per span; a full queue and a processor shut down are
    ``emit``'s to handle (it warns and drops, or ignores)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    batch = BatchSpanProcessor(exporter, max_queue_size=8, max_export_batch_size=4, schedule_delay_millis=60_000)
    provider.add_span_processor(batch)
    tracer = light(provider.get_tracer("govrpc"))
    assert tracer.plan[6] == (batch._batch_processor,)  # queued into by the span itself, not by emit
    for _ in range(3):
        tracer.start_span("/x.Echo/echo").end()
    assert len(batch._batch_processor._queue) == 3 and not batch._batch_processor._worker_awaken.is_set()
    tracer.start_span("/x.Echo/echo").end()  # a full batch: the worker exports it
    deadline = time.monotonic() + 10
    while len(exporter.get_finished_spans()) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(exporter.get_finished_spans()) == 4
    worker = batch._batch_processor
    worker._max_export_batch_size = 100  # hold the rest in the queue
    for _ in range(10):
        tracer.start_span("/x.Echo/echo").end()
    assert len(worker._queue) == 8 and "Queue full" in caplog.text  # emit's warning: the oldest dropped
    provider.shutdown()
    assert len(exporter.get_finished_spans()) == 12
    tracer.start_span("/x.Echo/echo").end()  # shut down: ignored, as emit ignores it
    assert len(exporter.get_finished_spans()) == 12


def test_a_deferred_spans_ids_are_read_while_a_log_record_reads_them_too() -> None:
    """A malformed ``tracestate`` makes the API log a warning; with ``TraceContextFilter`` installed every
    record reads the current span's ids. Reading a deferred server span's ids must not log while they are
    being made (that read would wait for itself): the trace state is read as the span starts."""
    from govrpc.trace import TraceContextFilter

    provider, exporter = _provider()
    provider._active_span_processor._span_processors = ()  # nothing reads the span as it starts or ends
    tracer = light(provider.get_tracer("govrpc"))
    carrier = {"traceparent": CALLER + "-01", "tracestate": "bad key=1,vendor=v1"}
    got: list[Any] = []

    def serve() -> None:
        span = tracer.start_server_span("/x.Echo/echo", otel_context.Context(), START, carrier)
        token = otel_context.attach(otel_trace.set_span_in_context(span))
        try:
            injected: dict[str, str] = {}
            otel.inject(span, otel_context.Context(), injected)
            got.append((injected, span.get_span_context()))
        finally:
            otel_context.detach(token)

    TraceContextFilter.install()
    try:
        worker = threading.Thread(target=serve, daemon=True)
        worker.start()
        worker.join(10)
    finally:
        TraceContextFilter.uninstall()
    assert not worker.is_alive(), "reading the span's ids waited for itself"
    ((injected, context),) = got
    assert injected["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    assert context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert context.trace_state == otel.remote_parent(carrier).trace_state  # what the eager start keeps


def test_a_new_traces_client_span_is_what_start_span_and_inject_make() -> None:
    """``start_new_trace`` (a call from code with no current context) starts the span ``start_span`` would,
    and writes the ``traceparent`` ``otel.inject`` would: same export, same header, fresh random ids."""
    exported, headers = [], []
    for fast in (False, True):
        provider, exporter = _provider()
        tracer = light(provider.get_tracer("govrpc", "1.0"))
        carrier: dict[str, str] = {}
        if fast:
            span = tracer.start_new_trace("/x.Echo/echo", otel_context.Context(), START, carrier)
            assert type(span) is LightSpan
        else:
            span = tracer.start_span("/x.Echo/echo", otel_context.Context(), SpanKind.CLIENT, START)
            otel.inject(span, otel_context.Context(), carrier)
        span.end()
        (finished,) = exporter.get_finished_spans()
        exported.append(_comparable(finished))
        context = finished.context
        assert finished.parent is None and context.trace_id and context.span_id
        assert carrier == {"traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}-"
                                          f"{int(context.trace_flags):02x}"}
        headers.append(carrier["traceparent"])
    assert exported[0] == exported[1]
    assert headers[0][:-2] != headers[1][:-2] and headers[0][-2:] == headers[1][-2:]  # new ids, the same flags


def test_start_new_trace_leaves_to_start_span_what_a_sampler_or_a_processor_would_see() -> None:
    """None (``start_span`` decides) where the context is not empty, where the sampler is asked per span,
    and where a processor reads a span as it starts."""
    provider, _ = _provider()
    tracer = light(provider.get_tracer("govrpc"))
    parent = tracer.start_span("/x.Echo/outer")
    assert tracer.start_new_trace("/x.Echo/echo", otel_trace.set_span_in_context(parent), START, {}) is None
    ratio, _ = _provider(sampler=TraceIdRatioBased(0.5))
    assert light(ratio.get_tracer("govrpc")).start_new_trace("/x.Echo/echo", otel_context.Context(), START, {}) \
        is None
    started: list[Any] = []

    class Starts(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            started.append(span)

    provider.add_span_processor(Starts())
    carrier: dict[str, str] = {}
    assert tracer.start_new_trace("/x.Echo/echo", otel_context.Context(), START, carrier) is None
    assert carrier == {}


def test_a_sampled_span_reaches_every_processor_when_a_batch_processor_has_company() -> None:
    """Queued straight into a batch processor only where batch processors are all there is; with another
    processor beside one, each gets the span through its own ``on_end``."""
    provider = TracerProvider()
    batched, seen = InMemorySpanExporter(), InMemorySpanExporter()
    provider.add_span_processor(BatchSpanProcessor(batched, schedule_delay_millis=60_000))
    tracer = light(provider.get_tracer("govrpc"))
    assert tracer.plan[6] is not None
    provider.add_span_processor(SimpleSpanProcessor(seen))
    tracer.start_span("/x.Echo/echo").end()
    assert tracer.plan[6] is None
    assert len(seen.get_finished_spans()) == 1
    provider.force_flush()
    assert len(batched.get_finished_spans()) == 1
    provider.shutdown()


def test_a_calls_decisions_stay_on_its_span_when_code_in_the_call_writes_on_it() -> None:
    """The recorder writes a call's decisions straight into its light span's attributes; code in the call
    that sets an attribute (which makes them checked, a copy) loses none of them, nor its own value."""
    for writes in (False, True):
        provider, exporter = _provider()
        tracer = light(provider.get_tracer("govrpc"))
        span = tracer.start_span("/x.Echo/echo", otel_context.Context(), SpanKind.CLIENT, START)
        recorder = otel.SpanRecorder(span, tracer, "/x.Echo/echo", START)
        recorder.listed(None, 3, 2, ("tag",))
        if writes:
            span.set_attribute("app.note", "mine")
        recorder.chose(None, "RandomLoadBalancer", "127.0.0.1:5")
        recorder.close(None)
        (finished,) = exporter.get_finished_spans()
        expected = {**START, "govrpc.attempts": 1, "govrpc.providers.total": 3, "govrpc.providers.routed": 2,
                    "govrpc.routers": ("tag",), "govrpc.loadbalance": "RandomLoadBalancer",
                    "govrpc.provider": "127.0.0.1:5", "net.peer.name": "127.0.0.1", "net.peer.port": 5,
                    "rpc.grpc.status_code": 0}
        if writes:
            expected["app.note"] = "mine"
        assert dict(finished.attributes) == expected
        assert START == {"rpc.system": "grpc", "rpc.service": "x.Echo", "rpc.method": "echo"}  # not written into


def test_a_failed_calls_decisions_and_outcome_are_on_its_span() -> None:
    provider, exporter = _provider()
    tracer = light(provider.get_tracer("govrpc"))
    span = tracer.start_span("/x.Echo/echo", otel_context.Context(), SpanKind.CLIENT, START)
    recorder = otel.SpanRecorder(span, tracer, "/x.Echo/echo", START)
    recorder.listed(None, 1, 1, ())
    recorder.close(ValueError("boom"))
    (finished,) = exporter.get_finished_spans()
    assert finished.attributes["govrpc.providers.routed"] == 1 and finished.attributes["rpc.grpc.status_code"] == 2
    assert finished.status.status_code is StatusCode.ERROR and finished.events[0].name == "exception"


def test_a_call_span_ended_by_code_in_the_call_is_not_written_after_its_end(caplog: pytest.LogCaptureFixture) -> None:
    """Code that ends the call's span itself: the recorder's close warns as ``end`` on an ended span does,
    and the exported span keeps what it had when it ended (no outcome written on it afterwards)."""
    provider, exporter = _provider()
    tracer = light(provider.get_tracer("govrpc"))
    span = tracer.start_span("/x.Echo/echo", otel_context.Context(), SpanKind.CLIENT, START)
    recorder = otel.SpanRecorder(span, tracer, "/x.Echo/echo", START)
    recorder.listed(None, 1, 1, ())
    span.end()
    recorder.close(None)
    (finished,) = exporter.get_finished_spans()
    assert "rpc.grpc.status_code" not in finished.attributes
    assert "Calling end() on an ended span." in caplog.text
