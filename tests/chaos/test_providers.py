"""Providers failing under load: SIGKILL, rolling restarts, a provider that hangs."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

import govrpc
from govrpc.url import URL
from tests.chaos.harness import Load
from tests.helpers import wait_until


def _ready(client: govrpc.Client, service: str, count: int, timeout: float = 15.0) -> None:
    reference = client.reference(service)
    wait_until(lambda: len(reference.directory.urls) == count, timeout, f"{count} providers of {service}")


def test_sigkill_under_load_fails_no_idempotent_call(zk_url: Any, providers: Any, client_factory: Any,
                                                       figures: Any) -> None:
    address = zk_url()
    procs = [providers(address, f"p{i}") for i in range(3)]
    client = client_factory(address, timeout=5.0)
    ledger = client.proxy("chaos.Ledger", cluster="failover", retries=2, loadbalance="roundrobin")
    _ready(client, "chaos.Ledger", 3)
    with Load(lambda w, n: ledger.balance(f"a{w}", n), threads=4, seconds=20) as load:
        load.wait_calls(200)
        procs[0].kill()
        load.wait_calls(400)
        load.stop()
    figures(load, "1 provider SIGKILLed under load")
    assert load.failed == 0, load.examples


def test_rolling_restart_fails_no_call_of_any_kind(zk_url: Any, providers: Any, client_factory: Any,
                                                     figures: Any) -> None:
    address = zk_url()
    procs = [providers(address, f"p{i}") for i in range(3)]
    client = client_factory(address, timeout=5.0, local_first=False)
    ledger = client.proxy("chaos.Ledger", cluster="failover", retries=2, loadbalance="roundrobin")
    _ready(client, "chaos.Ledger", 3)

    def call(worker: int, n: int) -> Any:  # half idempotent, half not (these are never retried once sent)
        return ledger.balance(f"a{worker}", n) if n % 2 else ledger.deposit(f"a{worker}", n)

    with Load(call, threads=4, seconds=40) as load:
        load.wait_calls(100)
        for i, old in enumerate(list(procs)):
            old.terminate()  # graceful: deregister, drain, stop
            procs[i] = providers(address, f"p{i}-new")
            _ready(client, "chaos.Ledger", 3)
            load.wait_calls(100)
        load.stop()
    figures(load, "2 rolling restart of every provider (local-first off)")
    assert load.failed == 0, load.examples


class BlackHole:
    """A TCP listener that accepts connections and never answers a byte (a hung provider)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepted.append(conn)

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(5)
        with self._lock:
            for conn in self.accepted:
                conn.close()


@pytest.mark.parametrize("attempt_timeout", [None, 0.2], ids=["one-deadline", "attempt-timeout"])
def test_hung_provider_costs_only_deadlines_and_is_left_behind(zk_url: Any, providers: Any, client_factory: Any,
                                                                figures: Any, attempt_timeout: float | None) -> None:
    address = zk_url()
    procs = [providers(address, f"p{i}") for i in range(2)]
    hole = BlackHole()
    registry = client_factory(address).registry  # registers the hung provider as a real one would
    hung = URL("grpc", "127.0.0.1", hole.port, "chaos.Ledger",
               {"methods": "balance,deposit", "balance.idempotent": "true", "application": "hung"})
    try:
        registry.register(hung)
        client = client_factory(address)
        timeout = 0.5 if attempt_timeout is None else 1.0
        ledger = client.proxy("chaos.Ledger", cluster="failover", retries=2, loadbalance="roundrobin",
                              timeout=timeout, **{"attempt.timeout": attempt_timeout})
        _ready(client, "chaos.Ledger", 3)
        with Load(lambda w, n: ledger.balance(f"a{w}", n), threads=4, seconds=20) as load:
            load.wait_calls(400)
            load.stop()
        figures(load, f"6 a provider that accepts and never answers (attempt.timeout={attempt_timeout})")
        # bounded by the deadline, not by grpc's 20 s connect timeout (generous slack: a shared machine)
        slowest = max(load.latencies + load.durations_failed)
        assert slowest < timeout + 3.0, f"a call outlived its {timeout} s deadline: {slowest:.2f} s"
        assert set(load.failures) <= {"CallTimeoutError"}
        if attempt_timeout is None:
            # one deadline for every attempt: the calls that meet the hung provider before it is ejected
            # (5 consecutive failures) end at their deadline, at most one per consumer thread beyond those
            assert load.failed <= 5 + 4, load.failures
        else:  # each attempt bounded: failover moves on within the call
            assert load.failed == 0, load.examples
        assert load.returned >= 400 - load.failed
        assert procs and all(p.proc.poll() is None for p in procs)
    finally:
        hole.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_connections_do_not_drain_the_retry_budget(memory_registry: str, start_server: Any,
                                                            client_factory: Any, figures: Any) -> None:
    """SIGKILLed providers stay listed until their sessions expire; more of them than outlier ejection
    may take out refuse connections at once. Those attempts surely never reached a provider (gRPC
    retries them transparently, outside its retry throttling), so they must not exhaust the budget
    and turn into failed calls."""
    from tests.integration.services import Echo

    live = start_server(memory_registry, Echo("live"))
    params = "methods=echo&echo.idempotent=true"
    urls = [f"grpc://127.0.0.1:{live.port}/test.Echo?{params}"] + \
        [f"grpc://127.0.0.1:{_closed_port()}/test.Echo?{params}" for _ in range(2)]
    client = client_factory(memory_registry, timeout=5.0)
    # ejection off: what is measured is the budget, as when the dead outnumber outlier.max_share
    echo = client.proxy("test.Echo", url=urls, loadbalance="roundrobin", retries=2,
                        **{"outlier.failures": 1_000_000})
    with Load(lambda w, n: echo.echo(n), threads=2, seconds=20, max_calls=600, pause=0) as load:
        load.wait_calls(600)
        load.stop()
    figures(load, "1b two of three providers refusing connections (ejection off)")
    assert load.failed == 0, load.examples
