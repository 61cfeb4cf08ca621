"""grpc.health.v1 on every govrpc server, NOT_SERVING from the start of a stop; reflection on request."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import govrpc
from tests.helpers import wait_until
from tests.integration.services import Echo

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def check(port: int, service: str = "") -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                         timeout=5).status


def test_every_service_and_the_server_are_serving(memory_registry, start_server) -> None:
    server = start_server(memory_registry, Echo())
    assert check(server.port) == SERVING
    assert check(server.port, "test.Echo") == SERVING
    with pytest.raises(grpc.RpcError) as caught:
        check(server.port, "no.Such")
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


def test_health_turns_not_serving_when_a_drain_begins_before_the_server_stops(memory_registry, client_factory) -> None:
    server = govrpc.Server(memory_registry).add(Echo()).start()
    client = client_factory(memory_registry, timeout=10.0)
    slow = threading.Thread(target=lambda: client.proxy("test.Echo").sleep(1.5))
    seen: list[tuple[int, str]] = []
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service="test.Echo"),
                                                       timeout=20)

    def watch() -> None:
        try:
            for answer in stream:
                seen.append((answer.status, str(server.state)))
        except grpc.RpcError:
            pass  # the server went away: the stream ends

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        wait_until(lambda: seen, what="the first health answer")
        slow.start()
        wait_until(lambda: server._grpc.hosts("test.Echo") and client.pool.addresses(), what="the slow call sent")
        time.sleep(0.2)
        stopper = threading.Thread(target=server.stop, kwargs={"grace": 5.0})
        stopper.start()
        wait_until(lambda: any(status == NOT_SERVING for status, _ in seen), what="NOT_SERVING watched")
        stopper.join(timeout=15)
        slow.join(timeout=15)
    finally:
        stream.cancel()
        watcher.join(timeout=10)
        channel.close()
        server.stop(grace=0)
    assert seen[0] == (SERVING, "started")
    # NOT_SERVING came while the server was still draining, not after it stopped
    assert (NOT_SERVING, "stopping") in seen


def test_reflection_lists_the_services_on_request(memory_registry, start_server) -> None:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    server = start_server(memory_registry, Echo(), reflection=True)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {"test.Echo", "grpc.health.v1.Health"} <= services
    plain = start_server(memory_registry, Echo(), port=0)
    with grpc.insecure_channel(f"127.0.0.1:{plain.port}") as channel, pytest.raises(grpc.RpcError):
        list(ProtoReflectionDescriptorDatabase(channel).get_services())


def test_server_without_health_answers_unimplemented(memory_registry, start_server) -> None:
    server = start_server(memory_registry, Echo(), health=False)
    with pytest.raises(grpc.RpcError) as caught:
        check(server.port)
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
