"""What govrpc's tracing-side and consumer-side Python costs per call, without the network.

The provider is a no-op transport invoker, so the figure is govrpc's own Python work
per call (the budget is about 25 µs for every consumer stage together); gRPC's own
cost is measured against raw grpcio by ``benchmarks/overhead.py``. Options are the
reference's, as ``key=value``:

    python benchmarks/consumer_cost.py                 # defaults (trace propagation on)
    python benchmarks/consumer_cost.py trace=false     # the trace stage off
    python benchmarks/consumer_cost.py loadbalance=leastactive
    python benchmarks/consumer_cost.py --sdk           # an SDK records every span (batch, dropped)
    python benchmarks/consumer_cost.py --sdk --side provider   # the provider's trace filter alone
    python benchmarks/consumer_cost.py --floor [--side provider]   # the SDK's own cost for that span
    python benchmarks/consumer_cost.py --sdk --profile # where one call's time goes (cProfile)

Prints CPU µs per call (this process's CPU time, the span processor's thread included; best of
7 rounds: the machine is shared) and the number of Python frames one call runs.
With ``--sdk`` the BatchSpanProcessor's queue is large enough that no span is dropped
during a round (a dropped span is cheaper than an exported one).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
import timeit
from typing import Any, Callable


def sdk_provider() -> Any:
    """An SDK provider recording every span into a BatchSpanProcessor whose exporter drops them."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop(), max_queue_size=1 << 20))
    return provider


def consumer_call(options: dict[str, str]) -> tuple[Callable[[], Any], Callable[[], None]]:
    """A proxy's call over a no-op transport, and how to close its client."""
    import govrpc
    from govrpc.invocation import Invocation, Invoker

    class NullInvoker(Invoker):
        def __init__(self, url: Any) -> None:
            self.url = url

        def invoke(self, invocation: Invocation) -> Any:
            return b"x"

    client = govrpc.Client(local_first=False)
    client._invoker_for = NullInvoker  # type: ignore[method-assign]
    call = client.proxy("bench.Echo", url="grpc://127.0.0.1:1", **options).echo
    return lambda: call(b"x"), client.close


def provider_call() -> Callable[[], Any]:
    """The provider's trace filter around a no-op invoker, fed what a traced consumer sends."""
    from govrpc.invocation import Invocation, Invoker, ProviderContext
    from govrpc.url import ServiceKey
    from govrpc.trace.filter import TraceFilter
    from govrpc.url import URL

    url = URL.parse("grpc://127.0.0.1:1/bench.Echo?application=bench")

    class NullInvoker(Invoker):
        def __init__(self) -> None:
            self.url = url

        def invoke(self, invocation: Invocation) -> Any:
            return b"x"

    bound = TraceFilter().bind(url)
    assert bound is not None
    invoker = NullInvoker()
    key = ServiceKey("bench.Echo")
    context = ProviderContext(peer="ipv4:127.0.0.1:50123", application="web")
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "application": "web"}

    def call() -> Any:
        invocation = Invocation(key, "echo", (b"x",), attachments=dict(headers), context=context)
        return bound.invoke(invoker, invocation)

    return call


def floor_call(sdk: Any, side: str) -> Callable[[], Any]:
    """What the SDK itself costs for the span govrpc makes on ``side``, with the same attributes
    (those known at start passed to ``start_span``, the rest in one ``set_attributes``)."""
    from opentelemetry.trace import SpanKind

    tracer = sdk.get_tracer("floor")
    start = {"rpc.system": "grpc", "rpc.service": "bench.Echo", "rpc.method": "echo"}
    if side == "provider":
        kind, end = SpanKind.SERVER, {"rpc.grpc.status_code": 0}
        start.update({"govrpc.caller": "web", "net.peer.ip": "127.0.0.1", "net.peer.port": 50123})
    else:
        kind, end = SpanKind.CLIENT, {"govrpc.attempts": 1, "govrpc.providers.total": 1, "govrpc.providers.routed": 1,
                                      "govrpc.routers": ("mock", "tag"), "govrpc.loadbalance": "RandomLoadBalancer",
                                      "govrpc.provider": "127.0.0.1:1", "net.peer.name": "127.0.0.1",
                                      "net.peer.port": 1, "rpc.grpc.status_code": 0}
        start["govrpc.application"] = ""

    def call() -> None:
        span = tracer.start_span("/bench.Echo/echo", kind=kind, attributes=start)
        span.set_attributes(end)
        span.end()

    return call


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("options", nargs="*", help="reference options as key=value")
    parser.add_argument("--sdk", action="store_true", help="install an SDK TracerProvider (batch processor, spans dropped)")
    parser.add_argument("--side", choices=("consumer", "provider"), default="consumer")
    parser.add_argument("--floor", action="store_true", help="time a bare start_span(...).end() instead")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of 20 000 calls")
    parser.add_argument("-n", type=int, default=50_000, help="calls per round")
    args = parser.parse_args(argv)
    options = dict(arg.split("=", 1) for arg in args.options)
    sdk = None
    if args.sdk or args.floor:
        from opentelemetry import trace

        sdk = sdk_provider()
        trace.set_tracer_provider(sdk)
    close: Callable[[], None] = lambda: None  # noqa: E731
    if args.floor:
        call, label = floor_call(sdk, args.side), f"SDK floor for the {args.side} span: start_span, set_attributes, end"
    elif args.side == "provider":
        call, label = provider_call(), "provider trace filter"
    else:
        call, close = consumer_call(options)
        label = f"consumer, options: {options or 'defaults'}"
    label += ", SDK recording" if sdk is not None else ""
    for _ in range(1000):
        call()
    frames = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal frames
        frames += event == "call"

    sys.setprofile(count)
    call()
    sys.setprofile(None)
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(lambda: [call() for _ in range(20_000)])
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    n = args.n
    best = min(timeit.repeat(call, number=n, repeat=7, timer=time.process_time)) / n * 1e6
    print(f"{best:.2f} µs per call, {frames} Python frames   {label}")
    close()
    if sdk is not None:
        sdk.shutdown()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main(sys.argv[1:]))
