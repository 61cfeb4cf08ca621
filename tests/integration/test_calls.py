"""A governed call end to end over real gRPC: every call style, errors, limits."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

import pytest

import govrpc
from tests.integration.services import Echo, OutOfStock


@pytest.fixture
def echo(memory_registry, start_server, client_factory):
    provider = Echo("p1")
    server = start_server(memory_registry, provider)
    client = client_factory(memory_registry, application="web")
    return provider, server, client


def test_sync_future_oneway_and_generic_calls(echo) -> None:
    provider, _, client = echo
    proxy = client.proxy("test.Echo", timeout=2.0)
    assert proxy.echo({"a": [1, 2], "b": b"\x00\xff"}) == {"a": [1, 2], "b": b"\x00\xff"}
    assert proxy.add(2, b=5) == 7

    future = proxy.add.future(20, 22)
    assert isinstance(future, Future)
    seen: list[int] = []
    done = threading.Event()
    future.add_done_callback(lambda f: (seen.append(f.result()), done.set()))
    assert future.result(timeout=5) == 42
    assert done.wait(5) and seen == [42]

    started = time.monotonic()
    assert proxy.sleep.oneway(0.5) is None
    assert time.monotonic() - started < 0.4  # did not wait for the provider's half second
    assert proxy.notify.oneway("hi") is None
    assert provider.oneway_seen.wait(5)

    assert client.invoke("test.Echo", "add", [1, 2]) == 3
    assert client.invoke("test.Echo", "add", [1], {"b": 9}) == 10


def test_business_exceptions_keep_type_and_message(echo) -> None:
    _, _, client = echo
    proxy = client.proxy("test.Echo")
    with pytest.raises(OutOfStock, match="no apples left"):
        proxy.buy("apples")
    with pytest.raises(govrpc.RemoteError) as info:
        proxy.fail()
    assert info.value.remote_type.endswith("services.Unregistered")
    assert "something private went wrong" in str(info.value)
    assert proxy.echo(1) == 1  # the server keeps serving


def test_unknown_method_and_service_are_named(echo, memory_registry) -> None:
    _, server, client = echo
    proxy = client.proxy("test.Echo")
    with pytest.raises(govrpc.MethodNotFoundError) as info:
        proxy.nothing()
    assert "nothing" in str(info.value) and "echo" in str(info.value)
    direct = client.proxy("test.Missing", url=f"grpc://127.0.0.1:{server.port}")
    with pytest.raises(govrpc.MethodNotFoundError, match="no service 'test.Missing'.*test.Echo"):
        direct.anything()
    with pytest.raises(govrpc.NoProviderError, match="test.Missing"):
        client.proxy("test.Missing").anything()
    assert proxy.echo("still up") == "still up"


def test_values_the_serializer_cannot_carry(echo) -> None:
    _, _, client = echo
    proxy = client.proxy("test.Echo")
    with pytest.raises(govrpc.SerializationError, match="msgpack"):
        proxy.echo(object())
    with pytest.raises(govrpc.SerializationError, match="cannot encode the result"):
        proxy.unencodable()
    assert proxy.echo([1]) == [1]


def test_every_call_has_a_deadline(echo) -> None:
    _, _, client = echo
    proxy = client.proxy("test.Echo", timeout=0.3, retries=0)
    started = time.monotonic()
    with pytest.raises(govrpc.CallTimeoutError, match="test.Echo.sleep"):
        proxy.sleep(3)
    assert time.monotonic() - started < 2.5
    with pytest.raises(govrpc.CallTimeoutError):
        proxy.sleep.future(3).result(timeout=5)
    assert proxy.echo(5) == 5


def test_oversized_messages_are_refused_and_the_server_stays_up(memory_registry, start_server,
                                                                 client_factory) -> None:
    start_server(memory_registry, Echo(), max_message_size=64 * 1024)
    client = client_factory(memory_registry, max_message_size=64 * 1024)
    proxy = client.proxy("test.Echo", retries=0)
    with pytest.raises(govrpc.MessageTooLargeError):
        proxy.echo(b"x" * 200_000)
    with pytest.raises(govrpc.MessageTooLargeError):
        proxy.blob(200_000)
    assert proxy.blob(10) == b"x" * 10


def test_json_serializer(memory_registry, start_server, client_factory) -> None:
    start_server(memory_registry, Echo(), serializer="json")
    client = client_factory(memory_registry)
    proxy = client.proxy("test.Echo")
    assert proxy.echo({"k": ["v", 1, 2.5, None]}) == {"k": ["v", 1, 2.5, None]}
    assert proxy.echo(b"\x00bytes") == b"\x00bytes"  # tagged as base64
    with pytest.raises(govrpc.SerializationError, match="json"):
        proxy.echo(object())


def test_attachments_reach_the_provider(memory_registry, start_server, client_factory) -> None:
    seen: list[dict] = []

    class Capture(govrpc.Filter):
        side = "provider"

        def invoke(self, invoker, invocation):
            seen.append(dict(invocation.attachments))
            return invoker.invoke(invocation)

    start_server(memory_registry, Echo(), filters=[Capture()])
    proxy = client_factory(memory_registry).proxy("test.Echo")
    with govrpc.attachments(tenant="acme", tag="gray"):
        assert proxy.echo(1) == 1
    assert proxy.echo(2) == 2
    assert seen[0]["tenant"] == "acme" and seen[0]["tag"] == "gray"
    assert "tenant" not in seen[1]


def test_filter_chains_on_both_sides_in_order(memory_registry, start_server, client_factory) -> None:
    log: list[str] = []

    def make(name: str, side: str, order: int) -> govrpc.Filter:
        class Step(govrpc.Filter):
            def invoke(self, invoker, invocation):
                log.append(name)
                return invoker.invoke(invocation)

        Step.side, Step.order = side, order
        return Step()

    class Deny(govrpc.Filter):
        side = "provider"
        order = 100

        def invoke(self, invoker, invocation):
            if invocation.method == "add":
                raise govrpc.RateLimitedError("add is limited")
            return invoker.invoke(invocation)

    start_server(memory_registry, Echo(), filters=[make("p2", "provider", 2), make("p1", "provider", 1), Deny()])
    client = client_factory(memory_registry, filters=[make("c2", "consumer", 2), make("c1", "consumer", 1)])
    proxy = client.proxy("test.Echo", retries=0)
    assert proxy.echo(1) == 1
    assert log == ["c1", "c2", "p1", "p2"]
    with pytest.raises(govrpc.RateLimitedError, match="add is limited"):
        proxy.add(1, 2)
    with pytest.raises(govrpc.ConfigurationError, match="provider side"):
        govrpc.Client(memory_registry, filters=[Deny()])


def test_one_channel_per_address_closed_when_the_provider_leaves(memory_registry, start_server,
                                                                 client_factory) -> None:
    @govrpc.service("test.Other")
    class Other:
        def ping(self) -> str:
            return "pong"

    server = start_server(memory_registry, Echo(), Other())
    client = client_factory(memory_registry)
    assert client.proxy("test.Echo").echo(1) == 1
    assert client.proxy("test.Other").ping() == "pong"
    assert client.pool.addresses() == [f"127.0.0.1:{server.port}"]
    server.stop(grace=0.5)
    assert client.pool.addresses() == []
