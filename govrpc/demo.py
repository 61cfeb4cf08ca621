"""``govrpc demo``: three providers, one consumer, a provider stopped mid-traffic.

Everything runs in this process on the embedded ``memory://`` registry, but
every call crosses real gRPC on 127.0.0.1: the demo shows discovery, balancing
and a graceful shutdown (deregister, drain, stop) losing no call.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

import govrpc

__all__ = ["Greeter", "run_demo"]


@govrpc.service("demo.Greeter", version="1.0", idempotent=True)
class Greeter:
    """The demo's service: says hello and who answered."""

    def __init__(self, name: str) -> None:
        self.name = name

    def hello(self, who: str) -> dict[str, Any]:
        return {"greeting": f"hello {who}", "provider": self.name}


def run_demo(calls: int = 3000, threads: int = 4, registry: str = "memory://demo",
             out: Any = print) -> int:
    """Run the demo; returns 0 when every call succeeded."""
    servers = []
    for i in range(3):
        server = govrpc.Server(registry, port=0, application="greeter", tags={"name": f"provider-{i + 1}"})
        server.add(Greeter(f"provider-{i + 1}")).start()
        servers.append(server)
        out(f"started provider-{i + 1} on 127.0.0.1:{server.port}")
    client = govrpc.Client(registry, application="demo-consumer", **_network_only())
    greeter = client.proxy("demo.Greeter", version="1.0", cluster="failover", retries=2, timeout=2.0)

    counts: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    lock = threading.Lock()
    done = 0
    stop_at = calls // 3
    stopped = threading.Event()
    per_thread = [calls // threads + (1 if i < calls % threads else 0) for i in range(threads)]

    def stop_provider() -> None:
        out(f"stopping provider-3 after {stop_at} calls (deregister, drain, stop)...")
        servers[2].stop(grace=2.0)
        out("provider-3 stopped")
        stopped.set()

    def work(n: int) -> None:
        nonlocal done
        for _ in range(n):
            after_stop = stopped.is_set()
            try:
                reply = greeter.hello("demo")
                provider = reply["provider"]
                error = None
            except govrpc.GovRpcError as exc:
                provider, error = None, f"{type(exc).__name__}: {exc}"
            with lock:
                done += 1
                if error:
                    failures.append(error)
                else:
                    counts[provider] += 1
                    if after_stop:
                        counts[f"{provider} (after stop)"] += 1
                start_stop = done == stop_at
            if start_stop:
                threading.Thread(target=stop_provider, name="demo-stopper").start()

    started = time.perf_counter()
    workers = [threading.Thread(target=work, args=(n,), name=f"demo-consumer-{i}") for i, n in enumerate(per_thread)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    stopped.wait(10)

    out("")
    out(f"{calls} calls from {threads} threads in {elapsed:.2f} s ({calls / elapsed:,.0f} calls/s)")
    for i in range(3):
        name = f"provider-{i + 1}"
        out(f"  {name}: {counts[name]:5d} calls   ({counts[f'{name} (after stop)']} after provider-3 stopped)")
    out(f"  failed calls: {len(failures)}")
    for failure in failures[:5]:
        out(f"    {failure}")
    ok = not failures and all(counts[f"provider-{i + 1}"] for i in range(3)) \
        and counts["provider-3 (after stop)"] == 0
    out("result: " + ("OK - traffic spread over 3 providers, carried on with 2, no call lost"
                      if ok else "FAILED"))
    client.close()
    for server in servers[:2]:
        server.stop(grace=1.0)
    return 0 if ok else 1


def _network_only() -> dict[str, Any]:
    """Client options that keep the demo's calls on the network (not in-process)."""
    return {"local_first": False}
