"""Tracing end to end: one trace across processes, interop with the official gRPC
instrumentation, log correlation, OTLP export to a receiver on 127.0.0.1, bad headers."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from concurrent import futures
from typing import Any, Iterator

import grpc
import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import govrpc
from govrpc.rpc.serialization import MsgpackSerializer
from govrpc.trace import TraceContextFilter, current_ids

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def sdk(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """An SDK provider in force for this test only (the API lets a process set one just once)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER", provider)
    yield provider, exporter
    provider.shutdown()


def _node(role: str, registry: str, tmp: Any, sdk: bool) -> tuple[subprocess.Popen[str], str, str]:
    spans, log = str(tmp / f"{role}.spans"), str(tmp / f"{role}.log")
    proc = subprocess.Popen([sys.executable, "-m", "tests.integration.trace_node", role, registry, spans, log,
                             "sdk" if sdk else "nosdk"], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", line
    return proc, spans, log


def _stop(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()


def _read(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.readlines()
    except FileNotFoundError:
        return []


def _lines(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_one_trace_across_three_processes_sync_future_oneway(tmp_path: Any, file_registry: str,
                                                            sdk: Any) -> None:
    _, exporter = sdk
    b, b_spans, b_log = _node("B", file_registry, tmp_path, True)
    a, a_spans, a_log = _node("A", file_registry, tmp_path, True)
    try:
        with govrpc.Client(file_registry, application="web", local_first=False, timeout=5.0) as client:
            proxy = client.proxy("trace.A")
            assert proxy.get(1) == 3
            assert proxy.get.future(2).result(timeout=10) == 5
            proxy.get.oneway(3)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any("B.find 3" in line for line in _read(b_log)):
                time.sleep(0.05)
    finally:
        _stop(a)
        _stop(b)
    clients = {s.attributes["rpc.method"]: s for s in exporter.get_finished_spans()}
    assert len(exporter.get_finished_spans()) == 3 and set(clients) == {"get"}
    consumer = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time)
    a_rows, b_rows = _lines(a_spans), _lines(b_spans)
    for span in consumer:
        trace_id = f"{span.context.trace_id:032x}"
        assert span.name == "/trace.A/get" and span.kind is otel_trace.SpanKind.CLIENT
        assert span.parent is None
        a_server = [r for r in a_rows if r["trace_id"] == trace_id and r["kind"] == "SERVER"]
        a_client = [r for r in a_rows if r["trace_id"] == trace_id and r["kind"] == "CLIENT"]
        b_server = [r for r in b_rows if r["trace_id"] == trace_id and r["kind"] == "SERVER"]
        assert len(a_server) == len(a_client) == len(b_server) == 1, (a_rows, b_rows)
        assert a_server[0]["parent_span_id"] == f"{span.context.span_id:016x}"
        assert a_server[0]["name"] == "/trace.A/get"
        assert a_client[0]["parent_span_id"] == a_server[0]["span_id"]
        assert a_client[0]["name"] == "/trace.B/find"
        assert a_client[0]["attributes"]["govrpc.application"] == "app-A"
        assert b_server[0]["parent_span_id"] == a_client[0]["span_id"]
        for row in (a_server[0], a_client[0], b_server[0]):
            assert row["attributes"]["rpc.system"] == "grpc"
            assert row["attributes"]["rpc.grpc.status_code"] == 0
    # the providers' log lines carry the ids of the span handling them
    a_server_ids = {(r["trace_id"], r["span_id"]) for r in a_rows if r["kind"] == "SERVER"}
    logged = [line.split()[:2] for line in _read(a_log) if "A.get" in line]
    assert len(logged) == 3 and {tuple(x) for x in logged} == a_server_ids


def test_without_sdk_a_trace_id_still_crosses_processes_and_reaches_logs(tmp_path: Any,
                                                                        file_registry: str) -> None:
    b, _, b_log = _node("B", file_registry, tmp_path, False)
    a, _, a_log = _node("A", file_registry, tmp_path, False)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(TraceContextFilter())
    logger = logging.getLogger("app.consumer")
    logger.addHandler(handler)
    seen: list[tuple[str, str]] = []

    @govrpc.service("trace.Probe")
    class Probe:  # the consumer's own provider: records what its worker sees while calling A
        def run(self) -> int:
            seen.append(current_ids())
            logger.warning("calling A")
            return int(govrpc_client.proxy("trace.A").get(5))

    try:
        with govrpc.Server(file_registry, port=0) as server, \
                govrpc.Client(file_registry, local_first=False, timeout=5.0) as govrpc_client:
            server.add(Probe())
            assert govrpc_client.proxy("trace.Probe").run() == 11
    finally:
        logger.removeHandler(handler)
        _stop(a)
        _stop(b)
    trace_id = seen[0][0]
    assert len(trace_id) == 32 and trace_id != "0" * 32
    assert records[0].trace_id == trace_id  # type: ignore[attr-defined]
    a_ids = [line.split()[:2] for line in _read(a_log) if "A.get" in line]
    b_ids = [line.split()[:2] for line in _read(b_log) if "B.find" in line]
    assert a_ids[0][0] == trace_id and b_ids[0][0] == trace_id
    assert len({seen[0][1], a_ids[0][1], b_ids[0][1]}) == 3  # each hop its own span id


def _raw_server(instrumented: Any) -> tuple[grpc.Server, int]:
    serializer = MsgpackSerializer()

    def hello(request: bytes, context: grpc.ServicerContext) -> bytes:
        args, _ = serializer.loads(request)
        return serializer.dumps(f"hello {args[0]}")

    handler = grpc.method_handlers_generic_handler("plain.Greeter", {
        "hello": grpc.unary_unary_rpc_method_handler(hello)})
    server = grpc.server(futures.ThreadPoolExecutor(2), interceptors=[instrumented], handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def test_govrpc_client_joins_an_instrumented_grpcio_server_trace(sdk: Any) -> None:
    from opentelemetry.instrumentation.grpc import server_interceptor

    provider, exporter = sdk
    server, port = _raw_server(server_interceptor(tracer_provider=provider))
    try:
        with govrpc.Client(application="web", timeout=5.0) as client:
            proxy = client.proxy("plain.Greeter", url=f"grpc://127.0.0.1:{port}")
            assert proxy.hello("ann") == "hello ann"
    finally:
        server.stop(None)
    spans = {s.kind: s for s in exporter.get_finished_spans()}
    client_span, server_span = spans[otel_trace.SpanKind.CLIENT], spans[otel_trace.SpanKind.SERVER]
    assert server_span.instrumentation_scope.name.startswith("opentelemetry.instrumentation.grpc")
    assert server_span.context.trace_id == client_span.context.trace_id
    assert server_span.parent.span_id == client_span.context.span_id
    assert client_span.name == server_span.name == "/plain.Greeter/hello"
    for key in ("rpc.system", "rpc.service", "rpc.method", "rpc.grpc.status_code"):
        assert client_span.attributes[key] == server_span.attributes[key], key


def test_instrumented_grpcio_client_trace_continues_in_govrpc_server(sdk: Any, memory_registry: str) -> None:
    from opentelemetry.instrumentation.grpc import client_interceptor, grpcext

    provider, exporter = sdk
    inner: list[tuple[str, str]] = []

    @govrpc.service("plain.Echo")
    class Echo:
        def echo(self, text: str) -> str:
            inner.append(current_ids())
            return text

    serializer = MsgpackSerializer()
    with govrpc.Server(memory_registry, port=0) as server:
        server.add(Echo())
        raw = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        channel = grpcext.intercept_channel(raw, client_interceptor(tracer_provider=provider))
        try:
            call = channel.unary_unary("/plain.Echo/echo")
            assert serializer.loads(call(serializer.dumps_call(("hi",), {}), timeout=5)) == "hi"
        finally:
            raw.close()
    spans = {s.kind: s for s in exporter.get_finished_spans()}
    client_span, server_span = spans[otel_trace.SpanKind.CLIENT], spans[otel_trace.SpanKind.SERVER]
    assert client_span.instrumentation_scope.name.startswith("opentelemetry.instrumentation.grpc")
    assert server_span.context.trace_id == client_span.context.trace_id
    assert server_span.parent.span_id == client_span.context.span_id
    assert server_span.name == client_span.name == "/plain.Echo/echo"
    assert inner == [(f"{server_span.context.trace_id:032x}", f"{server_span.context.span_id:016x}")]


@govrpc.service("trace.Ids")
class Ids:
    def ids(self) -> list[str]:
        return list(current_ids())


@pytest.mark.parametrize("header", [
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",   # wrong length
    "00-0af7651916cd43dd8448eb211c80319z-b7ad6b7169203331-01",    # bad hex
    "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",    # upper case
    "00-00000000000000000000000000000000-b7ad6b7169203331-01",    # all-zero trace id
    "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",    # all-zero span id
    "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",    # a future version
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",    # forbidden version
    "00-0af7651916cd43dd-448eb211c80319c-b7ad6b7169203331-01",    # a dash inside the trace id
    "00-+af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",    # a sign (int() would take it)
    "00-0af7651916cd43dd8448eb211c8031_c-b7ad6b7169203331-01",    # an underscore (int() would take it)
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g",    # bad flags
])
@pytest.mark.parametrize("with_sdk", [False, True])
def test_a_malformed_traceparent_gives_a_fresh_trace_and_a_successful_call(
        header: str, with_sdk: bool, memory_registry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if with_sdk:
        provider = TracerProvider()
        monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER", provider)
    serializer = MsgpackSerializer()
    with govrpc.Server(memory_registry, port=0) as server:
        server.add(Ids())
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            call = channel.unary_unary("/trace.Ids/ids")
            trace_id, span_id = serializer.loads(call(serializer.dumps_call((), {}), timeout=5,
                                                      metadata=(("traceparent", header),)))
    assert len(trace_id) == 32 and int(trace_id, 16) != 0 and trace_id != header[3:35].lower()
    assert len(span_id) == 16 and int(span_id, 16) != 0


def test_a_valid_traceparent_is_continued(memory_registry: str) -> None:
    serializer = MsgpackSerializer()
    header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with govrpc.Server(memory_registry, port=0) as server:
        server.add(Ids())
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            call = channel.unary_unary("/trace.Ids/ids")
            trace_id, span_id = serializer.loads(call(serializer.dumps_call((), {}), timeout=5,
                                                      metadata=(("traceparent", header),)))
    assert trace_id == "0af7651916cd43dd8448eb211c80319c" and span_id != "b7ad6b7169203331"


_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _recording() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _ids_of(channel: grpc.Channel) -> Any:
    """A raw grpcio call of trace.Ids/ids sending ``_PARENT``: [trace id, span id] the method saw."""
    serializer = MsgpackSerializer()
    call = channel.unary_unary("/trace.Ids/ids")
    return lambda: list(serializer.loads(call(serializer.dumps_call((), {}), timeout=5,
                                              metadata=(("traceparent", _PARENT),))))


def test_a_provider_without_sdk_continues_the_trace_and_records_a_span_once_an_sdk_is_set(
        memory_registry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default provider's only stage is the trace stage: its calls skip the Invocation
    (``Filter.scope``) yet continue the caller's trace; an SDK set while it serves gets its server
    span from the next call on, on the same shortcut (the chain is never run)."""
    provider, exporter = _recording()
    with govrpc.Server(memory_registry, port=0) as server:
        server.add(Ids())
        exported = server._hosted[govrpc.url.ServiceKey("trace.Ids")].exported
        assert exported is not None and exported.scope is not None and "ids" in exported.direct
        chained: list[Any] = []
        through = exported.invoker.invoke
        exported.invoker.invoke = lambda invocation: chained.append(invocation) or through(invocation)  # type: ignore
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            ids = _ids_of(channel)
            before = ids()
            monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER", provider)
            during = ids()
            monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER", None)
            after = ids()
    provider.shutdown()
    assert before[0] == during[0] == after[0] == "0af7651916cd43dd8448eb211c80319c"
    assert len({before[1], during[1], after[1], "b7ad6b7169203331"}) == 4
    spans = exporter.get_finished_spans()
    assert [s.kind for s in spans] == [otel_trace.SpanKind.SERVER]  # the call made while the SDK was set
    assert f"{spans[0].context.span_id:016x}" == during[1] and spans[0].parent.span_id == 0xb7ad6b7169203331
    assert spans[0].attributes["net.peer.ip"] == "127.0.0.1" and spans[0].attributes["rpc.grpc.status_code"] == 0
    assert chained == []


def test_metrics_and_trace_share_the_shortcut_and_count_each_call_once_with_an_sdk_set_midway(
        memory_registry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two scope filters (metrics, trace) nest on the direct path, with an SDK set or not: each call
    is counted once, and those made while the SDK was set have a server span each."""
    from prometheus_client import CollectorRegistry

    provider, exporter = _recording()
    registry = CollectorRegistry()
    with govrpc.Server(memory_registry, port=0, metrics_registry=registry) as server:
        server.add(Ids())
        exported = server._hosted[govrpc.url.ServiceKey("trace.Ids")].exported
        assert exported is not None and exported.scope is not None and "ids" in exported.direct
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            ids = _ids_of(channel)
            seen = [ids() for _ in range(3)]
            monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER", provider)
            seen += [ids() for _ in range(2)]
            monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER", None)
            seen.append(ids())
            count = registry.get_sample_value("grpc_server_call_duration_seconds_count",
                                              {"grpc_method": "trace.Ids/ids", "grpc_status": "OK"})
            started = registry.get_sample_value("grpc_server_call_started_total", {"grpc_method": "trace.Ids/ids"})
            inflight = registry.get_sample_value("govrpc_inflight_calls",
                                                 {"side": "provider", "service": "trace.Ids", "method": "ids"})
    provider.shutdown()
    assert count == started == 6 and inflight == 0
    assert {trace_id for trace_id, _ in seen} == {"0af7651916cd43dd8448eb211c80319c"}  # the trace goes on in both
    assert [s.kind for s in exporter.get_finished_spans()] == [otel_trace.SpanKind.SERVER] * 2


def test_a_second_provider_stage_takes_the_shortcut_away_and_back(memory_registry: str) -> None:
    with govrpc.Server(memory_registry, port=0) as server, govrpc.Admin(memory_registry) as admin:
        server.add(Ids())
        exported = server._hosted[govrpc.url.ServiceKey("trace.Ids")].exported
        assert exported is not None and exported.scope is not None
        # a queueing rate limit: a stage that reads the Invocation (a call's wait is bounded by its deadline)
        admin.set_flow("trace.Ids", {"tps": 1000, "tps.limiter": "queueing"})
        deadline = time.monotonic() + 10
        while exported.scope is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert exported.scope is None and exported.direct == {}
        admin.remove_flow("trace.Ids")
        while exported.scope is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert exported.scope is not None and "ids" in exported.direct


class _Receiver:
    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.got = threading.Event()

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the proto's name
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        self.requests.append(request)
        self.got.set()
        return trace_service_pb2.ExportTraceServiceResponse()


def test_spans_reach_an_otlp_receiver_through_the_standard_exporter(memory_registry: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    receiver = _Receiver()
    collector = grpc.server(futures.ThreadPoolExecutor(2))
    servicer = type("Servicer", (trace_service_pb2_grpc.TraceServiceServicer,), {"Export": receiver.Export})()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, collector)
    port = collector.add_insecure_port("127.0.0.1:0")
    collector.start()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True),
                                                   schedule_delay_millis=50))
    monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER", provider)
    try:
        with govrpc.Server(memory_registry, port=0) as server, \
                govrpc.Client(memory_registry, local_first=False, timeout=5.0) as client:
            server.add(Ids())
            client.proxy("trace.Ids").ids()
        assert provider.force_flush(10_000)
        assert receiver.got.wait(10)
    finally:
        provider.shutdown()
        collector.stop(None)
    spans = [s for r in receiver.requests for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]
    kinds = sorted((s.name, s.kind) for s in spans)
    assert kinds == [("/trace.Ids/ids", 2), ("/trace.Ids/ids", 3)]  # SERVER, CLIENT
    assert spans[0].trace_id == spans[1].trace_id


def test_in_process_calls_carry_the_trace(memory_registry: str, sdk: Any) -> None:
    _, exporter = sdk
    with govrpc.Server(memory_registry, port=0) as server, \
            govrpc.Client(memory_registry, timeout=5.0) as client:  # local_first: in-process
        server.add(Ids())
        trace_id, span_id = client.proxy("trace.Ids").ids()
    spans = {s.kind: s for s in exporter.get_finished_spans()}
    server_span = spans[otel_trace.SpanKind.SERVER]
    assert f"{server_span.context.trace_id:032x}" == trace_id
    assert server_span.parent.span_id == spans[otel_trace.SpanKind.CLIENT].context.span_id
    assert spans[otel_trace.SpanKind.CLIENT].attributes["govrpc.provider"]


def test_a_retry_is_a_child_span_of_the_call_with_the_reason(memory_registry: str, sdk: Any) -> None:
    import socket

    _, exporter = sdk
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()  # nothing listens there: connection refused, surely not sent, so retried
    with govrpc.Server(memory_registry, port=0) as server, \
            govrpc.Client(memory_registry, local_first=False, timeout=5.0) as client:
        server.add(Ids())
        proxy = client.proxy("trace.Ids", url=[f"grpc://127.0.0.1:{dead_port}", f"grpc://127.0.0.1:{server.port}"],
                             loadbalance="roundrobin")
        retried = None
        for _ in range(4):
            exporter.clear()
            proxy.ids()
            calls = [s for s in exporter.get_finished_spans()
                     if s.kind is otel_trace.SpanKind.CLIENT and s.parent is None]
            if calls[0].attributes["govrpc.attempts"] == 2:
                retried = calls[0]
                break
    assert retried is not None
    spans = exporter.get_finished_spans()
    child = [s for s in spans if s.parent is not None and s.parent.span_id == retried.context.span_id
             and s.kind is otel_trace.SpanKind.CLIENT]
    assert len(child) == 1 and child[0].attributes["govrpc.attempt"] == 2
    assert child[0].attributes["govrpc.provider"] == f"127.0.0.1:{server.port}"
    server_span = [s for s in spans if s.kind is otel_trace.SpanKind.SERVER][0]
    assert server_span.parent.span_id == child[0].context.span_id
    retry = [e for e in retried.events if e.name == "govrpc.retry"][0]
    assert retry.attributes["govrpc.failed_provider"] == f"127.0.0.1:{dead_port}"
    assert retry.attributes["govrpc.error"] == "ConnectionRefusedByProviderError"
    assert retried.attributes["govrpc.loadbalance"] == "RoundRobinLoadBalancer"
    assert retried.attributes["govrpc.providers.routed"] == 2
    assert child[0].attributes["govrpc.providers.routed"] == 2  # the retry's own listing is on its span


def test_a_call_span_holds_its_decisions_as_attributes_set_once(memory_registry: str, sdk: Any) -> None:
    _, exporter = sdk
    with govrpc.Server(memory_registry, port=0) as server, \
            govrpc.Client(memory_registry, application="web", local_first=False, timeout=5.0) as client:
        server.add(Ids())
        client.proxy("trace.Ids", loadbalance="roundrobin").ids()
    spans = {s.kind: s for s in exporter.get_finished_spans()}
    call, served = spans[otel_trace.SpanKind.CLIENT], spans[otel_trace.SpanKind.SERVER]
    assert {k: v for k, v in call.attributes.items() if k != "govrpc.routers"} == {
        "rpc.system": "grpc", "rpc.service": "trace.Ids", "rpc.method": "ids", "govrpc.application": "web",
        "govrpc.providers.total": 1, "govrpc.providers.routed": 1, "govrpc.loadbalance": "RoundRobinLoadBalancer",
        "govrpc.provider": f"127.0.0.1:{server.port}", "net.peer.name": "127.0.0.1", "net.peer.port": server.port,
        "govrpc.attempts": 1, "rpc.grpc.status_code": 0}
    assert isinstance(call.attributes["govrpc.routers"], tuple)
    assert call.events == ()  # a call without a retry writes no event: its decisions are attributes
    assert served.attributes["govrpc.caller"] == "web" and served.attributes["net.peer.ip"] == "127.0.0.1"
    assert served.attributes["rpc.grpc.status_code"] == 0


def test_server_spans_name_each_caller(memory_registry: str, sdk: Any) -> None:
    _, exporter = sdk
    with govrpc.Server(memory_registry, port=0) as server:
        server.add(Ids())
        for application in ("app-a", "app-b", "app-a"):
            with govrpc.Client(memory_registry, application=application, local_first=False, timeout=5.0) as client:
                client.proxy("trace.Ids").ids()
    served = [s.attributes for s in exporter.get_finished_spans() if s.kind is otel_trace.SpanKind.SERVER]
    assert [a["govrpc.caller"] for a in served] == ["app-a", "app-b", "app-a"]
    assert all(isinstance(a["net.peer.port"], int) and a["net.peer.port"] > 0 for a in served)


@govrpc.service("trace.Seen")
class Seen:
    def seen(self) -> dict[str, Any]:
        from opentelemetry import baggage

        span_context = otel_trace.get_current_span().get_span_context()
        return {"baggage": dict(baggage.get_all()), "tracestate": span_context.trace_state.to_header(),
                "trace_id": f"{span_context.trace_id:032x}"}


def test_with_an_sdk_tracestate_and_baggage_travel_on_through_a_govrpc_hop(memory_registry: str, sdk: Any) -> None:
    _, exporter = sdk
    header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    serializer = MsgpackSerializer()
    with govrpc.Server(memory_registry, port=0) as server, \
            govrpc.Client(memory_registry, local_first=False, timeout=5.0) as client:

        @govrpc.service("trace.Relay")
        class Relay:
            def relay(self) -> dict[str, Any]:
                return client.proxy("trace.Seen").seen()

        server.add(Seen())
        server.add(Relay())
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            call = channel.unary_unary("/trace.Relay/relay")
            seen = serializer.loads(call(serializer.dumps_call((), {}), timeout=5, metadata=(
                ("traceparent", header), ("tracestate", "vendor=abc"), ("baggage", "user=ann"))))
    assert seen == {"baggage": {"user": "ann"}, "tracestate": "vendor=abc",
                    "trace_id": "0af7651916cd43dd8448eb211c80319c"}
    relayed = [s for s in exporter.get_finished_spans() if s.name == "/trace.Relay/relay"][0]
    assert relayed.parent.span_id == 0xb7ad6b7169203331 and relayed.parent.is_remote


@govrpc.service("trace.Slow")
class Slow:
    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def hold(self) -> list[str]:
        self.entered.set()
        self.release.wait(5)
        return list(current_ids())


def test_token_flow_and_metrics_run_on_the_shortcut_and_still_refuse(memory_registry: str) -> None:
    """Token check, rate and concurrency limits and metrics all have scopes: the calls build no
    Invocation, and the refusals are those of the chain (named, counted, the method not run)."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    slow = Slow()
    with govrpc.Server(memory_registry, port=0, token="s3cret-token-0123", metrics_registry=registry) as server:
        server.add(slow, tps=1000, concurrency=1)
        exported = server._hosted[govrpc.url.ServiceKey("trace.Slow")].exported
        assert exported is not None and exported.scope is not None and "hold" in exported.direct
        with govrpc.Client(memory_registry, local_first=False, timeout=5.0, token="s3cret-token-0123") as client, \
                govrpc.Client(memory_registry, local_first=False, timeout=5.0) as stranger:
            with pytest.raises(govrpc.UnauthenticatedError, match=r"trace\.Slow\.hold: the call carries no token"):
                stranger.proxy("trace.Slow", retries=0).hold()
            hold = client.proxy("trace.Slow", retries=0).hold
            first = futures.ThreadPoolExecutor(max_workers=1).submit(hold)
            assert slow.entered.wait(5)
            with pytest.raises(govrpc.RateLimitedError, match=r"trace\.Slow\.hold: limited on the provider "
                                                              r"by concurrency = 1"):
                hold()  # the one slot is taken
            slow.release.set()
            trace_id, _ = first.result(timeout=5)
            assert len(trace_id) == 32  # the trace stage ran around it too
            assert hold()[0] != trace_id
            refused = registry.get_sample_value("govrpc_refusals_total", {
                "side": "provider", "service": "trace.Slow", "method": "hold", "reason": "RateLimitedError"})
            served = registry.get_sample_value("grpc_server_call_duration_seconds_count",
                                               {"grpc_method": "trace.Slow/hold", "grpc_status": "OK"})
    assert refused == 1 and served == 2


@govrpc.service("trace.Annotated")
class Annotated:
    def work(self, order: str) -> str:
        span = otel_trace.get_current_span()  # govrpc's server span, as code inside a call sees it
        span.set_attribute("order.id", order)
        span.add_event("order.checked", {"order.items": 3})
        with otel_trace.get_tracer("shop").start_as_current_span("price"):  # the SDK's own span, nested
            pass
        return order


def test_code_inside_a_call_writes_on_the_server_span_and_nests_its_own(memory_registry: str, sdk: Any) -> None:
    _, exporter = sdk
    with govrpc.Server(memory_registry, port=0) as server, \
            govrpc.Client(memory_registry, local_first=False, timeout=5.0) as client:
        server.add(Annotated())
        assert client.proxy("trace.Annotated").work("o-17") == "o-17"
    finished = exporter.get_finished_spans()
    (served,) = [s for s in finished if s.kind is otel_trace.SpanKind.SERVER]
    (price,) = [s for s in finished if s.name == "price"]
    assert served.attributes["order.id"] == "o-17" and served.attributes["rpc.grpc.status_code"] == 0
    assert [(e.name, dict(e.attributes)) for e in served.events] == [("order.checked", {"order.items": 3})]
    assert price.parent.span_id == served.context.span_id and price.context.trace_id == served.context.trace_id


def test_a_sampler_that_drops_every_span_still_sends_the_ids_unsampled(memory_registry: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER", provider)
    seen: list[str] = []

    @govrpc.service("trace.Header")
    class Header:
        def header(self) -> str:
            span_context = otel_trace.get_current_span().get_span_context()
            seen.append(f"{span_context.trace_id:032x}")
            return "sampled" if span_context.trace_flags.sampled else "not sampled"

    try:
        with govrpc.Server(memory_registry, port=0) as server, \
                govrpc.Client(memory_registry, local_first=False, timeout=5.0) as client:
            server.add(Header())
            assert client.proxy("trace.Header").header() == "not sampled"
    finally:
        provider.shutdown()
    assert exporter.get_finished_spans() == () and seen[0] != "0" * 32


@govrpc.service("trace.Checked")
class Checked:
    def check(self, order: str) -> list[str]:
        if order == "bad":
            raise ValueError("no such order")
        with otel_trace.get_tracer("shop").start_as_current_span("price"):  # nested: the server span's child
            pass
        return list(current_ids())


def test_server_spans_waiting_in_a_batch_queue_end_after_the_answer_as_they_would_before(
        memory_registry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With batch processors only, a server span ends after its call's answer is sent
    (``otel.end_later``) and reads its caller's header only then, unless the code in the
    call reads its ids first: what is exported is the same parent, trace, times and outcome."""
    from govrpc.rpc import executor

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER", provider)
    later: list[str] = []
    run_later = executor._run_later

    def counted(work: list[Any]) -> None:
        later.extend(fn.__name__ for fn, _ in work)
        run_later(work)

    monkeypatch.setattr(executor, "_run_later", counted)
    try:
        with govrpc.Server(memory_registry, port=0) as server, \
                govrpc.Client(memory_registry, application="shop", local_first=False, timeout=5.0) as client:
            server.add(Checked())
            proxy = client.proxy("trace.Checked")
            seen = proxy.check("o-1")
            with pytest.raises(ValueError, match="no such order"):  # the provider's error, raised again here
                proxy.check("bad")
        deadline = time.monotonic() + 10  # a server span reaches the queue just after its call's answer
        while len(exporter.get_finished_spans()) < 5 and time.monotonic() < deadline:
            assert provider.force_flush(10_000)
            time.sleep(0.01)
    finally:
        provider.shutdown()
    assert later == ["_served", "_served"]  # both server spans, after their answers
    spans = exporter.get_finished_spans()
    served = sorted((s for s in spans if s.kind is otel_trace.SpanKind.SERVER), key=lambda s: s.start_time)
    called = sorted((s for s in spans if s.kind is otel_trace.SpanKind.CLIENT), key=lambda s: s.start_time)
    (price,) = [s for s in spans if s.name == "price"]
    assert len(served) == len(called) == 2
    for server_span, client_span in zip(served, called):
        assert server_span.parent.span_id == client_span.context.span_id and server_span.parent.is_remote
        assert server_span.context.trace_id == client_span.context.trace_id
        assert client_span.start_time < server_span.start_time < server_span.end_time < client_span.end_time
    assert seen == [f"{served[0].context.trace_id:032x}", f"{served[0].context.span_id:016x}"]
    assert price.parent.span_id == served[0].context.span_id
    assert served[0].attributes["rpc.grpc.status_code"] == 0 and served[0].status.is_ok
    assert served[1].attributes["rpc.grpc.status_code"] == 2 and not served[1].status.is_ok
    assert [e.name for e in served[1].events] == ["exception"]
    for server_span in served:  # the caller, written after the answer: the call's address is still there
        assert server_span.attributes["govrpc.caller"] == "shop" and server_span.attributes["net.peer.ip"] == "127.0.0.1"
        assert isinstance(server_span.attributes["net.peer.port"], int) and server_span.attributes["net.peer.port"] > 0
