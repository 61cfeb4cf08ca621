"""The calling thread's CPU per call, the variants alternated call by call.

    python benchmarks/call_cpu.py [--calls 4000]

Timed rounds of a variant (``benchmarks/overhead.py``) drift with the machine by tens of
µs between rounds. Here every variant makes one call in turn, round after round, over
real gRPC to one provider process on 127.0.0.1 (a govrpc server and a raw grpcio
server), and ``time.thread_time_ns()`` around each call counts the CPU the calling
thread spent on it, grpc's C core on that thread included: drift falls on every
variant alike. Two identical variants agree within about 1 µs here. It also shows
what a hot loop (``benchmarks/consumer_cost.py``) does not: beside a real call the
same Python costs several times more (its code and data are no longer in the CPU's
caches), so a few string operations, a bucket search or a lock each show as µs.
"raw grpcio (core call)" is the same call sent straight to grpc's core as govrpc sends it
(``govrpc.rpc.unary``), "govrpc (grpcio's call)" govrpc on grpcio's own multicallable.
Prints the median and the 95 % trimmed mean per variant, and each one's difference
to raw grpcio. The provider side is not counted (see ``overhead.py``'s server CPU).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from typing import Any, Callable


def serve() -> None:
    from concurrent import futures

    import grpc

    import govrpc

    @govrpc.service("bench.Echo")
    class Echo:
        def echo(self, value: bytes) -> bytes:
            return value

    server = govrpc.Server("memory://call-cpu", port=0, host="127.0.0.1")
    server.add(Echo())
    server.start()
    raw = grpc.server(futures.ThreadPoolExecutor(4))
    raw.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "bench.Raw", {"echo": grpc.unary_unary_rpc_method_handler(lambda request, context: request)}),))
    raw_port = raw.add_insecure_port("127.0.0.1:0")
    raw.start()
    print(server.port, raw_port, flush=True)
    sys.stdin.read()  # until the parent closes it
    raw.stop(0)
    server.stop(0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=4000, help="calls per variant (each alternated with the others)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return 0
    provider = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
    if len(os.sched_getaffinity(0)) >= 2:  # one CPU each: less scheduler noise
        cpus = sorted(os.sched_getaffinity(0))  # at once: Linux sets a thread's CPUs, new threads inherit them
        os.sched_setaffinity(0, {cpus[0]})
        os.sched_setaffinity(provider.pid, {cpus[1]})
    try:
        assert provider.stdout is not None
        port, raw_port = (int(x) for x in provider.stdout.readline().split())
        return measure(port, raw_port, args.calls)
    finally:
        from trace_cpu import stop  # the benchmarks' folder is this script's path

        stop(provider)


def measure(port: int, raw_port: int, calls: int) -> int:
    import grpc
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    import govrpc
    from govrpc.rpc import unary

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    sdk = TracerProvider()
    sdk.add_span_processor(BatchSpanProcessor(Drop()))
    payload = b"x" * 16
    raw_call = grpc.insecure_channel(f"127.0.0.1:{raw_port}").unary_unary("/bench.Raw/echo", _registered_method=True)
    raw_core = unary.blocking_call(raw_call)
    assert raw_core is not None
    randbits = random.getrandbits
    unary.ENABLED = False  # read at a method's first call: this client keeps grpcio's own multicallable
    try:
        public_client = govrpc.Client(timeout=5.0)
        public = public_client.proxy("bench.Echo", url=f"grpc://127.0.0.1:{port}").echo
        public(b"")
    finally:
        unary.ENABLED = True
    with public_client, govrpc.Client(timeout=5.0) as client:
        url = f"grpc://127.0.0.1:{port}"
        default = client.proxy("bench.Echo", url=url).echo
        untraced = client.proxy("bench.Echo", url=url, trace=False).echo
        metered = client.proxy("bench.Echo", url=url, metrics=True).echo
        variants: dict[str, tuple[Callable[[], Any], Any]] = {
            "raw grpcio": (lambda: raw_call(payload, timeout=5.0), None),
            "raw+traceparent": (lambda: raw_call(payload, timeout=5.0, metadata=(
                ("traceparent", "00-%032x-%016x-01" % (randbits(128), randbits(64))),)), None),
            "raw grpcio (core call)": (lambda: raw_core(payload, 5.0, None), None),
            "govrpc (grpcio's call)": (lambda: public(payload), None),
            "govrpc trace=off": (lambda: untraced(payload), None),
            "govrpc": (lambda: default(payload), None),
            "govrpc metrics (consumer)": (lambda: metered(payload), None),
            "govrpc+otel sdk (consumer)": (lambda: default(payload), sdk),
        }
        spent: dict[str, list[int]] = {name: [] for name in variants}
        clock = time.thread_time_ns
        deadline = time.monotonic() + 600  # bounded whatever the machine does
        for round_ in range(calls + 300):
            if time.monotonic() > deadline:
                break
            for name, (call, provider) in variants.items():
                trace._TRACER_PROVIDER = provider  # type: ignore[attr-defined]  # the SDK for its variant only
                started = clock()
                call()
                if round_ >= 300:  # the first rounds warm up
                    spent[name].append(clock() - started)
        trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
    sdk.shutdown()
    raw = statistics.median(spent["raw grpcio"]) / 1e3
    print(f"calling thread's CPU per call, {len(spent['raw grpcio'])} calls per variant, alternated")
    print(f"  {'variant':28s} {'median µs':>10s} {'trimmed µs':>11s} {'vs raw':>8s}")
    for name, values in spent.items():
        values.sort()
        median = statistics.median(values) / 1e3
        trimmed = statistics.mean(values[:max(1, int(len(values) * 0.95))]) / 1e3
        print(f"  {name:28s} {median:10.1f} {trimmed:11.1f} {median - raw:+8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
