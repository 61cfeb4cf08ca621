"""Time from SIGSTOP of a provider to no more traffic to it (p50/p99 over trials).

Three provider processes on a file registry; a consumer with the given keepalive
calls them from 3 threads. Each trial freezes one provider (SIGSTOP) and measures
(a) until the consumer marks its link down and leaves it out of the candidates,
(b) until the last call it answered before the freeze is followed by no new one
sent to it (the same instant here: new calls are no longer routed to it), then
SIGCONT and waits until it answers again. No call may fail (they are idempotent,
and the ones caught in flight fail over once keepalive gives up on the link).

    python benchmarks/sigstop.py [--trials 10] [--keepalive-time 1] [--keepalive-timeout 1]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import govrpc  # noqa: E402
from tests.integration.monitor.providers import spawn, stop  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--keepalive-time", type=float, default=1.0)
    parser.add_argument("--keepalive-timeout", type=float, default=1.0)
    args = parser.parse_args()
    registry = f"file://{tempfile.mkdtemp(prefix='govrpc-sigstop-')}/registry"
    procs = [spawn(registry, f"p{i}") for i in range(3)]
    failures: list[BaseException] = []
    answered = [0]
    done = threading.Event()
    try:
        client = govrpc.Client(registry, keepalive_time=args.keepalive_time,
                               keepalive_timeout=args.keepalive_timeout, timeout=10.0, local_first=False)
        echo = client.proxy("mon.Echo", loadbalance="roundrobin")
        reference = client.reference("mon.Echo", loadbalance="roundrobin")
        end = time.monotonic() + 30
        while len(reference.directory.invokers) < 3 and time.monotonic() < end:
            time.sleep(0.05)

        def load() -> None:
            for _ in range(1_000_000):
                if done.is_set():
                    return
                try:
                    echo.whoami()
                    answered[0] += 1
                except Exception as exc:  # noqa: BLE001
                    failures.append(exc)
                time.sleep(0.002)

        threads = [threading.Thread(target=load, daemon=True) for _ in range(3)]
        for t in threads:
            t.start()
        detect: list[float] = []
        for trial in range(args.trials):
            proc, port = procs[trial % 3]
            address = f"127.0.0.1:{port}"
            time.sleep(0.5)
            os.kill(proc.pid, signal.SIGSTOP)
            stopped = time.monotonic()
            while address not in client.pool.down and time.monotonic() < stopped + 60:
                time.sleep(0.005)
            detect.append(time.monotonic() - stopped)
            os.kill(proc.pid, signal.SIGCONT)
            resumed = time.monotonic()
            while address in client.pool.down and time.monotonic() < resumed + 60:
                time.sleep(0.01)
            print(f"trial {trial}: left out {detect[-1]:.2f} s after SIGSTOP, "
                  f"back {time.monotonic() - resumed:.2f} s after SIGCONT", flush=True)
        done.set()
        for t in threads:
            t.join(timeout=15)
        detect.sort()
        p99 = detect[min(len(detect) - 1, int(0.99 * len(detect)))]
        print(f"\nkeepalive {args.keepalive_time} s + {args.keepalive_timeout} s: SIGSTOP -> no more traffic "
              f"p50 {statistics.median(detect):.2f} s, p99 {p99:.2f} s over {len(detect)} trials; "
              f"{answered[0]} calls answered, {len(failures)} failed")
        client.close()
        return 1 if failures else 0
    finally:
        stop([p for p, _ in procs])


if __name__ == "__main__":
    sys.exit(main())
