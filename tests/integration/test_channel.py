"""Generated stubs under governance: ``client.channel`` and ``server.add_servicer``.

The stubs are generated at test time with grpc_tools.protoc from ``stubs.proto``.
"""

from __future__ import annotations

import collections
import socket
import subprocess
import sys
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

import govrpc
from govrpc.invocation import Filter
from tests.integration.stubs_servicer import load, servicer

SERVICE = "govrpctest.stubs.Greeter"


@pytest.fixture(scope="module")
def stubs(tmp_path_factory) -> tuple[Any, Any, Path]:
    out = tmp_path_factory.mktemp("stubs")
    pb2, pb2_grpc = load(out)
    return pb2, pb2_grpc, out


class CountingFilter(Filter):
    side = "provider"

    def __init__(self) -> None:
        self.methods: list[str] = []

    def invoke(self, invoker: Any, invocation: Any) -> Any:
        self.methods.append(invocation.method)
        return invoker.invoke(invocation)


@pytest.fixture
def servers() -> Any:
    made: list[govrpc.Server] = []
    yield made
    for server in made:
        server.stop(grace=0)


def serve(made: list[govrpc.Server], registry: str, stubs, name: str, **options: Any) -> tuple[govrpc.Server, Any]:
    pb2, pb2_grpc, _ = stubs
    server = govrpc.Server(registry, **options)
    impl = servicer(pb2, pb2_grpc, name)
    server.add_servicer(pb2_grpc.add_GreeterServicer_to_server, impl)
    made.append(server.start())
    return server, impl


def test_all_four_call_kinds_through_a_governed_channel(stubs, memory_registry, servers, client_factory) -> None:
    pb2, pb2_grpc, _ = stubs
    counting = CountingFilter()
    serve(servers, memory_registry, stubs, "a", filters=[counting])
    client = client_factory(memory_registry)
    stub = pb2_grpc.GreeterStub(client.channel(SERVICE, timeout=5.0))

    assert stub.SayHello(pb2.HelloRequest(name="ann")).message == "hello ann"
    reply, call = stub.SayHello.with_call(pb2.HelloRequest(name="bob"))
    assert reply.message == "hello bob" and call.code() is grpc.StatusCode.OK
    assert stub.SayHello.future(pb2.HelloRequest(name="cy")).result(timeout=5).message == "hello cy"
    assert [r.message for r in stub.ListHellos(pb2.HelloRequest(name="dee", count=3))] == \
        ["hello dee #0", "hello dee #1", "hello dee #2"]
    assert stub.CollectHellos(iter([pb2.HelloRequest(name=n) for n in "xyz"])).message == "x,y,z"
    assert [r.message for r in stub.ChatHellos(iter([pb2.HelloRequest(name=n) for n in "pq"]))] == ["hi p", "hi q"]
    assert counting.methods == ["SayHello"] * 3  # unary calls ran the provider filters

    with pytest.raises(grpc.RpcError) as caught:  # the servicer's own abort reaches the stub's caller
        stub.SayHello(pb2.HelloRequest(name="missing"))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND and "nobody called missing" in caught.value.details()


def test_add_servicer_registers_under_the_grpc_service_name_for_every_kind_of_caller(
        stubs, memory_registry, servers, client_factory) -> None:
    pb2, pb2_grpc, _ = stubs
    server, _ = serve(servers, memory_registry, stubs, "a")
    (url,) = server.urls
    assert url.path == SERVICE and "SayHello.idempotent=true" in str(url)  # the .proto's idempotency_level
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as plain:  # a plain stub on a plain channel
        assert pb2_grpc.GreeterStub(plain).SayHello(pb2.HelloRequest(name="ann"), timeout=5).server == "a"
    proxy = client_factory(memory_registry).proxy(SERVICE, timeout=5.0)  # a govrpc proxy, protobuf in and out
    assert proxy.SayHello(pb2.HelloRequest(name="sue")).message == "hello sue"
    with pytest.raises(govrpc.ConfigurationError, match="generated add_"):
        govrpc.Server(memory_registry).add_servicer(lambda servicer, server: None, object())


def test_unary_calls_and_streams_spread_over_providers(stubs, memory_registry, servers, client_factory) -> None:
    pb2, pb2_grpc, _ = stubs
    serve(servers, memory_registry, stubs, "a")
    serve(servers, memory_registry, stubs, "b")
    client = client_factory(memory_registry)
    stub = pb2_grpc.GreeterStub(client.channel(SERVICE, loadbalance="roundrobin", timeout=5.0))
    unary = collections.Counter(stub.SayHello(pb2.HelloRequest(name="n")).server for _ in range(10))
    assert unary == {"a": 5, "b": 5}
    streams = []
    for _ in range(6):
        replies = list(stub.ListHellos(pb2.HelloRequest(name="s", count=4)))
        assert len({r.server for r in replies}) == 1  # one provider per stream
        streams.append(replies[0].server)
    assert collections.Counter(streams) == {"a": 3, "b": 3}
    chats = collections.Counter(next(iter(stub.ChatHellos(iter([pb2.HelloRequest(name="c")])))).server
                                for _ in range(4))
    assert chats == {"a": 2, "b": 2}


def test_a_plain_grpcio_server_list_is_called_with_failover(stubs, client_factory, memory_registry) -> None:
    pb2, pb2_grpc, _ = stubs
    plain = []
    try:
        for name in ("p", "q"):
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
            pb2_grpc.add_GreeterServicer_to_server(servicer(pb2, pb2_grpc, name), server)
            port = server.add_insecure_port("127.0.0.1:0")
            server.start()
            plain.append((server, port))
        with socket.socket() as probe:  # a port nobody listens on: connections are refused
            probe.bind(("127.0.0.1", 0))
            dead_port = probe.getsockname()[1]
        urls = [f"grpc://127.0.0.1:{port}" for _, port in plain] + [f"grpc://127.0.0.1:{dead_port}"]
        client = client_factory(memory_registry)
        stub = pb2_grpc.GreeterStub(client.channel(SERVICE, url=urls, loadbalance="roundrobin", timeout=5.0))
        answers = collections.Counter(stub.SayHello(pb2.HelloRequest(name="x")).server for _ in range(9))
        assert set(answers) == {"p", "q"} and sum(answers.values()) == 9  # the dead one was failed over
        only_dead = pb2_grpc.GreeterStub(client.channel(SERVICE, url=urls[2:], timeout=2.0))
        with pytest.raises(grpc.RpcError) as caught:
            only_dead.SayHello(pb2.HelloRequest(name="x"))
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        assert isinstance(caught.value.error, govrpc.GovRpcError)  # the govrpc error is kept
    finally:
        for server, _ in plain:
            server.stop(0)


def test_a_channel_serves_one_service_only(stubs, memory_registry, client_factory) -> None:
    channel = client_factory(memory_registry).channel(SERVICE)
    with pytest.raises(govrpc.ConfigurationError, match="one channel per service"):
        channel.unary_unary("/other.Service/Method")


def test_failover_of_a_stub_call_when_a_provider_is_sigkilled(stubs, file_registry, client_factory) -> None:
    pb2, pb2_grpc, out = stubs
    root = str(Path(__file__).resolve().parents[2])
    procs = []
    try:
        for name in ("k0", "k1", "k2"):
            proc = subprocess.Popen([sys.executable, "-m", "tests.integration.stubs_servicer", str(out),
                                     file_registry, name], stdout=subprocess.PIPE, text=True, cwd=root)
            assert proc.stdout is not None
            int(proc.stdout.readline())
            procs.append(proc)
        client = client_factory(file_registry, timeout=5.0)
        stub = pb2_grpc.GreeterStub(client.channel(SERVICE, loadbalance="roundrobin", retries=2))
        seen: set[str] = set()
        for _ in range(300):
            seen.add(stub.SayHello(pb2.HelloRequest(name="warm")).server)
            if len(seen) == 3:
                break
        assert seen == {"k0", "k1", "k2"}
        answers: collections.Counter[str] = collections.Counter()
        for n in range(90):
            if n == 30:
                procs[0].kill()  # SIGKILL: the registry still lists it for a while
                procs[0].wait()
            answers[stub.SayHello(pb2.HelloRequest(name=str(n))).server] += 1  # never raises
        assert sum(answers.values()) == 90 and answers["k1"] and answers["k2"]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()


def test_grpc_aio_stubs_on_the_async_governed_channel(stubs, memory_registry, servers) -> None:
    import asyncio

    pb2, pb2_grpc, _ = stubs
    serve(servers, memory_registry, stubs, "a")
    serve(servers, memory_registry, stubs, "b")

    async def requests(names: str) -> Any:
        for name in names:
            yield pb2.HelloRequest(name=name)

    async def main() -> None:
        async with govrpc.AsyncClient(memory_registry, local_first=False) as client:
            stub = pb2_grpc.GreeterStub(client.channel(SERVICE, loadbalance="roundrobin", timeout=5.0))
            replies = await asyncio.gather(*(stub.SayHello(pb2.HelloRequest(name=str(i))) for i in range(6)))
            assert [r.message for r in replies] == [f"hello {i}" for i in range(6)]
            assert collections.Counter(r.server for r in replies) == {"a": 3, "b": 3}
            listed = [r async for r in stub.ListHellos(pb2.HelloRequest(name="dee", count=3))]
            assert [r.message for r in listed] == ["hello dee #0", "hello dee #1", "hello dee #2"]
            assert len({r.server for r in listed}) == 1  # one provider per stream
            assert (await stub.CollectHellos(requests("xyz"))).message == "x,y,z"
            assert [r.message async for r in stub.ChatHellos(requests("pq"))] == ["hi p", "hi q"]
            with pytest.raises(grpc.RpcError) as caught:
                await stub.SayHello(pb2.HelloRequest(name="missing"))
            assert caught.value.code() is grpc.StatusCode.NOT_FOUND
            nowhere = pb2_grpc.GreeterStub(client.channel("govrpctest.stubs.Greeter", group="none", timeout=1.0))
            with pytest.raises(grpc.RpcError) as caught:
                await nowhere.SayHello(pb2.HelloRequest(name="x"))
            assert isinstance(caught.value.error, govrpc.NoProviderError)

    asyncio.run(asyncio.wait_for(main(), 30))


def test_stub_calls_carry_the_clients_token(stubs, memory_registry, servers, client_factory) -> None:
    pb2, pb2_grpc, _ = stubs
    serve(servers, memory_registry, stubs, "a", token="s3cret")
    with_token = pb2_grpc.GreeterStub(client_factory(memory_registry, token="s3cret").channel(SERVICE, timeout=5.0))
    assert with_token.SayHello(pb2.HelloRequest(name="ann")).message == "hello ann"
    without = pb2_grpc.GreeterStub(client_factory(memory_registry).channel(SERVICE, timeout=5.0))
    with pytest.raises(grpc.RpcError) as caught:
        without.SayHello(pb2.HelloRequest(name="bob"))
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
