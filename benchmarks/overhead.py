"""What govrpc adds to a call: raw grpcio against govrpc, alternated in one run.

A provider process hosts a raw grpcio server (a generic handler echoing bytes) and
govrpc Servers whose services echo the same bytes (registered in a file registry),
one server per variant, as the raw one is. This process calls them in short rounds,
1 client thread, then 8. It prints calls/s, p50, p99, and the CPU per call of this
process and of the provider process for each, and the ratio to raw grpcio. With 8
threads on 2 cores the provider process is the bottleneck (its Python runs under one
GIL), so its CPU per call sets the ratio.

    python benchmarks/overhead.py [--rounds 12] [--seconds 0.4] [--payload 16] [--pin]

``--pin`` puts this process on one CPU and the providers on another (less scheduler
noise; both variants alike).

Paired rounds: every round of a variant runs right beside a round of raw grpcio (the
pair's order alternating, ABBA), and a row's ratio is the median over rounds of
(variant calls/s / its neighbouring raw round's calls/s), printed with its interquartile
range. The shared machine's speed drifts by tens of per cent over seconds (raw grpcio
alone has gone from 875 to 2,309 calls/s between runs); a pair's two rounds share that
drift, so it cancels in their ratio instead of landing on whichever variant ran in a
slow phase. The CPU added per call is against the same neighbouring raw rounds.

Targets (``TARGETS``, printed beside each ratio): govrpc at least 0.95 of raw grpcio's calls/s
with 1 and 8 client threads (issue 8); the stage rows below at least 0.90.
The ``govrpc+breaker`` row runs the same calls through a reference with circuit
breakers on (consecutive failures, error ratio and slow calls over a window: the
dearest closed-breaker path; breakers are consumer-side only); it must also stay at
least 0.90 of raw grpcio at 1 and 8 client threads.

Transport rows (references, no target): govrpc sends a blocking unary call straight to grpc's
core (``govrpc.rpc.unary``: the same batch on the same kind of call, without grpcio's Python
bookkeeping around it), which costs the calling thread about 40 µs less than grpcio's own
``multicallable(request)``. "raw grpcio (core call)" is raw grpcio's call sent that way (the
floor of any client on grpc's core); "govrpc (grpcio's call)" is govrpc on grpcio's own
multicallable (``GOVRPC_GRPC_DIRECT=0``): what govrpc's stages and strategies cost on top of
the call every grpcio user makes.

Tracing rows: "govrpc" always propagates W3C trace context (the built-in trace
filter, no SDK); "govrpc trace=off" is the same reference with the consumer's
trace stage switched off (what propagation costs the consumer); "raw+traceparent"
is raw grpcio sending a fresh ``traceparent`` entry on every call, as govrpc does:
what that one metadata entry costs gRPC itself on both sides, the floor under
"govrpc" (its ratio is the most any propagating client can reach); "govrpc+otel sdk"
calls a second provider process that records every span, and records every client
span itself, both through the SDK's BatchSpanProcessor (to an exporter that drops
them). Targets: propagation >= 0.90, SDK >= 0.85 of raw grpcio, one client thread.
The SDK's own cost for the two spans of a call (``start_span(...).end()`` through the
same processor) is the floor of that row: ``python benchmarks/consumer_cost.py
--floor`` prints it, ``--sdk`` and ``--sdk --side provider`` what govrpc spends on
each side with it. "raw+otel instrumentation" is the reference for that row: raw grpcio
with OpenTelemetry's own grpc instrumentation (``opentelemetry-instrumentation-grpc``'s
client and server interceptors) on the same SDK set-up, both sides.

"every stage": trace propagation, token authentication, Prometheus metrics, a circuit
breaker and rate/concurrency limits on both sides at once, none refusing (target >= 0.90).

Flow-control row: "govrpc+flow" calls a service with a rate limit and a concurrency
limit on the provider (``tps``, ``concurrency``) and a rate limit and ``actives`` on
the consumer, all set so they never refuse. Target: >= 0.90 of raw grpcio, one thread.

Token row: "govrpc token" calls a provider that requires a token (``Server(token=...)``,
``Client(token=...)``): the consumer's static metadata and the provider's token filter.

"govrpc metrics": Prometheus metrics on both sides (``metrics = true`` on the consumer,
``Server(metrics=True)`` on a second govrpc server of the provider process): call,
attempt and server histograms, counters and in-flight gauges. Target >= 0.90.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Iterator

RAW_PATH = "/bench.Raw/echo"
BENCH_TOKEN = "bench-token-0123456789"


def sdk_provider() -> Any:
    """An OpenTelemetry SDK provider recording every span into a batch processor that drops them."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    return provider


def serve(registry: str, sdk: bool = False) -> None:
    """The provider process: raw grpc server + govrpc server; prints both ports."""
    from concurrent import futures

    import grpc

    import govrpc

    if sdk:
        from opentelemetry import trace

        trace.set_tracer_provider(sdk_provider())

    def echo(request: bytes, context: Any) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler("bench.Raw", {"echo": grpc.unary_unary_rpc_method_handler(echo)})
    # with the SDK: the raw server instrumented by OpenTelemetry's own grpc instrumentation
    interceptors = []
    if sdk:
        from opentelemetry.instrumentation.grpc import server_interceptor

        interceptors.append(server_interceptor())
    raw = grpc.server(futures.ThreadPoolExecutor(max_workers=16), handlers=[handler], interceptors=interceptors)
    raw_port = raw.add_insecure_port("127.0.0.1:0")
    raw.start()

    @govrpc.service("bench.Echo", group="sdk" if sdk else "")
    class Echo:
        def echo(self, data: bytes) -> bytes:
            return data

    # each variant's service on a server of its own, as raw grpcio's is: one server hosting
    # several groups of one service picks the group by metadata on every call
    server = govrpc.Server(registry, max_workers=16).add(Echo()).start()
    others = []
    if not sdk:  # flow control on, limits that never refuse: what a check costs on the provider
        @govrpc.service("bench.Echo", group="flow")
        class FlowEcho:
            def echo(self, data: bytes) -> bytes:
                return data

        others.append(govrpc.Server(registry, max_workers=16).add(FlowEcho(), tps=1_000_000, concurrency=64))

        @govrpc.service("bench.Echo", group="untraced")
        class UntracedEcho:
            def echo(self, data: bytes) -> bytes:
                return data

        others.append(govrpc.Server(registry, max_workers=16).add(UntracedEcho(), trace=False))  # the direct path
    for other in others:
        other.start()

    @govrpc.service("bench.Echo", group="token-sdk" if sdk else "token")
    class TokenEcho(Echo):
        pass

    # the token stage: a provider that requires a token (token authentication row)
    tokened = govrpc.Server(registry, max_workers=16, token=BENCH_TOKEN).add(TokenEcho()).start()

    metered = None
    if not sdk:  # the "govrpc metrics" row: Prometheus metrics on the provider side too
        @govrpc.service("bench.Echo", group="metrics")
        class MeteredEcho(Echo):
            pass

        metered = govrpc.Server(registry, max_workers=16, metrics=True).add(MeteredEcho()).start()

        # the "every stage" row: trace, token, metrics, rate and concurrency limits on this provider
        @govrpc.service("bench.Echo", group="all")
        class AllEcho(Echo):
            pass

        everything = govrpc.Server(registry, max_workers=16, metrics=True, token=BENCH_TOKEN)
        everything.add(AllEcho(), tps=1_000_000, concurrency=64).start()
    print(raw_port, server.port, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    tokened.stop(grace=0)
    server.stop(grace=0)
    for other in others:
        other.stop(grace=0)
    if metered is not None:
        metered.stop(grace=0)
        everything.stop(grace=0)
    raw.stop(0)


# the targets the issues set, and at which client thread counts
TARGETS: dict[str, tuple[float, tuple[int, ...]]] = {
    "govrpc": (0.95, (1, 8)), "govrpc trace=off": (0.90, (1,)), "govrpc+otel sdk": (0.85, (1,)),
    "govrpc+breaker": (0.90, (1, 8)), "govrpc+flow": (0.90, (1,)), "stub on client.channel": (0.90, (1, 8)),
    "govrpc metrics": (0.90, (1,)), "every stage": (0.90, (1,)),
}


SDK_ROWS = ("govrpc+otel sdk", "raw+otel instrumentation")  # served by the provider process with the SDK


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used (Linux: /proc; 0.0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_round(call: Callable[[], Any], threads: int, seconds: float) -> tuple[int, list[float], float]:
    """Call for ``seconds`` from ``threads`` threads; returns (calls, latencies, client CPU seconds)."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    stop_at = time.perf_counter() + seconds
    errors: list[BaseException] = []

    def work(out: list[float]) -> None:
        perf = time.perf_counter
        try:
            while True:
                t0 = perf()
                if t0 >= stop_at:
                    return
                call()
                out.append(perf() - t0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    cpu0 = time.process_time()
    workers = [threading.Thread(target=work, args=(latencies[i],)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    cpu = time.process_time() - cpu0
    if errors:
        raise errors[0]
    flat = [x for part in latencies for x in part]
    return len(flat), flat, cpu


def until_listed(call: Callable[[], Any], deadline: float) -> None:
    """Call until the provider is listed (NoProviderError until then), at most until ``deadline``."""
    import govrpc

    while time.monotonic() < deadline:
        try:
            call()
            return
        except govrpc.NoProviderError:
            time.sleep(0.05)


async def aio_round(call: Callable[[], Any], tasks: int, seconds: float) -> tuple[int, list[float], float]:
    """Await ``call()`` for ``seconds`` from ``tasks`` concurrent tasks on this loop."""
    import asyncio

    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def work() -> None:
        perf = time.perf_counter
        while True:
            t0 = perf()
            if t0 >= stop_at:
                return
            await call()
            latencies.append(perf() - t0)

    cpu0 = time.process_time()
    await asyncio.gather(*(work() for _ in range(tasks)))
    return len(latencies), latencies, time.process_time() - cpu0


def aio_rows(registry: str, raw_port: int, payload: bytes, rounds: int, seconds: float, concurrency: str,
             provider_pid: int) -> None:
    """AsyncClient against raw grpc.aio on one event loop, in paired rounds as above."""
    import asyncio

    import grpc.aio

    import govrpc

    async def measure() -> None:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{raw_port}")
        raw_call = channel.unary_unary(RAW_PATH, _registered_method=True)
        client = govrpc.AsyncClient(registry, application="bench-aio", timeout=5.0)
        echo = client.proxy("bench.Echo").echo
        assert await raw_call(payload, timeout=5.0) == payload and await echo(payload) == payload
        variants = {"raw grpc.aio": lambda: raw_call(payload, timeout=5.0), "AsyncClient": lambda: echo(payload)}
        for call in variants.values():
            await aio_round(call, 1, 0.3)
        for tasks in (int(t) for t in concurrency.split(",")):
            rows = Rows(list(variants), "raw grpc.aio", seconds)
            for pair in pairs(list(variants), "raw grpc.aio", rounds):
                measured = {}
                for name in pair:
                    server_cpu = process_cpu(provider_pid)
                    calls, lat, cpu = await aio_round(variants[name], tasks, seconds)
                    measured[name] = (calls, lat, cpu, process_cpu(provider_pid) - server_cpu)
                rows.add(measured)
            print(f"\nasyncio, {tasks} concurrent task(s)")
            rows.report(tasks, {"AsyncClient": (0.90, (tasks,))}, width=12)
        await client.close()
        await channel.close()

    asyncio.run(measure())


def pairs(names: list[str], reference: str, rounds: int) -> Iterator[tuple[str, str]]:
    """The schedule: every round measures each variant right beside a round of ``reference``,
    the pair's order alternating (ABBA) and the variants' order flipped each round, so the
    machine's drift, slow against one pair, favours neither side of a ratio."""
    others = [n for n in names if n != reference]
    for round_ in range(rounds):
        for i, name in enumerate(others if round_ % 2 == 0 else others[::-1]):
            yield (reference, name) if (round_ + i) % 2 == 0 else (name, reference)


class Rows:
    """What the rounds measured, per variant; each ratio is the median of the per-pair ratios
    (variant calls/s over its neighbouring reference round's), the CPU added per call is
    against those same neighbouring reference rounds."""

    def __init__(self, names: list[str], reference: str, seconds: float) -> None:
        self.reference, self.seconds = reference, seconds
        self.rows: dict[str, dict[str, Any]] = {
            n: {"calls": 0, "lat": [], "cpu": 0.0, "server": 0.0, "rates": [], "ratios": [],
                "ref": [0, 0.0, 0.0]} for n in names}

    def add(self, measured: dict[str, tuple[int, list[float], float, float]]) -> None:
        """One pair's rounds: ``{name: (calls, latencies, client CPU s, provider CPU s)}``."""
        for name, (calls, lat, cpu, server) in measured.items():
            r = self.rows[name]
            r["calls"] += calls
            r["lat"].extend(lat)
            r["cpu"] += cpu
            r["server"] += server
            r["rates"].append(calls / self.seconds)
        variant = next(n for n in measured if n != self.reference)
        ref_calls, _, ref_cpu, ref_server = measured[self.reference]
        r = self.rows[variant]
        r["ratios"].append(measured[variant][0] / max(ref_calls, 1))
        r["ref"][0] += ref_calls
        r["ref"][1] += ref_cpu
        r["ref"][2] += ref_server

    def report(self, threads: int, targets: dict[str, tuple[float, tuple[int, ...]]], width: int = 15) -> None:
        print(f"  {'variant':<{width}} {'calls/s':>9} {'p50 µs':>8} {'p99 µs':>8} {'client CPU µs/call':>19} "
              f"{'server CPU µs/call':>19}")
        for name, r in self.rows.items():
            print(f"  {name:<{width}} {statistics.median(r['rates']):>9,.0f} {percentile(r['lat'], 50) * 1e6:>8.0f} "
                  f"{percentile(r['lat'], 99) * 1e6:>8.0f} {r['cpu'] / r['calls'] * 1e6:>19.0f} "
                  f"{r['server'] / r['calls'] * 1e6:>19.0f}")
        for name, r in self.rows.items():
            if name == self.reference:
                continue
            ratios = sorted(r["ratios"])
            ref_calls, ref_cpu, ref_server = r["ref"]
            extra_cpu = (r["cpu"] / r["calls"] - ref_cpu / ref_calls) * 1e6
            extra_server = (r["server"] / r["calls"] - ref_server / ref_calls) * 1e6
            target, at = targets.get(name, (None, ()))
            spread = f"[{percentile(ratios, 25):.3f}-{percentile(ratios, 75):.3f}]"
            print(f"  ratio {name}/{self.reference}: {statistics.median(ratios):.3f} {spread}   "
                  f"(CPU added per call: client {extra_cpu:+.0f} µs, server {extra_server:+.0f} µs)"
                  + (f"   target >= {target:.2f}" if threads in at else ""))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=0.4)
    parser.add_argument("--payload", type=int, default=16)
    parser.add_argument("--threads", default="1,8")
    parser.add_argument("--rows", default="",
                        help="only these rows (comma separated names, e.g. 'govrpc,govrpc+breaker'; raw grpcio is "
                             "always measured): fewer rows, more rounds of each in the same time")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--serve-sdk", help=argparse.SUPPRESS)
    parser.add_argument("--no-sdk", action="store_true", help="leave out the OpenTelemetry SDK row")
    parser.add_argument("--tasks", default="1,64", help="asyncio rows: concurrent tasks ('' leaves them out)")
    parser.add_argument("--pin", action="store_true",
                        help="this process on CPU 0, the providers on CPU 1 (less scheduler noise; 2+ CPUs)")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    if args.serve_sdk:
        serve(args.serve_sdk, sdk=True)
        return 0

    import grpc

    import govrpc
    from govrpc.rpc import unary

    workdir = tempfile.mkdtemp(prefix="govrpc-bench-")
    registry = f"file://{workdir}/registry"
    provider = subprocess.Popen([sys.executable, __file__, "--serve", registry],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    traced = None if args.no_sdk else subprocess.Popen([sys.executable, __file__, "--serve-sdk", registry],
                                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if args.pin and len(os.sched_getaffinity(0)) >= 2:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[0]})
        for process in (provider, traced):
            if process is not None:
                os.sched_setaffinity(process.pid, {cpus[1]})
    try:
        if traced is not None:
            assert traced.stdout is not None
            instrumented_port = int(traced.stdout.readline().split()[0])
        assert provider.stdout is not None
        raw_port, _ = (int(x) for x in provider.stdout.readline().split())
        payload = b"x" * args.payload

        channel = grpc.insecure_channel(f"127.0.0.1:{raw_port}")
        raw_call = channel.unary_unary(RAW_PATH, _registered_method=True)

        def raw() -> Any:
            return raw_call(payload, timeout=5.0)

        client = govrpc.Client(registry, application="bench", timeout=5.0)
        proxy = client.proxy("bench.Echo")
        deadline = time.monotonic() + 10
        until_listed(lambda: proxy.echo(payload), deadline)
        gov = proxy.echo
        assert gov(payload) == payload and raw() == payload
        untraced = client.proxy("bench.Echo", trace=False).echo
        # consumer side too: its own rate and calls in flight, limits that never refuse
        flowed = client.proxy("bench.Echo", group="flow", tps=1_000_000, actives=64).echo
        bare = client.proxy("bench.Echo", group="untraced", trace=False).echo
        until_listed(lambda: flowed(payload), deadline)
        until_listed(lambda: bare(payload), deadline)
        breaking = client.proxy("bench.Echo", breaker={"failures": 5, "ratio": 0.5, "slow": 1.0}).echo
        assert breaking(payload) == payload
        token_client = govrpc.Client(registry, application="bench", timeout=5.0, token=BENCH_TOKEN)
        tokened = token_client.proxy("bench.Echo", group="token").echo
        until_listed(lambda: tokened(payload), deadline)
        randbits = random.getrandbits

        def raw_traced() -> Any:  # what the one header propagation sends costs gRPC itself
            header = "00-%032x-%016x-01" % (randbits(128), randbits(64))
            return raw_call(payload, timeout=5.0, metadata=(("traceparent", header),))

        # the floor of the consumer's transport: the same blocking call straight to grpc's core, as govrpc
        # sends it (govrpc.rpc.unary), and govrpc on grpcio's own multicallable instead
        raw_core = unary.blocking_call(raw_call)
        assert raw_core is not None and raw_core(payload, 5.0, None) == payload
        unary.ENABLED = False  # read when a provider's method is first called: this client keeps grpcio's call
        try:
            public_client = govrpc.Client(registry, application="bench", timeout=5.0)
            public = public_client.proxy("bench.Echo").echo
            until_listed(lambda: public(payload), deadline)
        finally:
            unary.ENABLED = True

        variants = {"raw grpcio": raw, "raw+traceparent": raw_traced,
                    "raw grpcio (core call)": lambda: raw_core(payload, 5.0, None),
                    "govrpc (grpcio's call)": lambda: public(payload),
                    "govrpc": lambda: gov(payload), "govrpc trace=off": lambda: untraced(payload),
                    "govrpc no stage": lambda: bare(payload),
                    "govrpc+breaker": lambda: breaking(payload), "govrpc+flow": lambda: flowed(payload),
                    "govrpc token": lambda: tokened(payload)}
        metered = client.proxy("bench.Echo", group="metrics", metrics=True).echo  # Prometheus on both sides
        until_listed(lambda: metered(payload), deadline)
        variants["govrpc metrics"] = lambda: metered(payload)
        # every governance stage on both sides, none refusing: trace, token, metrics, breaker, limits
        every = token_client.proxy("bench.Echo", group="all", metrics=True, tps=1_000_000, actives=64,
                                   breaker={"failures": 5, "ratio": 0.5, "slow": 1.0}).echo
        until_listed(lambda: every(payload), deadline)
        variants["every stage"] = lambda: every(payload)
        # a stub's multicallable (what generated code asks a channel for) on client.channel, against
        # "raw grpcio", the same multicallable on a plain channel
        stub_call = client.channel("bench.Raw", url=f"grpc://127.0.0.1:{raw_port}").unary_unary(RAW_PATH)
        assert stub_call(payload, timeout=5.0) == payload
        variants["stub on client.channel"] = lambda: stub_call(payload, timeout=5.0)
        sdk_rounds: Any = None
        if traced is not None:
            from opentelemetry import trace as otel_trace

            client_sdk = sdk_provider()
            traced_echo = client.proxy("bench.Echo", group="sdk").echo
            until_listed(lambda: traced_echo(payload), deadline)
            variants["govrpc+otel sdk"] = lambda: traced_echo(payload)
            # the reference: raw grpcio with OpenTelemetry's own grpc instrumentation on both sides
            from opentelemetry.instrumentation.grpc import client_interceptor
            from opentelemetry.instrumentation.grpc.grpcext import intercept_channel

            plain = grpc.insecure_channel(f"127.0.0.1:{instrumented_port}")
            instrumented = intercept_channel(plain, client_interceptor(tracer_provider=client_sdk))
            otel_call = instrumented.unary_unary(RAW_PATH, _registered_method=True)
            variants["raw+otel instrumentation"] = lambda: otel_call(payload, timeout=5.0)

            def sdk_rounds(on: bool) -> None:  # the SDK records in this process only during its rounds
                otel_trace._TRACER_PROVIDER = client_sdk if on else None  # type: ignore[attr-defined]
        if args.rows:
            wanted = {"raw grpcio", *(n.strip() for n in args.rows.split(","))}
            unknown = wanted - set(variants)
            if unknown:
                parser.error(f"no row named {', '.join(sorted(unknown))}; rows: {', '.join(variants)}")
            variants = {n: c for n, c in variants.items() if n in wanted}
        print(f"payload {args.payload} B, {args.rounds} rounds, each variant {args.seconds} s beside raw grpcio {args.seconds} s, "
              f"provider pid {provider.pid}, python {sys.version.split()[0]}, grpcio {grpc.__version__}")
        for name, variant_call in variants.items():  # warm up every variant
            if sdk_rounds is not None:
                sdk_rounds(name in SDK_ROWS)
            run_round(variant_call, 1, 0.3)
        for threads in (int(t) for t in args.threads.split(",") if t):
            def measure(name: str) -> tuple[int, list[float], float, float]:
                if sdk_rounds is not None:
                    sdk_rounds(name in SDK_ROWS)
                served_by = traced.pid if name in SDK_ROWS and traced is not None else provider.pid
                server_cpu = process_cpu(served_by)
                calls, lat, cpu = run_round(variants[name], threads, args.seconds)
                return calls, lat, cpu, process_cpu(served_by) - server_cpu

            rows = Rows(list(variants), "raw grpcio", args.seconds)
            for pair in pairs(list(variants), "raw grpcio", args.rounds):
                rows.add({name: measure(name) for name in pair})
            print(f"\n{threads} client thread(s)")
            rows.report(threads, TARGETS)
        client.close()
        public_client.close()
        token_client.close()
        channel.close()
        if traced is not None:
            plain.close()
        if args.tasks:
            aio_rows(registry, raw_port, payload, args.rounds, args.seconds, args.tasks, provider.pid)
    finally:
        if traced is not None and traced.stdin:
            traced.stdin.close()
            try:
                traced.wait(timeout=10)
            except subprocess.TimeoutExpired:
                traced.kill()
                traced.wait()
        if provider.stdin:
            provider.stdin.close()
        try:
            provider.wait(timeout=10)
        except subprocess.TimeoutExpired:
            provider.kill()
            provider.wait()
        if provider.stdout:
            provider.stdout.close()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
