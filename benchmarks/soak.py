"""Soak: minutes of mixed traffic while providers are killed and restarted and rules change.

Starts a private ZooKeeper (tests/zkharness.py: Debian's zookeeper package) and three
provider processes (tests/chaos/provider.py) on 127.0.0.1. Consumer threads call an
idempotent method (``balance``) and a non-idempotent one (``deposit``) through failover;
every few seconds one provider is SIGKILLed or stopped gracefully (SIGTERM) and a new one
started, and a configurator or route rule is written. Prints calls, failed (by error:
a non-idempotent call in flight on a SIGKILLed provider fails, and is reported, never
lost), p99, and the consumer's memory (RSS), threads and file descriptors at the start
and the end, so growth beyond noise shows.

    python benchmarks/soak.py [--seconds 300] [--threads 4] [--event-every 5]
"""

from __future__ import annotations

import argparse
import collections
import gc
import math
import os
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import govrpc  # noqa: E402
from tests.chaos.harness import ProviderProcess  # noqa: E402
from tests.zkharness import ZookeeperServer, zk_address  # noqa: E402


_LOG_STEP = math.log(1.01)


def percentile(buckets: collections.Counter[int], q: float) -> float:
    """The ``q`` quantile, seconds, of a log histogram (within 1 %)."""
    total, seen = sum(buckets.values()), 0
    for bucket in sorted(buckets):
        seen += buckets[bucket]
        if seen >= q * total:
            return math.exp((bucket + 1) * _LOG_STEP) / 1e6
    return 0.0


def resources() -> dict[str, float]:
    rss_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:"))
    return {"rss_mb": rss_kb / 1024, "threads": len(os.listdir("/proc/self/task")),
            "fds": len(os.listdir("/proc/self/fd"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--event-every", type=float, default=5.0, help="seconds between kills/restarts/rules")
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    zk = ZookeeperServer().start()
    address = zk_address(zk.hosts, session_timeout=4, empty_protection=None)
    procs: list[ProviderProcess] = []
    try:
        procs = [ProviderProcess(address, f"p{i}") for i in range(3)]
        client = govrpc.Client(address, local_first=False, timeout=3.0)
        admin = govrpc.Admin(address)
        ledger = client.proxy("chaos.Ledger", retries=2)
        reference = client.reference("chaos.Ledger", retries=2)
        end = time.monotonic() + 20
        while len(reference.directory.urls) < 3 and time.monotonic() < end:
            time.sleep(0.05)
        for n in range(200):  # warm: channels, caches, lazily made threads
            ledger.balance("warm", n)
        gc.collect()
        start = resources()
        # latencies as a log histogram (1 % wide buckets): memory that does not grow with the calls
        buckets: collections.Counter[int] = collections.Counter()
        failures: collections.Counter[str] = collections.Counter()
        counts = {"calls": 0}
        lock = threading.Lock()
        stop = threading.Event()
        deadline = time.monotonic() + args.seconds

        def load(worker: int) -> None:
            n = 0
            while not stop.is_set() and time.monotonic() < deadline:
                n += 1
                began = time.monotonic()
                try:
                    (ledger.balance if n % 2 else ledger.deposit)(f"a{worker}", n)
                    failed = None
                except Exception as exc:  # noqa: BLE001 - counted by type
                    failed = type(exc).__name__
                took = time.monotonic() - began
                with lock:
                    counts["calls"] += 1
                    buckets[int(math.log(max(took, 1e-6) * 1e6) / _LOG_STEP)] += 1
                    if failed:
                        failures[failed] += 1
                time.sleep(0.001)

        threads = [threading.Thread(target=load, args=(w,), daemon=True) for w in range(args.threads)]
        for t in threads:
            t.start()
        events: collections.Counter[str] = collections.Counter()
        generation = 0
        middle: dict[str, float] = {}
        middle_at = time.monotonic() + min(60.0, args.seconds / 3)
        while time.monotonic() < deadline - args.event_every:
            time.sleep(args.event_every)
            action = rng.choice(["kill", "restart", "rule", "route"])
            if action in ("kill", "restart"):
                i = rng.randrange(len(procs))
                procs[i].kill() if action == "kill" else procs[i].terminate()
                generation += 1
                procs[i] = ProviderProcess(address, f"p{i}-{generation}")
            elif action == "rule":
                admin.set_override("chaos.Ledger", "soak", f"loadbalance = {rng.choice(['random', 'roundrobin', 'leastactive', 'shortestresponse'])}\n")
            else:
                admin.add_route("chaos.Ledger", "soak", f"=> address != 127.0.0.1:{rng.choice(procs).port}"
                                if rng.random() < 0.5 else "=> host = 127.0.0.1")
            events[action] += 1
            if not middle and time.monotonic() >= middle_at:
                middle = resources()
        stop.set()
        for t in threads:
            t.join(30)
        admin.delete_rule("chaos.Ledger", "routers", "soak")
        time.sleep(1.0)
        gc.collect()
        end_res = resources()
        p99 = percentile(buckets, 0.99)
        print(f"soak: {args.seconds:.0f} s, {args.threads} consumer threads, events {dict(events)}")
        print(f"calls={counts['calls']} failed={sum(failures.values())} {dict(failures)} p99={p99 * 1000:.1f}ms")
        print("consumer at start: rss={rss_mb:.1f} MB threads={threads} fds={fds}".format(**start))
        if middle:
            print("consumer mid-run:  rss={rss_mb:.1f} MB threads={threads} fds={fds}".format(**middle))
        print("consumer at end:   rss={rss_mb:.1f} MB threads={threads} fds={fds}".format(**end_res))
        admin.close()
        client.close()
    finally:
        for proc in procs:
            proc.kill()
        zk.cleanup()


if __name__ == "__main__":
    main()
