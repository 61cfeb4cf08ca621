"""What a provider sees of a call, and what reaches the consumer from it, over gRPC and in-process alike.

``Client(local_first=False)`` makes calls cross gRPC; the default (True) calls a
provider of this process in-process. Each behaviour with both paths runs on both.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import grpc
import msgpack
import pytest

import govrpc
from govrpc.invocation import APPLICATION_KEY
from tests.integration.services import Echo, OutOfStock

PATHS = pytest.mark.parametrize("local_first", [False, True], ids=["grpc", "in-process"])


@govrpc.safe_exception
class Shortage(Exception):
    """A safe exception whose constructor takes two arguments."""

    def __init__(self, item: str, count: int) -> None:
        super().__init__(item, count)
        self.item, self.count = item, count


@govrpc.serializable
@dataclasses.dataclass
class Positive:
    """A value whose constructor refuses what a provider may still send (mutated after it was made)."""

    n: int

    def __post_init__(self) -> None:
        if self.n <= 0:
            raise ValueError("n must be positive")


@govrpc.service("test.Provided", idempotent=True)
class Provided:
    def __init__(self) -> None:
        self.hits = 0
        self.running = threading.Event()
        self.finished = threading.Event()
        self._lock = threading.Lock()

    def _hit(self) -> None:
        with self._lock:
            self.hits += 1

    def hit(self) -> int:
        self._hit()
        return self.hits

    def count(self) -> int:
        return self.hits

    def block(self, seconds: float) -> float:
        self.running.set()
        time.sleep(seconds)
        self.finished.set()
        return seconds

    def echo(self, value: Any) -> Any:
        self._hit()
        return value

    def raise_text(self, text: str) -> None:
        raise OutOfStock(text)

    def raise_key(self, key: str) -> None:
        raise KeyError(key)

    def raise_shortage(self, item: str, count: int) -> None:
        raise Shortage(item, count)

    def exit(self, kind: str) -> None:
        self._hit()
        raise SystemExit(3) if kind == "exit" else KeyboardInterrupt()

    def undecodable(self) -> Positive:
        value = Positive(1)
        value.n = -1  # encodes, but the consumer cannot rebuild it
        return value


class Recorder(govrpc.Filter):
    """A provider filter recording what it is bound to and what each call carries; sets trailers."""

    side = "provider"

    def __init__(self) -> None:
        self.urls: list[govrpc.URL] = []
        self.seen: list[tuple[dict[str, str], govrpc.invocation.ProviderContext]] = []

    def bind(self, url: govrpc.URL) -> govrpc.Filter:
        self.urls.append(url)
        return self

    def invoke(self, invoker: Any, invocation: Any) -> Any:
        assert invocation.context is not None
        self.seen.append((dict(invocation.attachments), invocation.context))
        invocation.context.set_trailing("x-served-by", "p1")
        invocation.context.set_trailing("x-load-bin", b"\x00\x07")
        return invoker.invoke(invocation)


class SendsBinary(govrpc.Filter):
    """A consumer filter adding a ``-bin`` attachment, as trace propagation does."""

    side = "consumer"
    level = "invoker"

    def invoke(self, invoker: Any, invocation: Any) -> Any:
        attachments = {**invocation.attachments, "trace-bin": b"\x01\x02"}
        return invoker.invoke(dataclasses.replace(invocation, attachments=attachments))


def _raw_call(port: int, method: str, payload: bytes, metadata: tuple = (), timeout: float = 5.0) -> Any:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return channel.unary_unary(f"/test.Provided/{method}").with_call(payload, timeout=timeout,
                                                                       metadata=metadata)


def test_a_provider_filter_sees_url_peer_application_binary_and_spec_and_sets_trailers(
        memory_registry, start_server) -> None:
    recorder = Recorder()
    server = start_server(memory_registry, Provided(), filters=[recorder])
    (bound,) = recorder.urls
    assert bound == server.urls[0] and bound.port == server.port and "hit" in bound.methods

    metadata = ((APPLICATION_KEY, "shop"), ("govrpc-key", "test.Provided"), ("trace-bin", b"\x00\xff"),
                ("tenant", "acme"))
    response, call = _raw_call(server.port, "echo", msgpack.packb([[5], {}]), metadata)
    assert msgpack.unpackb(response) == 5
    attachments, context = recorder.seen[-1]
    assert {k: v for k, v in attachments.items() if k != "traceparent"} == {"tenant": "acme"}  # no user-agent, grpc-* or govrpc-* keys
    assert context.peer.startswith("ipv4:127.0.0.1:") and context.application == "shop"
    assert context.binary == {"trace-bin": b"\x00\xff"}
    assert context.spec is not None and context.spec.name == "echo" and context.spec.idempotent
    trailers = dict(call.trailing_metadata())
    assert trailers["x-served-by"] == "p1" and trailers["x-load-bin"] == b"\x00\x07"

    with pytest.raises(grpc.RpcError) as info:  # on failure too
        _raw_call(server.port, "raise_text", msgpack.packb([["none"], {}]))
    assert dict(info.value.trailing_metadata())["x-served-by"] == "p1"


@PATHS
def test_the_consumer_application_and_binary_attachments_reach_provider_filters(
        memory_registry, start_server, local_first) -> None:
    recorder = Recorder()
    start_server(memory_registry, Provided(), filters=[recorder])
    with govrpc.Client(memory_registry, application="web", local_first=local_first,
                       filters=[SendsBinary()]) as client:
        with govrpc.attachments(tenant="acme"):
            assert client.proxy("test.Provided").echo("x") == "x"
    attachments, context = recorder.seen[-1]
    assert {k: v for k, v in attachments.items() if k != "traceparent"} == {"tenant": "acme"}
    assert context.application == "web"
    assert context.binary == {"trace-bin": b"\x01\x02"}
    assert context.spec is not None and context.spec.name == "echo"
    assert (context.peer == "in-process") == local_first


def test_the_application_travels_in_the_user_agent_not_as_metadata_of_each_call() -> None:
    """Over gRPC the consumer's channels name its application in their user-agent (sent on
    every call anyway, an indexed header): no ``govrpc-app`` entry is added per call."""
    from concurrent import futures

    seen: list[dict[str, Any]] = []

    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        seen.append(dict(context.invocation_metadata()))
        return msgpack.packb("ok")

    handler = grpc.method_handlers_generic_handler("test.Plain", {"echo": grpc.unary_unary_rpc_method_handler(echo)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with govrpc.Client(application="web shop/eu", timeout=5.0) as client:
            assert client.proxy("test.Plain", url=f"grpc://127.0.0.1:{port}", trace=False).echo() == "ok"
    finally:
        server.stop(0)
    metadata = seen[-1]
    assert APPLICATION_KEY not in metadata
    assert metadata["user-agent"].startswith("govrpc-app/web%20shop%2Feu ")


@PATHS
@pytest.mark.parametrize("filtered", [False, True], ids=["direct", "filtered"])
@pytest.mark.parametrize("style", ["sync", "oneway"])
def test_a_call_that_expired_in_the_server_queue_never_runs(memory_registry, start_server, local_first,
                                                            filtered, style) -> None:
    provider = Provided()
    start_server(memory_registry, provider, max_workers=1, filters=[Recorder()] if filtered else [])
    with govrpc.Client(memory_registry, local_first=local_first) as client:
        proxy = client.proxy("test.Provided", retries=0, timeout=5.0)
        ahead = proxy.block.future(1.0)  # holds the only worker
        assert provider.running.wait(5)
        late = client.proxy("test.Provided", retries=0, timeout=0.2)
        if style == "sync":
            with pytest.raises(govrpc.CallTimeoutError):
                late.hit()
        else:  # nobody waits for a oneway call, so nothing cancels it: the server must refuse it
            late.hit.oneway()
        assert ahead.result(timeout=5) == 1.0
        assert proxy.count() == 0  # answered after the queued call was taken: it never ran


@PATHS
@pytest.mark.parametrize("length", [2_700, 20_000])
def test_a_long_business_message_arrives_truncated_with_its_type(memory_registry, start_server, local_first,
                                                                 length) -> None:
    start_server(memory_registry, Provided())
    with govrpc.Client(memory_registry, local_first=local_first) as client:
        proxy = client.proxy("test.Provided", timeout=5.0)
        with pytest.raises(OutOfStock) as info:
            proxy.raise_text("я" * length)
        assert str(info.value).startswith("я" * 200) and f"truncated, {length} characters" in str(info.value)
        assert proxy.echo(1) == 1


@PATHS
def test_exceptions_are_rebuilt_from_their_args(memory_registry, start_server, local_first) -> None:
    start_server(memory_registry, Provided())
    with govrpc.Client(memory_registry, local_first=local_first) as client:
        proxy = client.proxy("test.Provided", timeout=5.0)
        with pytest.raises(KeyError) as key_error:
            proxy.raise_key("k")
        assert key_error.value.args == ("k",)
        with pytest.raises(Shortage) as shortage:
            proxy.raise_shortage("apples", 3)
        assert (shortage.value.item, shortage.value.count) == ("apples", 3)
        with pytest.raises(Shortage) as long:  # arguments too long to travel whole are cut, not lost
            proxy.raise_shortage("я" * 5_000, 4)
        assert long.value.item.startswith("я" * 200) and "truncated" in long.value.item and long.value.count == 4


@PATHS
@pytest.mark.parametrize("kind", ["exit", "interrupt"])
def test_a_base_exception_comes_back_at_once_and_is_not_retried(memory_registry, start_server, local_first,
                                                                kind) -> None:
    provider = Provided()
    start_server(memory_registry, provider)
    with govrpc.Client(memory_registry, local_first=local_first) as client:
        proxy = client.proxy("test.Provided", timeout=5.0, retries=2)  # idempotent: failover could resend
        with pytest.raises(govrpc.RemoteError) as info:
            proxy.exit(kind)
        assert info.value.remote_type == ("builtins.SystemExit" if kind == "exit" else "builtins.KeyboardInterrupt")
        assert not info.value.retryable and provider.hits == 1
        assert proxy.echo(2) == 2  # the server keeps serving


def test_an_undecodable_result_is_a_serialization_error_on_both_paths(memory_registry, start_server) -> None:
    start_server(memory_registry, Provided())
    for local_first in (False, True):
        with govrpc.Client(memory_registry, local_first=local_first) as client:
            with pytest.raises(govrpc.SerializationError, match="cannot decode the response"):
                client.proxy("test.Provided").undecodable()


@pytest.mark.parametrize("envelope", [{"x": 1, "y": 2}, [1, 2, 3], "text", [{"a": 1}, []], [[1], {1: 2}], [[1], [2]]],
                         ids=["map", "three", "string", "args-map", "int-key", "kwargs-list"])
def test_a_malformed_envelope_is_invalid_argument_and_runs_nothing(memory_registry, start_server, envelope) -> None:
    provider = Provided()
    server = start_server(memory_registry, provider)
    with pytest.raises(grpc.RpcError) as info:
        _raw_call(server.port, "echo", msgpack.packb(envelope))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "request" in info.value.details()
    assert provider.hits == 0
    assert msgpack.unpackb(_raw_call(server.port, "echo", msgpack.packb([["ok"], {}]))[0]) == "ok"


def test_stop_drains_in_process_calls(memory_registry) -> None:
    provider = Provided()
    server = govrpc.Server(memory_registry).add(provider).start()
    with govrpc.Client(memory_registry) as client:  # local-first: in-process
        in_flight = client.proxy("test.Provided", timeout=5.0, retries=0).block.future(1.0)
        assert provider.running.wait(5)
        stopper = threading.Thread(target=server.stop, kwargs={"grace": 4.0})
        stopper.start()
        stopper.join(10)
        assert not stopper.is_alive()
        assert provider.finished.is_set()  # the call had finished when stop returned...
        assert in_flight.result(timeout=5) == 1.0  # ...and its caller got the answer


def test_stop_past_its_grace_fails_queued_in_process_calls_over(memory_registry) -> None:
    provider = Provided()
    server = govrpc.Server(memory_registry, max_workers=1).add(provider).start()
    with govrpc.Client(memory_registry) as client:
        proxy = client.proxy("test.Provided", timeout=5.0, retries=0)
        running = proxy.block.future(1.5)
        assert provider.running.wait(5)
        queued = proxy.hit.future()
        server.stop(grace=0.3)
        with pytest.raises(govrpc.ProviderUnavailableError, match="stopped"):
            queued.result(timeout=5)
        assert running.result(timeout=5) == 1.5
        assert provider.hits == 0
