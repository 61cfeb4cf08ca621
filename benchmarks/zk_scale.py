"""One consumer subscribed to many services through ZooKeeper: time, memory, cost of one change.

Creates ``--services`` services with ``--providers`` provider entries each
(real provider URLs, ephemeral nodes of a setup client), then:

* subscribes one consumer (a ``RegistryDirectory`` with real ``GrpcInvoker``s per
  service, as ``Client.reference`` builds them) to every service and reports the
  time and the process's resident memory growth;
* measures the time for one change (a provider added to one random service) to
  reach that service's directory, with only a few services subscribed and with
  all of them subscribed: it must not grow with the total.

Usage::

    python3 benchmarks/zk_scale.py [--services 1000] [--providers 10] [--changes 100] [--hosts h:2181]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from kazoo.client import KazooClient  # noqa: E402

from govrpc.cluster.directory import RegistryDirectory  # noqa: E402
from govrpc.registry.zookeeper import ZookeeperRegistry  # noqa: E402
from govrpc.rpc.invoker import ChannelPool, GrpcInvoker  # noqa: E402
from govrpc.url import URL, ServiceKey  # noqa: E402


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def provider(service: str, n: int) -> URL:
    return URL("grpc", f"10.1.{n // 250}.{n % 250 + 1}", 50051, service,
               {"version": "1.0", "methods": "get,put,list,delete", "application": "bench", "weight": 100,
                "warmup": 600, "timestamp": 1700000000000 + n, "pid": 1000 + n})


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


class Consumer:
    def __init__(self, registry: ZookeeperRegistry) -> None:
        self.registry = registry
        self.pool = ChannelPool()
        self.directories: dict[str, RegistryDirectory] = {}
        self.seen: dict[str, threading.Event] = {}
        self.wanted: dict[str, str] = {}

    def subscribe(self, service: str) -> None:
        key = ServiceKey(service, "1.0")
        directory = RegistryDirectory(self.registry, key, URL("consumer", "127.0.0.1", 0, service, {"version": "1.0"}),
                                      lambda url: GrpcInvoker(url, self.pool))
        directory.start()
        self.directories[service] = directory
        self.registry.subscribe(service, lambda urls, s=service: self._after(s))

    def _after(self, service: str) -> None:
        wanted = self.wanted.get(service)
        if wanted is not None and any(u.encoded() == wanted for u in self.directories[service].urls):
            self.seen[service].set()

    def change_time(self, writer: KazooClient, root: str, service: str, n: int) -> float:
        url = provider(service, n)
        self.seen[service] = threading.Event()
        self.wanted[service] = url.encoded()
        start = time.perf_counter()
        writer.create(f"/{root}/{service}/providers/{url.encoded()}", b"", ephemeral=True)
        if not self.seen[service].wait(30):
            raise TimeoutError(f"change of {service} never arrived")
        elapsed = time.perf_counter() - start
        self.wanted.pop(service)
        return elapsed

    def close(self) -> None:
        for directory in self.directories.values():
            directory.close()
        self.pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--providers", type=int, default=10)
    parser.add_argument("--changes", type=int, default=100, help="changes timed in each phase (default 100)")
    parser.add_argument("--hosts", help="an existing ZooKeeper (default: start one)")
    args = parser.parse_args()
    server = None
    hosts = args.hosts
    if hosts is None:
        from tests.zkharness import ZookeeperServer

        server = ZookeeperServer().start()
        hosts = server.hosts
    root = f"scale-{uuid.uuid4().hex[:8]}"
    writer = KazooClient(hosts, timeout=30)
    writer.start(timeout=15)
    registry: ZookeeperRegistry | None = None
    consumer: Consumer | None = None
    try:
        services = [f"bench.scale.Service{i:04d}" for i in range(args.services)]
        started = time.perf_counter()
        pending = [writer.create_async(f"/{root}/{s}/providers", b"", makepath=True) for s in services]
        for result in pending:
            result.get(timeout=60)
        pending = [writer.create_async(f"/{root}/{s}/providers/{provider(s, n).encoded()}", b"", ephemeral=True)
                   for s in services for n in range(args.providers)]
        for result in pending:
            result.get(timeout=60)
        print(f"ZooKeeper {hosts}; {os.cpu_count()} CPUs; setup: {args.services} services x {args.providers} "
              f"providers = {args.services * args.providers} entries in {time.perf_counter() - started:.1f} s")

        address = f"zookeeper://{hosts}/{root}?session_timeout=30&empty_protection=0&snapshot_dir=/tmp/govrpc-bench-scale"
        registry = ZookeeperRegistry(ZookeeperRegistry.parse_address(address))
        consumer = Consumer(registry)
        rng = random.Random(7)
        few = services[:10]
        for service in few:
            consumer.subscribe(service)
        extra = args.providers
        small = []
        for _ in range(args.changes):
            extra += 1
            small.append(consumer.change_time(writer, root, rng.choice(few), extra))

        rss_before = rss_mib()
        started = time.perf_counter()
        for service in services[10:]:
            consumer.subscribe(service)
        subscribe_time = time.perf_counter() - started
        rss_after = rss_mib()
        invokers = sum(len(d.invokers) for d in consumer.directories.values())
        assert invokers >= args.services * args.providers, invokers

        large = []
        for _ in range(args.changes):
            extra += 1
            large.append(consumer.change_time(writer, root, rng.choice(services), extra))
        n = args.services - 10
        print(f"subscribe to {n} more services ({n * args.providers} providers): {subscribe_time:.2f} s "
              f"({subscribe_time / n * 1000:.2f} ms per service); RSS +{rss_after - rss_before:.1f} MiB "
              f"({(rss_after - rss_before) * 1024 / n:.1f} KiB per service), {invokers} invokers")
        for name, values in ((f"one change, {len(few)} services subscribed", small),
                             (f"one change, {args.services} services subscribed", large)):
            ms = [v * 1000 for v in values]
            print(f"{name:<40} n={len(ms)} p50 {statistics.median(ms):6.2f} ms  p99 {percentile(ms, 99):6.2f} ms")
        print(f"ratio p50 (all / few): {statistics.median(large) / statistics.median(small):.2f}")
    finally:
        for opened in (consumer, registry):
            if opened is not None:
                opened.close()
        writer.stop()
        writer.close()
        if server is not None:
            server.cleanup()


if __name__ == "__main__":
    main()
