"""Load balancers and failover, measured.

1. ``select()`` cost of every installed balancer at 10, 100 and 1,000
   providers (µs per pick, best of several rounds, after the first pick built
   the balancer's tables), with equal and with mixed weights. Also the whole
   cluster layer (``ConfiguredClusterInvoker.invoke`` with failover + random on
   in-memory invokers: directory, ejection check, balancer, per-call stats).
2. Lost calls when a provider is killed (SIGKILL) under load: three provider
   processes on a file registry, 8 client threads, one provider killed after a
   quarter of the calls; failover (idempotent method) against failfast.

    python benchmarks/loadbalance.py [--picks 100000] [--calls 400] [--skip-kill]

Targets: under 2 µs per pick for random, roundrobin and leastactive at 100
providers, under 5 µs for consistenthash; 0 lost calls with failover.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from govrpc.cluster.configured import ConfiguredClusterInvoker  # noqa: E402
from govrpc.cluster.directory import StaticDirectory  # noqa: E402
from govrpc.cluster.stats import stats_of  # noqa: E402
from govrpc.extension import extension_names, get_extension  # noqa: E402
from govrpc.invocation import Invocation, Invoker  # noqa: E402
from govrpc.url import CONSUMER, URL, ServiceKey  # noqa: E402

KEY = ServiceKey("bench.Svc")
TARGETS = {"random": 2.0, "roundrobin": 2.0, "leastactive": 2.0, "consistenthash": 5.0}


class NullInvoker(Invoker):
    def __init__(self, port: int, weight: int) -> None:
        self.url = URL("grpc", "10.0.0.1", port, KEY.service, {"weight": weight})

    def invoke(self, invocation: Invocation) -> Any:
        return None


def providers(n: int, mixed: bool) -> tuple[Invoker, ...]:
    rng = random.Random(n)
    return tuple(NullInvoker(20000 + i, rng.randint(50, 150) if mixed else 100) for i in range(n))


def busy(invokers: tuple[Invoker, ...], in_flight: int) -> None:
    """Leave ``in_flight`` calls open on providers drawn at random (they stay open: a snapshot)."""
    rng = random.Random(len(invokers))
    for _ in range(in_flight):
        stats_of(rng.choice(invokers)).begin()


def per_pick(name: str, invokers: tuple[Invoker, ...], picks: int, rounds: int = 5) -> float:
    url = URL(CONSUMER, "127.0.0.1", 0, KEY.service, {"loadbalance": name})
    balancer = get_extension("govrpc.loadbalance", name)(url)
    deadline = time.monotonic() + 60
    invocations = [Invocation(KEY, "find", (f"user-{k}",), {}, {}, deadline) for k in range(1000)]
    select = balancer.select
    for inv in invocations:  # builds tables, fills the round-robin wheel, warms caches
        select(invokers, inv)
    for _ in range(min(picks, 20000)):
        select(invokers, invocations[0])
    best = float("inf")
    loops = max(1, picks // len(invocations))
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(loops):
            for inv in invocations:
                select(invokers, inv)
        best = min(best, (time.perf_counter() - started) / (loops * len(invocations)))
    return best * 1e6


def cluster_layer(n: int, picks: int) -> float:
    invokers = providers(n, mixed=True)
    url = URL(CONSUMER, "127.0.0.1", 0, KEY.service, {"cluster": "failover", "loadbalance": "random"})
    cluster = ConfiguredClusterInvoker(StaticDirectory(KEY, url, invokers), url)
    inv = Invocation(KEY, "find", ("x",), {}, {}, time.monotonic() + 600)
    invoke = cluster.invoke
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(picks):
            invoke(inv)
        best = min(best, (time.perf_counter() - started) / picks)
    return best * 1e6


def bench_select(picks: int) -> None:
    print("select() cost, µs per pick (best of 5 rounds)")
    print(f"{'balancer':<18}{'weights':<9}{'n=10':>8}{'n=100':>8}{'n=1000':>8}   target@100")
    for name in extension_names("govrpc.loadbalance"):
        for mixed in (False, True):
            figures = []
            for n in (10, 100, 1000):
                invokers = providers(n, mixed)
                busy(invokers, 8)  # eight calls in flight, as with eight client threads
                figures.append(per_pick(name, invokers, picks if n < 1000 else picks // 2))
            target = TARGETS.get(name)
            verdict = "" if target is None else f"< {target:.0f} µs: {'yes' if figures[1] < target else 'NO'}"
            print(f"{name:<18}{'mixed' if mixed else 'equal':<9}" + "".join(f"{f:8.2f}" for f in figures)
                  + f"   {verdict}")
    figures = []
    for n in (10, 100, 1000):
        invokers = providers(n, mixed=True)
        busy(invokers, 2 * n)  # overload: about two calls in flight on every provider
        figures.append(per_pick("leastactive", invokers, picks if n < 1000 else picks // 2))
    print(f"{'leastactive':<18}{'busy':<9}" + "".join(f"{f:8.2f}" for f in figures)
          + "   (every provider busy: exact scan up to 32, least of 4 draws beyond)")
    for n in (10, 100):
        print(f"whole cluster layer (failover + random, stats, {n} providers): "
              f"{cluster_layer(n, picks // 2):.2f} µs per call")


PROVIDER = textwrap.dedent("""
    import sys, time
    import govrpc

    @govrpc.service("bench.Ledger")
    class Ledger:
        def __init__(self, name):
            self.name = name

        @govrpc.method(idempotent=True)
        def balance(self, n: int) -> list:
            return [self.name, n]

    server = govrpc.Server(sys.argv[1], application="bench").add(Ledger(sys.argv[2])).start()
    print(server.port, flush=True)
    time.sleep(120)
""")


def kill_under_load(cluster: str, calls: int, threads: int = 8) -> tuple[int, int, float]:
    import govrpc

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as tmp:
        registry = f"file://{tmp}/registry"
        procs = [subprocess.Popen([sys.executable, "-c", PROVIDER, registry, f"p{i}"], stdout=subprocess.PIPE,
                                  text=True, cwd=root) for i in range(3)]
        try:
            for proc in procs:
                assert proc.stdout is not None
                proc.stdout.readline()
            with govrpc.Client(registry, timeout=5.0) as client:
                ledger = client.proxy("bench.Ledger", cluster=cluster, retries=2)
                seen: set[str] = set()
                give_up = time.monotonic() + 30  # every wait below is bounded
                while len(seen) < 3:
                    if time.monotonic() > give_up:
                        raise SystemExit(f"only {sorted(seen)} of 3 providers answered within 30 s")
                    seen.add(ledger.balance(0)[0])
                lost = [0]
                done = [0]
                lock = threading.Lock()

                def load() -> None:
                    for n in range(calls):
                        try:
                            ledger.balance(n)
                            ok = True
                        except Exception:  # noqa: BLE001 - any failure is a lost call; the worker goes on
                            ok = False
                        with lock:
                            done[0] += 1
                            lost[0] += not ok

                workers = [threading.Thread(target=load) for _ in range(threads)]
                started = time.perf_counter()
                for w in workers:
                    w.start()
                while done[0] < threads * calls // 4 and time.monotonic() < give_up + 60:
                    time.sleep(0.002)
                procs[0].kill()
                for w in workers:
                    w.join(timeout=max(give_up + 120 - time.monotonic(), 1.0))
                if any(w.is_alive() for w in workers):
                    raise SystemExit("load threads did not finish within their time bound")
                elapsed = time.perf_counter() - started
                return lost[0], threads * calls, threads * calls / elapsed
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
                if proc.stdout is not None:
                    proc.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--picks", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=400, help="calls per client thread in the kill test")
    parser.add_argument("--skip-kill", action="store_true")
    args = parser.parse_args()
    bench_select(args.picks)
    if args.skip_kill:
        return
    print()
    print(f"provider SIGKILLed under load (3 providers, 8 threads x {args.calls} calls, kill after 25 %)")
    for cluster in ("failover", "failfast"):
        lost, total, rate = kill_under_load(cluster, args.calls)
        print(f"{cluster:<10} lost {lost} of {total} calls ({rate:,.0f} calls/s overall)")


if __name__ == "__main__":
    main()
