"""Operators and networks misbehaving under load: a registry rule storm, a slow link."""

from __future__ import annotations

import random
import socket
import threading
import time
from typing import Any

import pytest

import govrpc
from govrpc.registry.zookeeper import ZookeeperRegistry
from tests.chaos.harness import Load
from tests.helpers import wait_until

pytestmark = pytest.mark.zookeeper


def test_rule_storm_every_consumer_converges_on_the_last_rule(zk_url: Any, providers: Any, figures: Any) -> None:
    address = zk_url()
    procs = [providers(address, f"p{i}") for i in range(3)]
    ports = [p.port for p in procs]
    # two consumers, each with a registry connection of its own (as two processes would have)
    registries = [ZookeeperRegistry(ZookeeperRegistry.parse_address(address)) for _ in range(2)]
    clients = [govrpc.Client(r, local_first=False, timeout=3.0) for r in registries]
    admin = govrpc.Admin(address)
    try:
        proxies = [c.proxy("chaos.Ledger", retries=2) for c in clients]
        references = [c.reference("chaos.Ledger", retries=2) for c in clients]
        for reference in references:
            wait_until(lambda r=reference: len(r.directory.urls) == 3, what="three providers")
        writes = [0]
        storm_writes = 600  # by count, not time (the rate is reported, not asserted); bounded in time too
        took = [0.0]

        def storm() -> None:
            rng = random.Random(15)
            began = time.monotonic()
            end = began + 30.0
            while writes[0] < storm_writes and time.monotonic() < end:
                port = rng.choice(ports)
                admin.set_override("chaos.Ledger", "storm",
                                   f"loadbalance = {rng.choice(['random', 'roundrobin', 'leastactive'])}\n"
                                   f"retries = {rng.randint(1, 3)}\n")
                admin.add_route("chaos.Ledger", "storm", f"=> address = 127.0.0.1:{port}")
                writes[0] += 2
            took[0] = time.monotonic() - began

        def call(worker: int, n: int) -> Any:
            return proxies[worker % 2].balance(f"a{worker}", n)

        with Load(call, threads=4, seconds=60) as load:
            load.wait_calls(100)
            writer = threading.Thread(target=storm, daemon=True)
            writer.start()
            writer.join(60)
            assert not writer.is_alive()
            # the last rule: only p1, by the latency-aware balancer
            admin.set_override("chaos.Ledger", "storm", "loadbalance = shortestresponse\nretries = 1\n")
            admin.add_route("chaos.Ledger", "storm", f"=> address = 127.0.0.1:{ports[1]}")
            for reference in references:
                wait_until(lambda r=reference: r.config.url.params.get("loadbalance") == "shortestresponse",
                           timeout=20, what="the last configurator applied")
            for proxy in proxies:
                wait_until(lambda p=proxy: {p.balance("x", 0)[0] for _ in range(12)} == {"p1"},
                           timeout=20, what="calls following the last route")
            load.wait_calls(100)
            load.stop()
        figures(load, f"8 rule storm ({writes[0]} rule writes in {took[0]:.1f} s, {writes[0] / took[0]:.0f}/s)")
        assert writes[0] >= storm_writes
        assert load.failed == 0, load.examples
    finally:
        admin.close()
        for client in clients:
            client.close()
        for registry in registries:
            registry.close()


class DelayProxy:
    """A TCP proxy on loopback that delays every chunk from the provider by ``delay`` seconds."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                down, _ = self.sock.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [down, up]
            threading.Thread(target=self._pump, args=(down, up, 0.0), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, self.delay), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, delay: float) -> None:
        while not self._closed.is_set():
            try:
                data = source.recv(65536)
                if not data:
                    break
                if delay:
                    time.sleep(delay)
                sink.sendall(data)
            except OSError:
                break
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self._lock:
            for s in self._sockets:
                s.close()


def test_slow_link_the_latency_aware_balancer_moves_traffic_away(
        zk_url: Any, providers: Any, client_factory: Any, figures: Any) -> None:
    address = zk_url()
    fast, slow = providers(address, "fast"), providers(address, "slow")
    proxy = DelayProxy(slow.port, delay=0.05)
    try:
        # the slow provider is reached only through the delaying proxy: the consumer calls it by that address
        urls = [f"grpc://127.0.0.1:{fast.port}/chaos.Ledger?methods=balance,deposit&balance.idempotent=true",
                f"grpc://127.0.0.1:{proxy.port}/chaos.Ledger?methods=balance,deposit&balance.idempotent=true"]
        client = client_factory(address, timeout=3.0)
        ledger = client.proxy("chaos.Ledger", url=urls, loadbalance="shortestresponse")
        counts = {"fast": 0, "slow": 0}
        lock = threading.Lock()

        def call(worker: int, n: int) -> Any:
            name = ledger.balance(f"a{worker}", n)[0]
            with lock:
                counts[name] += 1
            return name

        with Load(call, threads=4, seconds=20) as load:
            load.wait_calls(600)
            load.stop()
        figures(load, f"7 slow link (50 ms) to one provider: fast={counts['fast']} slow={counts['slow']}")
        assert load.failed == 0, load.examples
        assert counts["slow"] > 0, "the slow provider was never tried"
        assert counts["slow"] * 5 < counts["fast"], counts
    finally:
        proxy.close()
