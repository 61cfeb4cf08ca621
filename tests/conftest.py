"""Shared fixtures: an isolated registry per test, helpers to start servers."""

from __future__ import annotations

import uuid
from typing import Any, Callable, Iterator

import pytest

import govrpc


@pytest.fixture
def memory_registry() -> str:
    """A memory registry URL of this test's own (memory registries are per URL)."""
    return f"memory://test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def file_registry(tmp_path: Any) -> str:
    return f"file://{tmp_path}/registry"


@pytest.fixture
def start_server() -> Iterator[Callable[..., govrpc.Server]]:
    """``start_server(registry, *services, **options)``: a started Server, stopped at the end."""
    servers: list[govrpc.Server] = []

    def start(registry: str, *services: Any, **options: Any) -> govrpc.Server:
        server = govrpc.Server(registry, **options)
        for s in services:
            server.add(s)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(grace=0.5)


@pytest.fixture
def client_factory() -> Iterator[Callable[..., govrpc.Client]]:
    clients: list[govrpc.Client] = []

    def make(registry: str, **options: Any) -> govrpc.Client:
        # these tests are about what crosses gRPC: in-process calls are opted into explicitly
        options.setdefault("local_first", False)
        client = govrpc.Client(registry, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


# -- ZooKeeper (tests/zkharness.py): session server, private servers, addresses --
from tests.zkharness import zk_url, zookeeper, zookeeper_private  # noqa: E402,F401
