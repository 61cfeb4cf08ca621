"""``.future()`` over gRPC: grpc's own non-blocking call, no client thread parked per call."""

from __future__ import annotations

import socket

import govrpc
from tests.integration.services import Echo, OutOfStock


def _dead_address() -> str:
    with socket.socket() as s:  # a port nobody listens on once the socket is closed
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_futures_use_no_client_worker(memory_registry, start_server, client_factory) -> None:
    start_server(memory_registry, Echo("p1"))
    client = client_factory(memory_registry, local_first=False)
    proxy = client.proxy("test.Echo", timeout=5.0)
    futures = [proxy.add.future(i, 1) for i in range(50)]
    assert [f.result(timeout=10) for f in futures] == [i + 1 for i in range(50)]
    assert client._executor is None  # not one call waited on a worker thread


def test_a_future_carries_the_business_error(memory_registry, start_server, client_factory) -> None:
    start_server(memory_registry, Echo("p1"))
    client = client_factory(memory_registry, local_first=False)
    future = client.proxy("test.Echo").buy.future("apples")
    exc = future.exception(timeout=5)
    assert isinstance(exc, OutOfStock) and "no apples left" in str(exc)


def test_a_failed_first_attempt_is_retried_on_another_provider(memory_registry, start_server,
                                                               client_factory) -> None:
    server = start_server(memory_registry, Echo("alive"))
    dead = f"grpc://{_dead_address()}"
    alive = f"grpc://127.0.0.1:{server.port}"
    client = client_factory(memory_registry, local_first=False)
    # roundrobin over [dead, alive]: every other first attempt hits the dead one and fails over
    proxy = client.proxy("test.Echo", url=[dead, alive], loadbalance="roundrobin", retries=1, timeout=5.0)
    results = [proxy.whoami.future().result(timeout=10) for _ in range(6)]
    assert results == ["alive"] * 6
    assert client._executor is not None  # the retries ran on a worker, not on grpc's thread


def test_no_provider_is_reported_through_the_future(memory_registry, client_factory) -> None:
    client = client_factory(memory_registry, local_first=False)
    future = client.proxy("test.Nobody", timeout=1.0).anything.future()
    assert isinstance(future.exception(timeout=5), govrpc.NoProviderError)
