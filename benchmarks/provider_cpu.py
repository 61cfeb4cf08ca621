"""The provider's CPU per handled call on the thread that runs it, traced and untraced alternated.

    python benchmarks/provider_cpu.py [--calls 3000] [--no-sdk]

The provider side of ``benchmarks/call_cpu.py``: one provider process on 127.0.0.1 serves
two services on two govrpc servers, one with the trace stage on ("traced": with the
OpenTelemetry SDK set, a server span per call into a batch processor that drops them) and
one with ``trace=False`` ("untraced": the server's direct path, no stage at all). A client
calls them in turn, call after call, and the provider counts, with
``time.thread_time_ns()``, the CPU the worker thread spends on each handled call (grpc's
own Python around the method included: it wraps grpc's ``_unary_response_in_pool``, a
private function, for this measurement only). Drift falls on both alike; the difference
is what the trace stage costs a handled call beside a real one, which is several times
what ``consumer_cost.py --sdk --side provider`` times on a hot loop. The poller thread's
share (reading the request, sending the answer) is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

WARM = 300  # calls per variant not counted


def serve(sdk: bool) -> None:
    from grpc import _server

    import govrpc

    if sdk:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

        class Drop(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Drop()))
        trace.set_tracer_provider(provider)
    spent: dict[int, list[int]] = {}  # by the method's handler: one per server here
    handle = _server._unary_response_in_pool
    clock = time.thread_time_ns

    def counted(rpc_event: Any, state: Any, behavior: Any, *args: Any) -> None:
        started = clock()
        try:
            handle(rpc_event, state, behavior, *args)
        finally:
            spent.setdefault(id(behavior), []).append(clock() - started)

    _server._unary_response_in_pool = counted

    @govrpc.service("bench.Traced")
    class Traced:
        def echo(self, value: bytes) -> bytes:
            return value

    @govrpc.service("bench.Untraced")
    class Untraced:
        def echo(self, value: bytes) -> bytes:
            return value

    traced = govrpc.Server("memory://provider-cpu-a", port=0, host="127.0.0.1").add(Traced()).start()
    untraced = govrpc.Server("memory://provider-cpu-b", port=0, host="127.0.0.1").add(Untraced(), trace=False).start()
    print(traced.port, untraced.port, flush=True)
    sys.stdin.readline()  # the client's calls are done
    # the first handler seen is the traced server's: the client calls it first
    medians = [statistics.median(values[WARM:]) / 1e3 for values in spent.values()]
    print(json.dumps({"traced": medians[0], "untraced": medians[1], "calls": len(next(iter(spent.values())))}),
          flush=True)
    traced.stop(0)
    untraced.stop(0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls to each service, alternated")
    parser.add_argument("--no-sdk", action="store_true", help="no OpenTelemetry SDK: propagation only")
    parser.add_argument("--serve", choices=("sdk", "plain"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve == "sdk")
        return 0
    import govrpc

    provider = subprocess.Popen([sys.executable, __file__, "--serve", "plain" if args.no_sdk else "sdk"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert provider.stdout is not None and provider.stdin is not None
        traced_port, untraced_port = (int(x) for x in provider.stdout.readline().split())
        if len(os.sched_getaffinity(0)) >= 2:  # one CPU each: less scheduler noise
            cpus = sorted(os.sched_getaffinity(0))
            os.sched_setaffinity(0, {cpus[0]})
            os.sched_setaffinity(provider.pid, {cpus[1]})
        payload = b"x" * 16
        deadline = time.monotonic() + 600  # bounded whatever the machine does
        with govrpc.Client(timeout=5.0) as client:
            traced = client.proxy("bench.Traced", url=f"grpc://127.0.0.1:{traced_port}").echo
            untraced = client.proxy("bench.Untraced", url=f"grpc://127.0.0.1:{untraced_port}").echo
            for _ in range(args.calls + WARM):
                if time.monotonic() > deadline:
                    break
                traced(payload)
                untraced(payload)
        provider.stdin.write("\n")
        provider.stdin.flush()
        result = json.loads(provider.stdout.readline())
    finally:
        if provider.stdin is not None:
            provider.stdin.close()
        try:
            provider.wait(timeout=20)
        except subprocess.TimeoutExpired:
            provider.kill()
            provider.wait(timeout=5)
    what = "propagation only" if args.no_sdk else "SDK recording"
    print(f"provider worker thread's CPU per handled call, {result['calls'] - WARM} calls each, alternated ({what})")
    print(f"  traced    {result['traced']:6.1f} µs\n  untraced  {result['untraced']:6.1f} µs\n"
          f"  trace stage {result['traced'] - result['untraced']:+.1f} µs")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
