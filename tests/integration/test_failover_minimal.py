"""The minimal cluster: spread over providers, fail over when one goes away."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import govrpc
from tests.integration.services import Echo


def test_calls_spread_and_fail_over(memory_registry, start_server, client_factory) -> None:
    servers = [start_server(memory_registry, Echo(f"p{i}")) for i in range(3)]
    proxy = client_factory(memory_registry).proxy("test.Echo", retries=2)
    counts = collections.Counter(proxy.whoami() for _ in range(300))
    assert set(counts) == {"p0", "p1", "p2"}
    assert min(counts.values()) > 50  # uniform weights: about 100 each

    servers[0].stop(grace=0.5)
    counts = collections.Counter(proxy.whoami() for _ in range(100))
    assert set(counts) == {"p1", "p2"}


def test_business_errors_are_not_retried(memory_registry, start_server, client_factory) -> None:
    providers = [Echo(f"p{i}") for i in range(3)]
    for p in providers:
        start_server(memory_registry, p)
    proxy = client_factory(memory_registry).proxy("test.Echo", retries=2)
    with pytest.raises(govrpc.RemoteError):
        proxy.fail()
    # a timeout is retried on another provider: 3 attempts in all within the deadline
    proxy = client_factory(memory_registry).proxy("test.Echo", retries=2, timeout=5.0)
    assert proxy.echo("x") == "x"


PROVIDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    import govrpc
    from tests.integration.services import Echo
    server = govrpc.Server({registry!r}).add(Echo("child")).start()
    print(server.port, flush=True)
    time.sleep(120)
""")


def _spawn_provider(registry: str) -> tuple[subprocess.Popen[str], int]:
    root = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen([sys.executable, "-c", PROVIDER.format(root=root, registry=registry)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, port


def test_provider_killed_mid_call_does_not_hang_the_consumer(file_registry, client_factory) -> None:
    proc, port = _spawn_provider(file_registry)
    try:
        client = client_factory(file_registry)
        proxy = client.proxy("test.Echo", timeout=3.0, retries=0)
        assert proxy.whoami() == "child"
        pending = proxy.sleep.future(10)
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(govrpc.RpcError):
            pending.result(timeout=10)
        assert time.monotonic() - started < 3.5  # bounded by the deadline, not hung
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
