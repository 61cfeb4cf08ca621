"""Link liveness: a provider frozen with SIGSTOP is routed around within the keepalive window."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import govrpc
from tests.helpers import wait_until
from tests.integration.monitor.providers import spawn, stop


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")
def test_a_frozen_provider_is_left_out_without_a_failed_call_and_used_again_after_sigcont(
        file_registry, client_factory) -> None:
    procs = []
    try:
        for name in ("p0", "p1", "p2"):
            procs.append(spawn(file_registry, name))
        frozen, frozen_port = procs[0]
        address = f"127.0.0.1:{frozen_port}"
        client = client_factory(file_registry, keepalive_time=1.0, keepalive_timeout=1.0, timeout=8.0)
        echo = client.proxy("mon.Echo", loadbalance="roundrobin")
        wait_until(lambda: len(client.reference("mon.Echo", loadbalance="roundrobin").directory.invokers) == 3,
                   what="three providers listed")
        answers: list[tuple[float, str]] = []
        failures: list[BaseException] = []
        stop_load = threading.Event()

        def load() -> None:
            for _ in range(5000):  # bounded in count and in time
                if stop_load.is_set():
                    return
                try:
                    answers.append((time.monotonic(), echo.whoami()))
                except Exception as exc:  # noqa: BLE001 - every failure is reported by the test
                    failures.append(exc)
                time.sleep(0.005)

        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: any(n == "p0" for _, n in answers), what="p0 answering")
            os.kill(frozen.pid, signal.SIGSTOP)
            stopped = time.monotonic()
            wait_until(lambda: address in client.pool.down, timeout=10, what="the frozen link noticed")
            noticed = time.monotonic()
            reference = client.reference("mon.Echo", loadbalance="roundrobin")
            wait_until(lambda: address not in [e.url.address for e in reference.directory.invokers],
                       what="the frozen provider left out of the candidates")  # re-listed just after
            count = len(answers)
            wait_until(lambda: len(answers) > count + 30, what="calls going on without p0")
            os.kill(frozen.pid, signal.SIGCONT)
            resumed = time.monotonic()
            wait_until(lambda: any(n == "p0" and t > resumed for t, n in answers), timeout=10,
                       what="p0 used again after SIGCONT")
        finally:
            stop_load.set()
            for t in threads:
                t.join(timeout=20)
        assert failures == []
        assert noticed - stopped < 10
        # between the link being found down and SIGCONT, nobody got an answer from p0
        assert not any(n == "p0" and noticed + 0.1 < t < resumed for t, n in answers)
    finally:
        stop([p for p, _ in procs])


def test_bad_keepalive_settings_are_refused() -> None:
    with pytest.raises(govrpc.ConfigurationError, match="keepalive_time"):
        govrpc.Client("memory://", keepalive_time=-1)
    with pytest.raises(govrpc.ConfigurationError, match="keepalive_timeout"):
        govrpc.Server("memory://", keepalive_timeout=0)
    with pytest.raises(govrpc.ConfigurationError, match="keepalive_time"):
        govrpc.Client("memory://", keepalive_time=0.5)  # more often than servers accept pings


def test_a_plain_grpcio_server_is_not_pinged_so_its_idle_connection_is_kept() -> None:
    """A plain grpcio server sends GOAWAY "too_many_pings" to a client pinging an idle connection
    more often than every 5 minutes (its default policy): govrpc pings only providers whose URL
    says how often they accept pings (``ping_interval``, published by govrpc servers)."""
    from concurrent import futures

    import grpc

    peers: list[str] = []

    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        peers.append(context.peer())
        return request

    handler = grpc.method_handlers_generic_handler("plain.Echo", {"echo": grpc.unary_unary_rpc_method_handler(echo)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    client = govrpc.Client(keepalive_time=1.0, keepalive_timeout=1.0, timeout=5.0)
    try:
        call = client.channel("plain.Echo", url=f"grpc://127.0.0.1:{port}").unary_unary("/plain.Echo/echo")
        assert call(b"a", timeout=5.0) == b"a"
        address = f"127.0.0.1:{port}"
        idle_until = time.monotonic() + 4.0  # pings every 1 s would have had it closed after about 3
        while time.monotonic() < idle_until:
            assert address not in client.pool.down
            time.sleep(0.1)
        assert call(b"b", timeout=5.0) == b"b"
        assert peers[0] == peers[1], "the idle connection was closed and dialled again"
    finally:
        client.close()
        server.stop(0)


def test_a_bad_ping_interval_in_a_url_is_refused_naming_it() -> None:
    with govrpc.Client(timeout=1.0) as client:
        for text in ("x", "-1", "nan"):
            with pytest.raises(govrpc.ConfigurationError, match="ping_interval must be a number"):
                client.proxy("plain.Echo", url=f"grpc://127.0.0.1:1?ping_interval={text}").echo(b"a")
        with pytest.raises(govrpc.ConfigurationError, match="ping_interval"):
            client.channel("plain.Echo", url="grpc://127.0.0.1:1?ping_interval=")


def test_a_govrpc_server_publishes_how_often_it_accepts_pings(memory_registry) -> None:
    from govrpc.rpc.invoker import accepted_pings

    @govrpc.service("mon.Pinged")
    class Pinged:
        def ping(self) -> str:
            return "pong"

    server = govrpc.Server(memory_registry).add(Pinged()).start()
    quiet = govrpc.Server(memory_registry, keepalive_time=0)
    try:
        url = server.urls[0]
        assert url.params["ping_interval"] == "1"
        assert accepted_pings(url) == 1.0
        # a server with keepalive off does not accept idle pings: it says nothing, and is not pinged
        @govrpc.service("mon.Quiet")
        class Quiet(Pinged):
            pass

        quiet.add(Quiet()).start()
        assert "ping_interval" not in quiet.urls[0].params
        assert accepted_pings(quiet.urls[0]) is None
    finally:
        quiet.stop(grace=0)
        server.stop(grace=0)
