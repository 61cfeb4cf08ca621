"""How fast a provider change reaches a consumer's directory through ZooKeeper.

Two measurements, each against a bare kazoo ``ChildrenWatch`` on the same path
in the same trial (so ZooKeeper's own watch delivery is measured alongside):

* register: a provider registers (and then unregisters) until the consumer's
  ``RegistryDirectory`` holds the new list;
* death: provider processes are SIGKILLed until their entries are gone from the
  directory (dominated by the session timeout, which ZooKeeper enforces).

Usage::

    python3 benchmarks/zk_propagation.py [--trials 200] [--deaths 100] [--hosts 127.0.0.1:2181]

Without ``--hosts`` it starts a standalone ZooKeeper (tests/zkharness.py, tickTime 500 ms).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
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

SERVICE = "bench.Propagation"

CHILD = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from govrpc.registry.zookeeper import ZookeeperRegistry
from govrpc.url import URL
registry = ZookeeperRegistry(ZookeeperRegistry.parse_address(sys.argv[2]))
registry.register(URL("grpc", "10.9.0.1", int(sys.argv[3]), sys.argv[4], {"methods": "m"}))
print("READY", flush=True)
time.sleep(120)
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def describe(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"{name:<44} n={len(ms):<4} p50 {percentile(ms, 50):7.2f} ms   p99 {percentile(ms, 99):7.2f} ms   "
            f"max {max(ms):7.2f} ms")


class Watchers:
    """A bare kazoo ChildrenWatch and a govrpc RegistryDirectory on the same providers path."""

    def __init__(self, hosts: str, address: str, registry: ZookeeperRegistry, service: str) -> None:
        self.kazoo = KazooClient(hosts, timeout=10)
        self.kazoo.start(timeout=15)
        self.path = f"{registry.root}/{service}/providers"
        self.kazoo.ensure_path(self.path)
        self.bare_names: set[str] = set()
        self.bare_seen: dict[str, float] = {}  # name -> time it appeared / disappeared
        self.gov_seen: dict[str, float] = {}
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.kazoo.ChildrenWatch(self.path, self._bare)
        self.pool = ChannelPool()
        key = ServiceKey(service)
        consumer = URL("consumer", "127.0.0.1", 0, service)
        self.directory = RegistryDirectory(registry, key, consumer, lambda url: GrpcInvoker(url, self.pool))
        self.gov_urls: set[str] = set()
        self.directory.start()
        registry.subscribe(service, self._after_directory)  # runs right after the directory's notify

    def _bare(self, children: list[str]) -> None:
        now = time.perf_counter()
        with self.lock:
            current = set(children)
            for name in current ^ self.bare_names:
                self.bare_seen[name] = now
            self.bare_names = current
            self.changed.notify_all()

    def _after_directory(self, urls: list[URL]) -> None:
        now = time.perf_counter()
        current = {u.encoded() for u in self.directory.urls}
        with self.lock:
            for name in current ^ self.gov_urls:
                self.gov_seen[name] = now
            self.gov_urls = current
            self.changed.notify_all()

    def wait(self, name: str, present: bool, timeout: float = 30) -> tuple[float, float]:
        deadline = time.monotonic() + timeout
        with self.lock:
            while (name in self.bare_names) != present or (name in self.gov_urls) != present:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{name} never became {'present' if present else 'absent'}")
                self.changed.wait(left)
            return self.bare_seen[name], self.gov_seen[name]

    def close(self) -> None:
        self.directory.close()
        self.pool.close()
        self.kazoo.stop()
        self.kazoo.close()


def register_trials(hosts: str, address: str, trials: int) -> None:
    consumer = ZookeeperRegistry(ZookeeperRegistry.parse_address(address))
    provider = ZookeeperRegistry(ZookeeperRegistry.parse_address(address))
    watchers = Watchers(hosts, address, consumer, SERVICE)
    keeper = URL("grpc", "10.8.0.1", 1, SERVICE, {"methods": "m"})  # never leaves: no empty push
    provider.register(keeper)
    watchers.wait(keeper.encoded(), True)
    bare_add, gov_add, extra_add, bare_del, gov_del, extra_del = [], [], [], [], [], []
    try:
        for i in range(trials):
            url = URL("grpc", "10.8.0.2", 1000 + i, SERVICE, {"methods": "m", "weight": 100})
            start = time.perf_counter()
            provider.register(url)
            bare, gov = watchers.wait(url.encoded(), True)
            bare_add.append(bare - start)
            gov_add.append(gov - start)
            extra_add.append(gov - bare)
            start = time.perf_counter()
            provider.unregister(url)
            bare, gov = watchers.wait(url.encoded(), False)
            bare_del.append(bare - start)
            gov_del.append(gov - start)
            extra_del.append(gov - bare)
    finally:
        watchers.close()
        provider.close()
        consumer.close()
    print(describe("register -> bare kazoo ChildrenWatch", bare_add))
    print(describe("register -> govrpc RegistryDirectory", gov_add))
    print(describe("  govrpc minus bare (same trial)", extra_add))
    print(describe("unregister -> bare kazoo ChildrenWatch", bare_del))
    print(describe("unregister -> govrpc RegistryDirectory", gov_del))
    print(describe("  govrpc minus bare (same trial)", extra_del))
    print(f"p99 above ZooKeeper's own watch delivery: register {percentile(extra_add, 99) * 1000:.2f} ms, "
          f"unregister {percentile(extra_del, 99) * 1000:.2f} ms (target < 50 ms)")


def death_trials(hosts: str, address: str, deaths: int, batch: int, session_timeout: float) -> None:
    service = SERVICE + ".death"
    consumer = ZookeeperRegistry(ZookeeperRegistry.parse_address(address))
    keeper_registry = ZookeeperRegistry(ZookeeperRegistry.parse_address(address))
    watchers = Watchers(hosts, address, consumer, service)
    keeper = URL("grpc", "10.8.0.1", 1, service, {"methods": "m"})
    keeper_registry.register(keeper)
    watchers.wait(keeper.encoded(), True)
    bare_all, gov_all, extra_all = [], [], []
    port = 20000
    children: list[subprocess.Popen[str]] = []
    try:
        while len(bare_all) < deaths:
            n = min(batch, deaths - len(bare_all))
            children = []
            urls = []
            for _ in range(n):
                port += 1
                urls.append(URL("grpc", "10.9.0.1", port, service, {"methods": "m"}))
                children.append(subprocess.Popen(
                    [sys.executable, "-c", CHILD, ROOT, address, str(port), service],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
            for child in children:
                assert child.stdout is not None and child.stdout.readline().startswith("READY")
            for url in urls:
                watchers.wait(url.encoded(), True)
            start = time.perf_counter()
            for child in children:
                os.kill(child.pid, signal.SIGKILL)
            for url in urls:
                bare, gov = watchers.wait(url.encoded(), False, timeout=session_timeout * 10 + 30)
                bare_all.append(bare - start)
                gov_all.append(gov - start)
                extra_all.append(gov - bare)
            for child in children:
                child.wait(10)
                if child.stdout:
                    child.stdout.close()
    finally:
        for child in children:  # a failed batch leaves no provider process behind
            if child.poll() is None:
                child.kill()
                child.wait(10)
            if child.stdout:
                child.stdout.close()
        watchers.close()
        keeper_registry.close()
        consumer.close()
    print(describe(f"SIGKILL -> bare ChildrenWatch (session {session_timeout:g} s)", bare_all))
    print(describe(f"SIGKILL -> govrpc RegistryDirectory (session {session_timeout:g} s)", gov_all))
    print(describe("  govrpc minus bare (same trial)", extra_all))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200, help="register/unregister trials (default 200)")
    parser.add_argument("--deaths", type=int, default=100, help="provider processes killed (default 100)")
    parser.add_argument("--batch", type=int, default=10, help="processes killed at once (default 10)")
    parser.add_argument("--session-timeout", type=float, default=2.0, help="seconds (default 2)")
    parser.add_argument("--hosts", help="an existing ZooKeeper (default: start one)")
    args = parser.parse_args()
    server = None
    hosts = args.hosts
    if hosts is None:
        from tests.zkharness import ZookeeperServer

        server = ZookeeperServer().start()
        hosts = server.hosts
    root = f"bench-{uuid.uuid4().hex[:8]}"
    address = (f"zookeeper://{hosts}/{root}?session_timeout={args.session_timeout:g}&empty_protection=0"
               f"&snapshot_dir=/tmp/govrpc-bench-snapshots")
    try:
        print(f"ZooKeeper {hosts}; {os.cpu_count()} CPUs; python {sys.version.split()[0]}")
        register_trials(hosts, address, args.trials)
        if args.deaths:
            death_trials(hosts, address, args.deaths, args.batch, args.session_timeout)
    finally:
        if server is not None:
            server.cleanup()


if __name__ == "__main__":
    main()
