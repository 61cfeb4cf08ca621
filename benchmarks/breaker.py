"""What a closed circuit breaker adds to a call: govrpc's breaker against pybreaker's ``call()``.

Both guard the same do-nothing function, in one run, alternating short rounds, at 1 and
8 threads through ONE breaker (the case pybreaker serialises: it holds a lock around
the protected call). govrpc's row is the filter's work: ``acquire`` + ``record`` and the
two clock reads, with consecutive failures, error ratio and slow calls all configured
(the dearest closed path). A second pybreaker row guards a function that sleeps 1 ms,
where its lock turns 8 threads into one.

    python benchmarks/breaker.py [--calls 200000] [--rounds 5]

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


def per_call(body: Callable[[int], None], threads: int, calls: int) -> float:
    """Seconds of wall time per call with ``threads`` threads sharing ``calls``."""
    each = calls // threads
    barrier = threading.Barrier(threads + 1)

    def work() -> None:
        barrier.wait()
        body(each)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    t0 = time.perf_counter()  # before the release: a thread may run to its end before we are scheduled
    barrier.wait()
    for w in workers:
        w.join()
    return (time.perf_counter() - t0) / (each * threads)


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

    def pybreaker_call(n: int) -> None:
        for _ in range(n):
            theirs.call(noop)

    variants = {"bare call": bare, "govrpc breaker": govrpc_breaker, "pybreaker call()": pybreaker_call}
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
        print(f"\n{threads} thread(s) through one breaker")
        print(f"  {'variant':<18} {'µs/call':>8} {'added µs/call':>14}")
        for name, values in times.items():
            cost = statistics.median(values)
            added = "" if name == "bare call" else f"{(cost - bare_cost) * 1e6:>14.2f}"
            print(f"  {name:<18} {cost * 1e6:>8.2f} {added}")
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

    print("\n8 threads, 100 calls each of a function sleeping 1 ms (total seconds; 0.1 s is no serialisation)")
    for name, body in (("govrpc breaker", sleep_govrpc), ("pybreaker call()", sleep_pybreaker)):
        seconds = per_call(body, 8, 800) * 800
        print(f"  {name:<18} {seconds:>6.2f} s")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
