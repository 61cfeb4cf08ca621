"""Cost of one rate-limit check: govrpc's limiters against the ``limits`` library, same run.

    python benchmarks/limiters.py [--checks 200000] [--repeat 7]

Each variant is asked ``checks`` times in a row (a limit high enough that every check
passes, the hot path of a limit that protects without refusing), ``repeat`` times, in
alternating order; the figure is the best repeat's time per check (the least disturbed by the
shared machine), and the median next to it. Target: under 1 µs for token bucket and sliding
window. Two rows give what the flow filters add to one call without the network (consumer:
a rate limit and ``actives``; provider: a rate limit and ``concurrency``). ``limits`` (in-memory storage) is the well-kept library closest to what is needed:
its fixed window, moving window and sliding-window counter are measured as they ship.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any, Callable


def variants() -> dict[str, Callable[[], Any]]:
    from govrpc.flowctl.concurrency import ConcurrencyLimiter
    from govrpc.flowctl.limiter import QueueingLimiter, SlidingWindowLimiter, TokenBucketLimiter, WarmupLimiter

    bucket = TokenBucketLimiter(1e9)
    window = SlidingWindowLimiter(1e9)
    warm = WarmupLimiter(1e9, warmup=1.0)
    queue = QueueingLimiter(1e9)
    slots = ConcurrencyLimiter(10**9)

    def concurrency() -> None:
        slots.acquire()
        slots.release()

    import math

    from govrpc.flowctl.filter import ConsumerFlowFilter, ProviderFlowFilter
    from govrpc.invocation import Invocation, Invoker
    from govrpc.url import URL, ServiceKey

    class Target(Invoker):
        url = URL.parse("grpc://127.0.0.1:1/bench.S")

        def invoke(self, invocation: Invocation) -> Any:
            return None

    target = Target()
    consumer = ConsumerFlowFilter().bind(URL.parse("consumer://h/bench.S?tps=1000000000&actives=1000000"))
    provider = ProviderFlowFilter().bind(URL.parse("grpc://h:1/bench.S?tps=1000000000&concurrency=1000000"))
    call = Invocation(ServiceKey("bench.S"), "echo", deadline=math.inf)
    assert consumer is not None and provider is not None

    found: dict[str, Callable[[], Any]] = {
        "consumer filter: tps + actives (a call)": lambda: consumer.invoke(target, call),
        "provider filter: tps + concurrency (a call)": lambda: provider.invoke(target, call),
        "govrpc tokenbucket": bucket.acquire,
        "govrpc slidingwindow": window.acquire,
        "govrpc warmup": warm.acquire,
        "govrpc queueing": lambda: queue.reserve(0.5),
        "govrpc concurrency (acquire+release)": concurrency,
    }
    try:
        from limits import RateLimitItemPerSecond
        from limits.storage import MemoryStorage
        from limits.strategies import (
            FixedWindowRateLimiter,
            MovingWindowRateLimiter,
            SlidingWindowCounterRateLimiter,
        )
    except ImportError:  # pragma: no cover - the comparison needs the test extra
        print("limits is not installed (pip install limits): its rows are left out")
        return found
    item = RateLimitItemPerSecond(10**9)
    for name, cls in (("limits fixedwindow", FixedWindowRateLimiter),
                      ("limits movingwindow", MovingWindowRateLimiter),
                      ("limits slidingwindowcounter", SlidingWindowCounterRateLimiter)):
        strategy = cls(MemoryStorage())
        found[name] = (lambda s: lambda: s.hit(item, "bench"))(strategy)
    return found


def measure(call: Callable[[], Any], checks: int) -> float:
    start = time.perf_counter()
    for _ in range(checks):
        call()
    return (time.perf_counter() - start) / checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checks", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    found = variants()
    # the moving window keeps every hit: fewer checks, or it measures its own memory growth
    checks = {name: args.checks if "moving" not in name else max(1000, args.checks // 20) for name in found}
    times: dict[str, list[float]] = {name: [] for name in found}
    for name, call in found.items():
        measure(call, 1000)  # warm up
    for round_ in range(args.repeat):
        order = list(found.items())
        if round_ % 2:
            order.reverse()
        for name, call in order:
            times[name].append(measure(call, checks[name]))
    print(f"python {sys.version.split()[0]}, {args.checks} checks x {args.repeat} alternating repeats")
    print(f"  {'limiter':<44} {'best µs':>8} {'median µs':>10}")
    for name, values in times.items():
        print(f"  {name:<44} {min(values) * 1e6:>8.3f} {statistics.median(values) * 1e6:>10.3f}")
    for name in ("govrpc tokenbucket", "govrpc slidingwindow"):
        best = min(times[name]) * 1e6
        print(f"  {name}: {best:.3f} µs per check, target < 1 µs: {'met' if best < 1 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
