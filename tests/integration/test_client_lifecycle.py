"""A closed client says so; closing lets calls in flight finish; proxies know their methods."""

from __future__ import annotations

import threading

import pytest

import govrpc
from tests.integration.services import Echo


@pytest.fixture
def setup(memory_registry, start_server, client_factory):
    provider = Echo("p1")
    start_server(memory_registry, provider)
    client = client_factory(memory_registry, local_first=False)
    return provider, client


def test_calls_after_close_say_the_client_is_closed(setup) -> None:
    _, client = setup
    proxy = client.proxy("test.Echo", timeout=2.0)
    assert proxy.echo(1) == 1
    client.close()
    with pytest.raises(govrpc.ConfigurationError, match="client is closed"):
        proxy.echo(2)
    with pytest.raises(govrpc.ConfigurationError, match="client is closed"):
        proxy.echo.oneway(2)
    assert "client is closed" in str(proxy.echo.future(3).exception(timeout=5))
    with pytest.raises(govrpc.ConfigurationError, match="client is closed"):
        client.invoke("test.Echo", "echo", [4])
    assert client._executor is None  # .future() after close started no pool


def test_close_lets_calls_in_flight_finish(setup) -> None:
    _, client = setup
    proxy = client.proxy("test.Echo", timeout=5.0)
    assert proxy.echo(0) == 0
    results: list[object] = []
    caller = threading.Thread(target=lambda: results.append(proxy.sleep(0.5)))
    caller.start()
    future = proxy.sleep.future(0.5)
    threading.Event().wait(0.2)  # both calls are on the wire
    client.close()
    caller.join(10)
    assert results == [0.5]  # finished, not failed by the close
    assert future.exception(timeout=5) is None


def test_hasattr_tells_the_truth_once_providers_are_listed(setup) -> None:
    _, client = setup
    proxy = client.proxy("test.Echo")
    assert hasattr(proxy, "echo")
    assert not hasattr(proxy, "anything")
    with pytest.raises(govrpc.MethodNotFoundError, match="no method 'anything'.*echo"):
        proxy.anything()
    assert "anything" not in vars(proxy)
    nobody = client.proxy("test.Nobody")  # no provider yet: any name, not cached
    assert hasattr(nobody, "whatever") and "whatever" not in vars(nobody)
    address = client.reference("test.Echo").directory.invokers[0].url.address
    direct = client.proxy("test.Echo", url=f"grpc://{address}")  # fixed providers, no method list
    assert direct.echo("hi") == "hi" and vars(direct)["echo"] is direct.echo  # cached: one MethodProxy


def test_per_method_caches_are_bounded_on_hostile_names(setup) -> None:
    _, client = setup
    for i in range(300):
        with pytest.raises(govrpc.MethodNotFoundError):
            client.invoke("test.Echo", f"m{i}", [], timeout=2.0)
    transport = client.reference("test.Echo").directory.invokers[0].transport
    assert len(transport._methods) <= 64 + 10  # bounded: 64 unknown names and the service's own
