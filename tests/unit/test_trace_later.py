"""govrpc.trace.later: span endings handed off the call's path run in order, and flushing waits for them."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from opentelemetry import trace as otel_trace

from govrpc.trace import later, otel


def _tracer(provider: TracerProvider, monkeypatch: pytest.MonkeyPatch) -> Any:
    """govrpc's tracer for ``provider`` in force (the light one), as the trace stage takes it."""
    monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER", provider)
    tracer = otel.sdk_tracer()
    assert type(tracer) is otel.LightTracer
    return tracer


def test_endings_run_in_order_on_one_thread_and_a_drain_waits_for_them(caplog: pytest.LogCaptureFixture) -> None:
    ender = later.Ender()
    assert ender.drain(1.0)  # never used: nothing to wait for, no thread
    assert ender.thread is None
    release = threading.Event()
    seen: list[tuple[int, str]] = []

    def end(n: int) -> None:
        if n == 0:
            release.wait(10)
        if n == 2:
            raise RuntimeError("an ending that fails is logged")
        seen.append((n, threading.current_thread().name))

    for n in range(5):
        assert ender.put(end, (n,))
    assert not ender.drain(0.05)  # the first one still waits
    release.set()
    assert ender.drain(10)
    assert seen == [(n, "govrpc-span-ender") for n in (0, 1, 3, 4)]
    assert "ending a span off the call's path failed" in caplog.text


def test_past_its_limit_the_caller_ends_its_span_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    ender = later.Ender()
    monkeypatch.setattr(later.Ender, "LIMIT", 3)
    release = threading.Event()
    assert ender.put(lambda: release.wait(10), ())
    deadline = time.monotonic() + 10
    while ender.queue.qsize() and time.monotonic() < deadline:  # the blocker is taken, the queue empty
        time.sleep(0.001)
    assert all(ender.put(lambda: None, ()) for _ in range(3))
    assert ender.put(lambda: None, ()) is False  # three wait: no more
    release.set()
    assert ender.drain(10)


def test_a_provider_flushed_or_shut_down_has_every_span_handed_on_exported(monkeypatch: pytest.MonkeyPatch) -> None:
    """The spans of a provider with only batch processors end on the ender (``otel.end_later``); a
    ``Drain`` goes first in its list, once, so force_flush and shutdown export them all."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    tracer = _tracer(provider, monkeypatch)
    threads: list[str] = []

    def end(span: Any, end_time: int | None) -> None:
        threads.append(threading.current_thread().name)
        otel.finish(span, None, {"n": len(threads)}, end_time)

    for _ in range(50):
        span = tracer.start_span("/x.Echo/echo")
        returned = time.time_ns()
        otel.end_later(span, end, span)
    members = provider._active_span_processor._span_processors
    assert [type(m).__name__ for m in members] == ["Drain", "BatchSpanProcessor"]
    assert provider.force_flush(10_000)
    spans = exporter.get_finished_spans()
    assert len(spans) == 50 and set(threads) == {"govrpc-span-ender"}
    assert sorted(s.attributes["n"] for s in spans) == list(range(1, 51))
    assert spans[-1].end_time >= returned  # the end time is when end_later was called, not when it ran
    for _ in range(20):
        span = tracer.start_span("/x.Echo/echo")
        otel.end_later(span, end, span)
    provider.shutdown()
    assert len(exporter.get_finished_spans()) == 70
    assert [type(m).__name__ for m in provider._active_span_processor._span_processors] == \
        ["Drain", "BatchSpanProcessor"]


def test_a_span_read_as_it_ends_is_ended_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = _tracer(provider, monkeypatch)
    span = tracer.start_span("/x.Echo/echo")
    otel.end_later(span, lambda s, end_time: otel.finish(s, None, None, end_time), span)
    (ended,) = exporter.get_finished_spans()  # at once, on this thread
    assert ended is span and ended.end_time is not None
    assert [type(m).__name__ for m in provider._active_span_processor._span_processors] == ["SimpleSpanProcessor"]
