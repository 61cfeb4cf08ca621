"""CPU per call of each metrics stage alone, in process (no network): what metrics add to a call.

    python benchmarks/metrics_cost.py [--calls 200000]

Each stage wraps an invoker that returns at once, bound as a Client/Server binds it
(series bound per method), and is called ``--calls`` times; the "none" row is the bare
invoker. The end-to-end row with metrics on both sides is in ``overhead.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry  # noqa: E402

from govrpc.invocation import Invocation, Invoker, ProviderContext, build_filter_chain  # noqa: E402
from govrpc.monitor.metrics import (  # noqa: E402
    MetricsAttemptFilter,
    MetricsCallFilter,
    MetricsProviderFilter,
    MetricsRecorder,
)
from govrpc.url import URL, ServiceKey  # noqa: E402


class Leaf(Invoker):
    def __init__(self, url: URL) -> None:
        self.url = url

    def invoke(self, invocation: Invocation) -> Any:
        return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    recorder = MetricsRecorder.on(CollectorRegistry())
    url = URL("grpc", "127.0.0.1", 1, "bench.Echo", {"methods": "echo"})
    call = Invocation(ServiceKey("bench.Echo"), "echo", (b"x",), context=ProviderContext())
    leaf = Leaf(url)
    stages = {"none": [], "metrics-call (reference level)": [MetricsCallFilter(recorder)],
              "metrics-attempt (invoker level)": [MetricsAttemptFilter(recorder)],
              "metrics-provider": [MetricsProviderFilter(recorder)]}
    for name, filters in stages.items():
        chain = build_filter_chain(filters, leaf, url)
        started = time.process_time()
        for _ in range(args.calls):
            chain.invoke(call)
        print(f"{name:<34} {(time.process_time() - started) / args.calls * 1e6:6.2f} µs per call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
