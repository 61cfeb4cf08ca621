"""The blocking unary call straight to grpc's core (``govrpc.rpc.unary``) against grpcio's own call.

Every case runs on both paths ("core": ``blocking_call``; "grpc": ``unary.ENABLED = False``, so
the invoker keeps grpcio's multicallable) and must come out the same: values,
business exceptions, a provider's refusal with its trailers, deadlines, calls made from a provider's
thread, unknown methods, a provider gone.
"""

from __future__ import annotations

import threading
import time
from concurrent import futures
from typing import Any, Iterator

import grpc
import pytest
from grpc import _channel as grpc_channel
from grpc import _observability

import govrpc
from govrpc.rpc import unary
from tests.integration.services import Echo, OutOfStock


@pytest.fixture(params=["core", "grpc"])
def path(request: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[int]]]:
    """The path under test, and a count of the calls that went through grpcio's own ``__call__``."""
    monkeypatch.setattr(unary, "ENABLED", request.param == "core")
    public: list[int] = []
    original = grpc_channel._UnaryUnaryMultiCallable.__call__

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        public.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(grpc_channel._UnaryUnaryMultiCallable, "__call__", counted)
    yield request.param, public


@govrpc.service("unary.Outer")
class Outer:
    """Calls test.Echo.sleep from inside a call it is handling, with a timeout of its own."""

    def __init__(self, client: govrpc.Client) -> None:
        self.client = client
        self.nested: list[tuple[str, float]] = []
        self.done = threading.Event()

    def relay(self, seconds: float) -> str:
        started = time.monotonic()
        try:
            self.client.proxy("test.Echo", timeout=30.0, cluster="failfast").sleep(seconds)
            outcome = "answered"
        except govrpc.GovRpcError as exc:
            outcome = type(exc).__name__
        self.nested.append((outcome, time.monotonic() - started))
        self.done.set()
        return outcome


def test_values_and_business_errors_are_the_same_on_both_paths(
        path: tuple[str, list[int]], memory_registry: str, start_server: Any, client_factory: Any) -> None:
    kind, public = path
    start_server(memory_registry, Echo("p1"))
    client = client_factory(memory_registry)
    proxy = client.proxy("test.Echo", timeout=5.0)
    assert proxy.echo({"a": [1, 2], "b": b"\x00\xff"}) == {"a": [1, 2], "b": b"\x00\xff"}
    assert proxy.add(2, b=5) == 7
    with pytest.raises(OutOfStock, match="no apples left"):
        proxy.buy("apples")
    with pytest.raises(govrpc.MethodNotFoundError):
        client.invoke("test.Echo", "no_such_method")
    assert proxy.echo(1) == 1
    assert (len(public) == 0) == (kind == "core")  # the core path never ran grpcio's own call


def test_a_refusal_keeps_its_trailers(path: tuple[str, list[int]], memory_registry: str, start_server: Any,
                                      client_factory: Any) -> None:
    server = govrpc.Server(memory_registry, port=0)
    server.add(Echo("limited"), tps=1)
    server.start()
    try:
        proxy = client_factory(memory_registry).proxy("test.Echo", timeout=5.0, cluster="failfast")
        refusals = []
        for _ in range(5):
            try:
                proxy.echo(1)
            except govrpc.RateLimitedError as exc:
                refusals.append(exc)
        assert refusals, "a provider limited to 1 call/s let 5 calls in a row through"
        # the limit and its pushback came back in the trailing metadata and the status details
        assert refusals[0].limit and refusals[0].retry_after is not None
    finally:
        server.stop(grace=0.5)


def test_the_callers_deadline_is_kept_and_a_provider_calls_on_with_its_own(
        path: tuple[str, list[int]], memory_registry: str, start_server: Any, client_factory: Any) -> None:
    start_server(memory_registry, Echo("p1"))
    outer = Outer(client_factory(memory_registry))
    start_server(memory_registry, outer)
    client = client_factory(memory_registry)
    started = time.monotonic()
    with pytest.raises(govrpc.CallTimeoutError):
        client.proxy("test.Echo", timeout=0.3, cluster="failfast").sleep(3.0)
    assert time.monotonic() - started < 2.0
    # from a provider's worker thread (grpc sets no deadline of its own there: the call's is kept)
    assert client.proxy("unary.Outer", timeout=5.0, cluster="failfast").relay(0.7) == "answered"
    (outcome, took), = outer.nested
    assert outcome == "answered" and took >= 0.7


def test_a_provider_that_left_is_refused_on_both_paths(path: tuple[str, list[int]], memory_registry: str,
                                                      client_factory: Any) -> None:
    server = govrpc.Server(memory_registry, port=0)
    server.add(Echo("gone"))
    server.start()
    port = server.port
    proxy = client_factory(memory_registry).proxy("test.Echo", url=f"grpc://127.0.0.1:{port}", timeout=2.0,
                                                  cluster="failfast")
    assert proxy.echo(1) == 1
    server.stop(grace=0.2)
    with pytest.raises((govrpc.ConnectionRefusedByProviderError, govrpc.ProviderUnavailableError)):
        proxy.echo(2)


def test_grpc_errors_are_grpcios_own() -> None:
    """What a caught error offers (code, details, trailers, debug string) is grpcio's RpcError."""
    server = grpc.server(futures.ThreadPoolExecutor(2))

    def refuse(request: bytes, context: grpc.ServicerContext) -> bytes:
        context.set_trailing_metadata((("why", "testing"),))
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not now")

    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "unary.Raw", {"echo": grpc.unary_unary_rpc_method_handler(lambda request, context: request),
                      "refuse": grpc.unary_unary_rpc_method_handler(refuse)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        echo = unary.blocking_call(channel.unary_unary("/unary.Raw/echo", _registered_method=True))
        refused = channel.unary_unary("/unary.Raw/refuse", _registered_method=True)
        direct = unary.blocking_call(refused)
        assert echo is not None and direct is not None
        assert echo(b"\x00abc", 5.0, (("k", "v"),)) == b"\x00abc"
        with pytest.raises(grpc.RpcError) as core_error:
            direct(b"", 5.0, None)
        with pytest.raises(grpc.RpcError) as grpc_error:
            refused(b"", timeout=5.0)
        for error in (core_error.value, grpc_error.value):
            assert error.code() is grpc.StatusCode.FAILED_PRECONDITION and error.details() == "not now"
            assert ("why", "testing") in tuple(error.trailing_metadata())
            assert isinstance(error, grpc.Call) and error.debug_error_string()
        with pytest.raises(grpc.RpcError) as late:
            echo(b"x", -1.0, None)  # a deadline already passed
        assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        channel.close()
        server.stop(0)


def test_where_the_core_path_is_not_known_to_hold_grpcios_own_call_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    channel = grpc.insecure_channel("127.0.0.1:1")
    try:
        assert unary.blocking_call(channel.unary_unary("/x.Y/z", _registered_method=True)) is not None
        class PassOn(grpc.UnaryUnaryClientInterceptor):
            def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
                return continuation(details, request)

        intercepted = grpc.intercept_channel(channel, PassOn())
        assert unary.blocking_call(intercepted.unary_unary("/x.Y/z", _registered_method=True)) is None
        assert unary.blocking_call(channel.unary_stream("/x.Y/z", _registered_method=True)) is None
        monkeypatch.setattr(unary, "ENABLED", False)
        assert unary.blocking_call(channel.unary_unary("/x.Y/z", _registered_method=True)) is None
    finally:
        channel.close()


def test_with_an_observability_plugin_every_call_takes_grpcios_own_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """grpc_observability records each call's latency in the Python the core path skips."""
    server = grpc.server(futures.ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "unary.Raw", {"echo": grpc.unary_unary_rpc_method_handler(lambda request, context: request)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    recorded: list[str] = []

    class Plugin:  # what grpc reads of a registered plugin: stats recorded in Python, nothing in the core
        stats_enabled = True
        observability_enabled = False
        tracing_enabled = False

        def record_rpc_latency(self, method: str, target: str, latency_ms: float, code: Any) -> None:
            recorded.append(method)

    try:
        call = unary.blocking_call(channel.unary_unary("/unary.Raw/echo", _registered_method=True))
        assert call is not None
        assert call(b"a", 5.0, None) == b"a" and recorded == []
        monkeypatch.setattr(_observability, "_OBSERVABILITY_PLUGIN", Plugin())
        assert call(b"b", 5.0, None) == b"b"
        assert recorded == ["/unary.Raw/echo"]
    finally:
        channel.close()
        server.stop(0)
