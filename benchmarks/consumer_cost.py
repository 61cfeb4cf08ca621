"""What govrpc's consumer side costs in CPU, without the network: proxy -> stages -> cluster.

The provider is a no-op transport invoker, so the figure is govrpc's own Python work
per call (the budget is about 25 µs for every consumer stage together); gRPC's own
cost is measured against raw grpcio by ``benchmarks/overhead.py``. Options are the
reference's, as ``key=value``:

    python benchmarks/consumer_cost.py                 # defaults (trace propagation on)
    python benchmarks/consumer_cost.py trace=false     # the trace stage off
    python benchmarks/consumer_cost.py loadbalance=leastactive

Prints µs per call (best of 7 rounds) and the number of Python frames one call runs.
"""

from __future__ import annotations

import os
import sys
import timeit
from typing import Any


def main(argv: list[str]) -> int:
    import govrpc
    from govrpc.invocation import Invocation, Invoker

    class NullInvoker(Invoker):
        def __init__(self, url: Any) -> None:
            self.url = url

        def invoke(self, invocation: Invocation) -> Any:
            return b"x"

    options = dict(arg.split("=", 1) for arg in argv)
    client = govrpc.Client(local_first=False)
    client._invoker_for = NullInvoker  # type: ignore[method-assign]
    proxy = client.proxy("bench.Echo", url="grpc://127.0.0.1:1", **options)
    call = proxy.echo
    for _ in range(1000):
        call(b"x")
    frames = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal frames
        frames += event == "call"

    sys.setprofile(count)
    call(b"x")
    sys.setprofile(None)
    n = 50_000
    best = min(timeit.repeat(lambda: call(b"x"), number=n, repeat=7)) / n * 1e6
    print(f"{best:.2f} µs per call, {frames} Python frames   options: {options or 'defaults'}")
    client.close()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main(sys.argv[1:]))
