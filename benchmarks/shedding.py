"""Priority shedding under twice the capacity: what share of each priority is served.

A provider (its own process) admits ``--rate`` calls/s (token bucket, burst a tenth of a
second's worth); this process sends twice that, paced: a quarter of the demand ``critical``
(the default level) and three quarters ``sheddable``. Printed: the share of each level
served, and the refusals counted as the provider's listener saw them (via the errors).

    python benchmarks/shedding.py [--rate 200] [--seconds 5]

Target: at least 99 % of the high-priority calls served while the low-priority ones take
what is left (about (rate - critical demand) / sheddable demand = 1/3 here).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any


def serve(registry: str, rate: float) -> None:
    import govrpc

    @govrpc.service("bench.Shed")
    class Shed:
        def echo(self, value: Any) -> Any:
            return value

    server = govrpc.Server(registry, max_workers=16)
    server.add(Shed(), tps=rate, **{"tps.burst": max(1.0, rate / 10)})
    server.start()
    print(server.port, flush=True)
    sys.stdin.read()
    server.stop(grace=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=8, help="sender threads per priority")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.rate)
        return 0
    import govrpc

    registry = f"file://{tempfile.mkdtemp(prefix='govrpc-shed-')}/registry"
    provider = subprocess.Popen([sys.executable, __file__, "--serve", registry, "--rate", str(args.rate)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert provider.stdout is not None
        provider.stdout.readline()
        client = govrpc.Client(registry, application="bench", timeout=5.0)
        proxy = client.proxy("bench.Shed", cluster="failfast")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                proxy.echo(0)
                break
            except govrpc.NoProviderError:
                time.sleep(0.05)
        time.sleep(0.2)  # the bucket refills after the probe
        demand = {"critical": 0.5 * args.rate, "sheddable": 1.5 * args.rate}  # 2 x the rate in all
        counts = {p: {"ok": 0, "shed": 0, "other": 0} for p in demand}
        lock = threading.Lock()
        start = time.monotonic() + 0.1

        def send(priority: str, per_second: float) -> None:
            for n in range(int(per_second * args.seconds)):
                delay = start + n / per_second - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                with govrpc.attachments(priority=priority):
                    try:
                        proxy.echo(n)
                        outcome = "ok"
                    except govrpc.RateLimitedError:
                        outcome = "shed"
                    except govrpc.GovRpcError:
                        outcome = "other"
                with lock:
                    counts[priority][outcome] += 1

        threads = [threading.Thread(target=send, args=(p, rate / args.threads))
                   for p, rate in demand.items() for _ in range(args.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(args.seconds + 60)
        elapsed = time.monotonic() - start
        print(f"provider rate {args.rate:g}/s, demand {sum(demand.values()):g}/s for {args.seconds:g} s "
              f"(critical {demand['critical']:g}/s, sheddable {demand['sheddable']:g}/s), took {elapsed:.1f} s")
        for priority, c in counts.items():
            total = sum(c.values())
            print(f"  {priority:<10} sent {total:>6}  served {c['ok']:>6} ({c['ok'] / total:6.1%})  "
                  f"shed {c['shed']:>6}  other errors {c['other']}")
        served = counts["critical"]["ok"] / max(1, sum(counts["critical"].values()))
        print(f"  high-priority share served: {served:.2%}   target >= 99 %: {'met' if served >= 0.99 else 'NOT met'}")
        client.close()
    finally:
        if provider.stdin:
            provider.stdin.close()
        try:
            provider.wait(timeout=10)
        except subprocess.TimeoutExpired:
            provider.kill()
            provider.wait()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
