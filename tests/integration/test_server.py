"""Server lifecycle: register on start, deregister-drain-stop, bad configuration."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import govrpc
from govrpc.registry import acquire_registry, release_registry
from tests.helpers import wait_until
from tests.integration.services import Echo


def test_start_registers_and_stop_deregisters_then_drains(memory_registry, client_factory) -> None:
    registry = acquire_registry(memory_registry)
    server = govrpc.Server(memory_registry, weight=50, tags={"zone": "a"}, application="shop")
    server.add(Echo())
    assert registry.lookup("test.Echo") == []
    with server:
        assert server.port > 0
        (url,) = registry.lookup("test.Echo")
        assert url.address == f"127.0.0.1:{server.port}"
        assert url.params["weight"] == "50" and url.params["zone"] == "a"
        assert url.params["application"] == "shop"
        assert set(url.methods) >= {"echo", "sleep", "add"}
        assert url.params["echo.idempotent"] == "true"

        proxy = client_factory(memory_registry).proxy("test.Echo", timeout=5.0, retries=0)
        in_flight = proxy.sleep.future(1.0)
        time.sleep(0.2)
        stopper = threading.Thread(target=server.stop, kwargs={"grace": 3.0})
        stopper.start()
        time.sleep(0.1)
        assert registry.lookup("test.Echo") == []  # deregistered first...
        assert in_flight.result(timeout=5) == 1.0  # ...and the in-flight call still finished
        stopper.join(5)
    release_registry(registry)


def test_duplicate_service_and_bad_options_are_refused(memory_registry) -> None:
    server = govrpc.Server(memory_registry)
    server.add(Echo())
    with pytest.raises(govrpc.ConfigurationError, match="already hosted"):
        server.add(Echo())
    with pytest.raises(govrpc.ConfigurationError, match="weight"):
        govrpc.Server(memory_registry, weight=0)
    with pytest.raises(govrpc.ExtensionNotFoundError, match="pickle.*json"):
        govrpc.Server(memory_registry, serializer="pickle")
    stopped = govrpc.Server(memory_registry)
    stopped.start()
    stopped.stop(grace=0)
    with pytest.raises(govrpc.ConfigurationError, match="stopped"):
        stopped.add(Echo())


def test_services_added_inside_the_with_block_are_served(memory_registry, client_factory) -> None:
    """DESIGN.md's usage: ``with Server(...) as server: server.add(...)``."""
    with govrpc.Server(memory_registry) as server:
        server.add(Echo("late"))
        assert client_factory(memory_registry).proxy("test.Echo").whoami() == "late"


def test_two_versions_of_one_service_on_one_server(memory_registry, start_server, client_factory) -> None:
    @govrpc.service("test.Versioned", version="1")
    class V1:
        def which(self) -> str:
            return "v1"

    @govrpc.service("test.Versioned", version="2")
    class V2:
        def which(self) -> str:
            return "v2"

    start_server(memory_registry, V1(), V2())
    client = client_factory(memory_registry)
    assert {client.proxy("test.Versioned", version="1").which() for _ in range(5)} == {"v1"}
    assert {client.proxy("test.Versioned", version="2").which() for _ in range(5)} == {"v2"}


def test_a_version_added_after_start_is_served_beside_the_one_registered_with_grpc(
        memory_registry, start_server, client_factory) -> None:
    """The first version's methods were given to grpc as registered methods at start; a second
    version joining later on the same paths still gets the calls that name it."""
    @govrpc.service("test.Late", version="1")
    class V1:
        def which(self, n: int) -> str:
            return f"v1:{n}"

    @govrpc.service("test.Late", version="2")
    class V2:
        def which(self, n: int) -> str:
            return f"v2:{n}"

    server = start_server(memory_registry, V1())
    assert "/test.Late/which" in server._grpc._dispatcher.registered
    client = client_factory(memory_registry, local_first=False)
    assert client.proxy("test.Late", version="1").which(1) == "v1:1"
    server.add(V2())
    v2 = client.proxy("test.Late", version="2")
    wait_until(lambda: _answers(v2), what="version 2 listed")
    assert {v2.which(n) for n in range(5)} == {f"v2:{n}" for n in range(5)}
    assert {client.proxy("test.Late", version="1").which(n) for n in range(5)} == {f"v1:{n}" for n in range(5)}


def _answers(proxy: Any) -> bool:
    try:
        proxy.which(0)
        return True
    except govrpc.NoProviderError:
        return False


@pytest.mark.parametrize("address, message", [
    ("nowhere", "not a URL"),
    ("etcd://127.0.0.1:2379", "no govrpc.registry extension named 'etcd'"),
    ("file://relative/dir", "absolute path"),
])
def test_bad_registry_addresses_name_the_mistake(address: str, message: str) -> None:
    with pytest.raises(govrpc.ConfigurationError, match=message):
        govrpc.Client(address)


def test_unknown_strategy_names_list_the_installed_ones(memory_registry, client_factory) -> None:
    client = client_factory(memory_registry)
    with pytest.raises(govrpc.ExtensionNotFoundError, match="'nope'.*failover"):
        client.proxy("test.Echo", cluster="nope")
    with pytest.raises(govrpc.ExtensionNotFoundError, match="'nope'.*random"):
        client.proxy("test.Echo", loadbalance="nope")
    with pytest.raises(govrpc.ConfigurationError, match="timeout"):
        client.proxy("test.Echo", timeout=0)


def test_services_added_concurrently_after_start_are_all_served(memory_registry, client_factory) -> None:
    classes = []
    for n in range(8):
        @govrpc.service(f"test.Many{n}")
        class Many:
            def __init__(self, n: int) -> None:
                self.n = n

            def which(self) -> int:
                return self.n

        classes.append(Many)
    with govrpc.Server(memory_registry) as server:
        adders = [threading.Thread(target=server.add, args=(cls(n),)) for n, cls in enumerate(classes)]
        for t in adders:
            t.start()
        for t in adders:
            t.join()
        client = client_factory(memory_registry)
        assert [client.proxy(f"test.Many{n}").which() for n in range(8)] == list(range(8))
