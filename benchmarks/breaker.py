"""What a closed circuit breaker adds to a call: govrpc's breaker against pybreaker's ``call()``.

Both guard the same do-nothing function, in one run, alternating short rounds, at 1 and
8 threads through ONE breaker (the case pybreaker serialises: it holds a lock around
the protected call). govrpc's row is the decision's work: ``acquire`` + ``record`` and the
two clock reads, with consecutive failures, error ratio and slow calls all configured
(the dearest closed path); the ``BreakerFilter link`` row is the whole filter as a call
meets it (chain link, table lookup, decision), against the bare invoker. A second pybreaker row guards a function that sleeps 1 ms,
where its lock turns 8 threads into one.

    python benchmarks/breaker.py [--calls 200000] [--rounds 5]

Per-call figures are the process's CPU time (``time.process_time``) per call, so the other
load on a shared machine does not inflate them; the 1 ms section is wall time.

Target: govrpc's added cost per call under 2 µs at 1 and 8 threads.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from typing import Any, Callable


def per_call(body: Callable[[int], None], threads: int, calls: int,
             clock: Callable[[], float] = time.process_time) -> float:
    """Seconds per call with ``threads`` threads sharing ``calls``: CPU seconds of the process by
    default (the other engineers' load on this shared machine does not inflate it), or wall time."""
    each = calls // threads
    barrier = threading.Barrier(threads + 1)

    def work() -> None:
        barrier.wait()
        body(each)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    t0 = clock()  # before the release: a thread may run to its end before we are scheduled
    barrier.wait()
    for w in workers:
        w.join()
    return (clock() - t0) / (each * threads)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import pybreaker

    from govrpc.degrade.breaker import BreakerSettings, CircuitBreaker

    def noop() -> None:
        return None

    ours = CircuitBreaker("bench", BreakerSettings(failures=5, ratio=0.5, slow=1.0))
    theirs = pybreaker.CircuitBreaker(fail_max=5)
    mono = time.monotonic

    def bare(n: int) -> None:
        for _ in range(n):
            noop()

    def govrpc_breaker(n: int) -> None:
        for _ in range(n):
            state = ours.acquire()
            started = mono()
            noop()
            ended = mono()
            ours.record(state, False, ended - started, ended)  # type: ignore[arg-type]

    from govrpc.degrade.filters import BreakerFilter
    from govrpc.invocation import Invocation, Invoker, build_filter_chain
    from govrpc.url import URL, ServiceKey

    class Nothing(Invoker):
        url = URL("grpc", "127.0.0.1", 1, "bench.S", {"breaker.failures": "5", "breaker.ratio": "0.5",
                                                      "breaker.slow": "1.0"})

        def invoke(self, invocation: Invocation) -> Any:
            return None

    bottom = Nothing()
    linked = build_filter_chain([BreakerFilter()], bottom)
    invocation = Invocation(ServiceKey("bench.S"), "echo")

    def bare_invoker(n: int) -> None:
        call = bottom.invoke
        for _ in range(n):
            call(invocation)

    def breaker_filter(n: int) -> None:
        call = linked.invoke
        for _ in range(n):
            call(invocation)

    def pybreaker_call(n: int) -> None:
        for _ in range(n):
            theirs.call(noop)

    variants = {"bare call": bare, "govrpc breaker": govrpc_breaker, "pybreaker call()": pybreaker_call,
                "bare invoker": bare_invoker, "BreakerFilter link": breaker_filter}
    print(f"python {sys.version.split()[0]}, pybreaker {getattr(pybreaker, '__version__', '?')}, "
          f"{args.calls} calls x {args.rounds} alternating rounds")
    for threads in (1, 8):
        times: dict[str, list[float]] = {name: [] for name in variants}
        for round_ in range(args.rounds):
            order = list(variants.items())
            if round_ % 2:
                order.reverse()
            for name, body in order:
                times[name].append(per_call(body, threads, args.calls))
        bare_cost = statistics.median(times["bare call"])
        bare_invoke = statistics.median(times["bare invoker"])
        print(f"\n{threads} thread(s) through one breaker")
        print(f"  {'variant':<18} {'CPU µs/call':>11} {'added µs/call':>14}")
        for name, values in times.items():
            cost = statistics.median(values)
            base = bare_invoke if name == "BreakerFilter link" else bare_cost
            added = "" if name.startswith("bare") else f"{(cost - base) * 1e6:>14.2f}"
            print(f"  {name:<18} {cost * 1e6:>11.2f} {added}")
        print("  target: govrpc breaker adds < 2 µs per call")

    slow_breaker = pybreaker.CircuitBreaker(fail_max=5)
    ours_slow = CircuitBreaker("bench-slow", BreakerSettings(failures=5))

    def sleep_pybreaker(n: int) -> None:
        for _ in range(n):
            slow_breaker.call(time.sleep, 0.001)

    def sleep_govrpc(n: int) -> None:
        for _ in range(n):
            state = ours_slow.acquire()
            started = mono()
            time.sleep(0.001)
            ours_slow.record(state, False, mono() - started)  # type: ignore[arg-type]

    consumer_path()
    print("\n8 threads, 100 calls each of a function sleeping 1 ms (total seconds; 0.1 s is no serialisation)")
    for name, body in (("govrpc breaker", sleep_govrpc), ("pybreaker call()", sleep_pybreaker)):
        seconds = per_call(body, 8, 800, time.perf_counter) * 800
        print(f"  {name:<18} {seconds:>6.2f} s")
    return 0


def consumer_path(rounds: int = 9, calls: int = 50_000) -> None:
    """The whole consumer path (proxy, Invocation, failover, balancer, filters) on a transport that
    answers at once, with and without breakers: what the stage adds to a real call's CPU."""
    import govrpc
    from govrpc.invocation import Invocation, Invoker
    from govrpc.url import URL

    class Answering(Invoker):
        def __init__(self, url: URL) -> None:
            self.url = url

        def invoke(self, invocation: Invocation) -> Any:
            return invocation.args[0]

    client = govrpc.Client("memory://breaker-bench", local_first=False)
    client._invoker_for = Answering  # type: ignore[method-assign]
    plain = client.proxy("bench.E", url="grpc://127.0.0.1:1").echo
    breaking = client.proxy("bench.E", url="grpc://127.0.0.1:1",
                            breaker={"failures": 5, "ratio": 0.5, "slow": 1.0}).echo
    times: dict[str, list[float]] = {"govrpc": [], "govrpc+breaker": []}
    for round_ in range(rounds):
        order = [("govrpc", plain), ("govrpc+breaker", breaking)]
        if round_ % 2:
            order.reverse()
        for name, call in order:
            t0 = time.process_time()
            for _ in range(calls):
                call(1)
            times[name].append((time.process_time() - t0) / calls)
    client.close()
    plain_cost, breaker_cost = (statistics.median(times[n]) for n in ("govrpc", "govrpc+breaker"))
    print("\nwhole consumer path on a transport that answers at once (1 thread, CPU µs/call)")
    print(f"  govrpc {plain_cost * 1e6:.2f}, with breakers {breaker_cost * 1e6:.2f}: "
          f"added {(breaker_cost - plain_cost) * 1e6:.2f} µs (target < 2)")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
