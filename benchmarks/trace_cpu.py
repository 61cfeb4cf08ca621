"""What the trace stage costs a call beside a real one, on the thread that runs it, alternated call by call.

    python benchmarks/trace_cpu.py [--side consumer|provider] [--calls 3000] [--no-sdk]

Each side in a process of its own, pinned to a CPU of its own, on 127.0.0.1, counted with
``time.thread_time_ns()`` so that drift falls on both variants alike; the difference is
what the stage costs beside a real call, which is several times what
``consumer_cost.py --sdk [--side provider]`` times on a hot loop. With the OpenTelemetry SDK
set (a batch processor whose exporter drops the spans) unless ``--no-sdk``:

- ``--side consumer``: the calling thread's CPU per call, the same reference called with the
  SDK's provider in force and without (propagation only), call after call (the provider
  answers untraced). Only this one client and channel are in the process: what else a
  process holds changes the figures (``call_cpu.py``'s eight variants each cost more).
- ``--side provider`` (the default): one provider process serves two services on two govrpc
  servers, one with the trace stage on ("traced": a server span per call) and one with
  ``trace=False`` ("untraced": the server's direct path, no stage at all); a client calls
  them in turn, and the provider counts the CPU its worker thread spends on each handled
  call (grpc's own Python around the method included: it wraps grpc's private
  ``_unary_response_in_pool`` for this measurement only). The poller thread's share (reading
  the request, sending the answer) is not counted, nor is what the worker does after the answer
  (``govrpc.rpc.executor.after_answer``: ending a server span into a batch queue): a caller does not
  wait for either.
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

from overhead import sdk_provider  # noqa: E402 - the benchmarks' folder is this script's path

WARM = 300  # calls per variant not counted


def serve(sdk: bool) -> None:
    from grpc import _server

    import govrpc

    if sdk:
        from opentelemetry import trace

        trace.set_tracer_provider(sdk_provider())
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


def serve_plain() -> None:
    import govrpc

    @govrpc.service("bench.Untraced")
    class Untraced:
        def echo(self, value: bytes) -> bytes:
            return value

    server = govrpc.Server("memory://trace-cpu", port=0, host="127.0.0.1").add(Untraced(), trace=False).start()
    print(server.port, flush=True)
    sys.stdin.readline()
    server.stop(0)


def consumer(calls: int, sdk: bool) -> None:
    """The calling thread's CPU per call: the SDK's provider in force (or, with ``--no-sdk``, the
    reference with ``trace=false``) against propagation only, alternated."""
    from opentelemetry import trace

    import govrpc

    provider = subprocess.Popen([sys.executable, __file__, "--serve", "untraced"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pin(provider.pid)
    try:
        assert provider.stdout is not None and provider.stdin is not None
        port = int(provider.stdout.readline())
        recording = sdk_provider() if sdk else None
        payload = b"x" * 16
        clock = time.thread_time_ns
        spent: dict[str, list[int]] = {"with": [], "without": []}
        deadline = time.monotonic() + 600  # bounded whatever the machine does
        with govrpc.Client(timeout=5.0) as client:
            url = f"grpc://127.0.0.1:{port}"
            traced = client.proxy("bench.Untraced", url=url).echo
            untraced = traced if sdk else client.proxy("bench.Untraced", url=url, trace=False).echo
            for round_ in range(calls + WARM):
                if time.monotonic() > deadline:
                    break
                for name, call, tracer_provider in (("without", untraced, None), ("with", traced, recording)):
                    trace._TRACER_PROVIDER = tracer_provider  # type: ignore[attr-defined]  # the SDK for its variant
                    started = clock()
                    call(payload)
                    if round_ >= WARM:
                        spent[name].append(clock() - started)
            trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
        if recording is not None:
            recording.shutdown()
        provider.stdin.write("\n")
        provider.stdin.flush()
    finally:
        stop(provider)
    with_, without = (statistics.median(spent[n]) / 1e3 for n in ("with", "without"))
    what = ("SDK recording against propagation only" if sdk else "propagation only against trace=false")
    print(f"calling thread's CPU per call, {len(spent['with'])} calls each, alternated ({what})")
    print(f"  with      {with_:6.1f} µs\n  without   {without:6.1f} µs\n  trace stage {with_ - without:+.1f} µs")


def pin(other: int) -> None:
    """This process and ``other`` on a CPU each (less scheduler noise), where there are two: at once,
    before either starts a thread (Linux sets a thread's CPUs, and new threads inherit them)."""
    if len(os.sched_getaffinity(0)) >= 2:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[0]})
        os.sched_setaffinity(other, {cpus[1]})


def stop(process: subprocess.Popen[str]) -> None:
    """Close ``process``'s stdin (a provider here stops then) and wait for it, bounded."""
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls to each variant, alternated")
    parser.add_argument("--no-sdk", action="store_true", help="no OpenTelemetry SDK: propagation only")
    parser.add_argument("--side", choices=("consumer", "provider"), default="provider")
    parser.add_argument("--serve", choices=("sdk", "plain", "untraced"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "untraced":
        serve_plain()
        return 0
    if args.serve:
        serve(args.serve == "sdk")
        return 0
    if args.side == "consumer":
        consumer(args.calls, not args.no_sdk)
        return 0
    import govrpc

    provider = subprocess.Popen([sys.executable, __file__, "--serve", "plain" if args.no_sdk else "sdk"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pin(provider.pid)
    try:
        assert provider.stdout is not None and provider.stdin is not None
        traced_port, untraced_port = (int(x) for x in provider.stdout.readline().split())
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
        stop(provider)
    what = "propagation only" if args.no_sdk else "SDK recording"
    print(f"provider worker thread's CPU per handled call, {result['calls'] - WARM} calls each, alternated ({what})")
    print(f"  traced    {result['traced']:6.1f} µs\n  untraced  {result['untraced']:6.1f} µs\n"
          f"  trace stage {result['traced'] - result['untraced']:+.1f} µs")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
