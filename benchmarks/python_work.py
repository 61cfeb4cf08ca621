"""The Python one call runs on each side, counted: frames and bytecodes, raw grpcio against govrpc.

Timings on this shared machine drift by tens of µs between identical runs
(``benchmarks/overhead.py``); counts do not. This calls a 16-byte echo over real gRPC
on 127.0.0.1 (client and server in this process, each call awaited before the next)
with ``sys.settrace`` counting every frame entered and every bytecode executed, on the
calling thread (consumer) and on the server's threads (provider: grpc's poller and
the worker that runs the method), grpc's own Python included on both sides, and
prints the mean per call for each variant:

    python benchmarks/python_work.py                   # raw grpcio, govrpc default, trace off, no stage
    python benchmarks/python_work.py --calls 500 -v    # and per function, for the last variant
    python benchmarks/python_work.py --sdk govrpc:     # an OpenTelemetry SDK records every span (batch)

The asyncio rows ("raw grpc.aio", "AsyncClient") await each call on an event loop run by the
consumer thread (the loop's own Python included), against the same kind of servers.

A variant is ``name:consumer options;provider options`` (``key=value`` each, comma
separated), e.g. ``python benchmarks/python_work.py "flow:tps=1000000,actives=64;tps=1000000,concurrency=64"``.
Bytecodes are a proxy for CPU, not a measure of it: the C underneath (grpc's core, msgpack)
is not counted, and a bytecode costs more with cold caches than in a hot loop.
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
from concurrent import futures
from typing import Any, Callable

VARIANTS = ["raw grpcio:", "govrpc:", "govrpc trace=off:trace=false;", "govrpc no stage:trace=false;trace=false",
            "govrpc+breaker:breaker=on;", "govrpc+flow:tps=1000000,actives=64;tps=1000000,concurrency=64",
            "govrpc metrics:metrics=true;metrics=true", "raw grpc.aio:", "AsyncClient:"]


class Counter:
    """Frames and bytecodes per side while ``on``; a side is the thread that ran them."""

    def __init__(self, consumer: threading.Thread) -> None:
        self.on = False
        self.consumer = consumer
        self.frames: collections.Counter[str] = collections.Counter()
        self.codes: collections.Counter[str] = collections.Counter()
        self.by_function: collections.Counter[tuple[str, str]] = collections.Counter()

    def side(self) -> str:
        return "consumer" if threading.current_thread() is self.consumer else "provider"

    def trace(self, frame: Any, event: str, arg: Any) -> Any:
        if not self.on:
            return None
        side = self.side()
        self.frames[side] += 1
        frame.f_trace_opcodes = True
        where = (side, f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_code.co_name}")
        codes, by_function = self.codes, self.by_function

        def local(frame: Any, event: str, arg: Any) -> Any:
            if event == "opcode" and self.on:
                codes[side] += 1
                by_function[where] += 1
            return local

        return local


def options(text: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key == "breaker":
            found[key] = {"failures": 5, "ratio": 0.5, "slow": 1.0}
        elif value in ("true", "false"):
            found[key] = value == "true"
        else:
            found[key] = int(value) if value.isdigit() else value
    return found


def _raw_server(stack: list[Callable[[], None]]) -> int:
    """A raw grpcio server echoing bytes through a generic handler; its port."""
    import grpc

    handler = grpc.method_handlers_generic_handler(
        "bench.Raw", {"echo": grpc.unary_unary_rpc_method_handler(lambda request, context: request)})
    raw = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[handler])
    port = raw.add_insecure_port("127.0.0.1:0")
    raw.start()
    stack.append(lambda: raw.stop(0))
    return port


def variant_call(spec: str, registry: str, stack: list[Callable[[], None]]) -> Callable[[], Any]:
    import grpc

    import govrpc

    name, _, sides = spec.partition(":")
    payload = b"x" * 16
    if name == "raw grpcio":
        channel = grpc.insecure_channel(f"127.0.0.1:{_raw_server(stack)}")
        call = channel.unary_unary("/bench.Raw/echo", _registered_method=True)
        stack.append(channel.close)
        return lambda: call(payload, timeout=5.0)
    if name in ("raw grpc.aio", "AsyncClient"):
        return _aio_call(name, registry, stack, payload)
    consumer, _, provider = sides.partition(";")
    group = name.replace(" ", "-").replace("+", "-").replace("=", "-")

    @govrpc.service("bench.Echo", group=group)
    class Echo:
        def echo(self, data: bytes) -> bytes:
            return data

    provider_options = options(provider)
    server_options = {k: provider_options.pop(k) for k in ("metrics",) if k in provider_options}
    server = govrpc.Server(registry, max_workers=4, **server_options).add(Echo(), **provider_options).start()
    client = govrpc.Client(registry, application="bench", local_first=False, timeout=5.0)
    stack += [lambda: server.stop(grace=0), client.close]
    echo = client.proxy("bench.Echo", group=group, **options(consumer)).echo
    return lambda: echo(payload)


def _aio_call(name: str, registry: str, stack: list[Callable[[], None]], payload: bytes) -> Callable[[], Any]:
    """One awaited call per ``call()``, on a loop kept for the variant (``run_until_complete``)."""
    import asyncio

    import govrpc

    loop = asyncio.new_event_loop()
    stack.append(loop.close)
    if name == "raw grpc.aio":
        channel = loop.run_until_complete(_aio_channel(f"127.0.0.1:{_raw_server(stack)}"))
        call = channel.unary_unary("/bench.Raw/echo", _registered_method=True)
        stack.append(lambda: loop.run_until_complete(channel.close()))
        return lambda: loop.run_until_complete(call(payload, timeout=5.0))

    @govrpc.service("bench.Echo", group="aio")
    class Echo:
        def echo(self, data: bytes) -> bytes:
            return data

    server = govrpc.Server(registry, max_workers=4).add(Echo()).start()
    client = loop.run_until_complete(_aio_client(registry))
    stack += [lambda: server.stop(grace=0), lambda: loop.run_until_complete(client.close())]
    echo = client.proxy("bench.Echo", group="aio").echo
    return lambda: loop.run_until_complete(echo(payload))


async def _aio_channel(target: str) -> Any:
    import grpc.aio

    return grpc.aio.insecure_channel(target)


async def _aio_client(registry: str) -> Any:
    import govrpc

    return govrpc.AsyncClient(registry, application="bench", local_first=False, timeout=5.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="*", default=VARIANTS)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("-v", "--verbose", action="store_true", help="per function, for the last variant")
    parser.add_argument("--sdk", action="store_true",
                        help="an SDK TracerProvider for both sides (BatchSpanProcessor, spans dropped)")
    args = parser.parse_args()
    if args.sdk:
        from opentelemetry import trace

        from overhead import sdk_provider

        trace.set_tracer_provider(sdk_provider())
    registry = "memory://python-work"
    stack: list[Callable[[], None]] = []
    counter = Counter(threading.current_thread())
    threading.settrace(counter.trace)  # the server's threads, started below
    print(f"{'variant':<18} {'consumer frames':>15} {'bytecodes':>10} {'provider frames':>16} {'bytecodes':>10}")
    try:
        for spec in args.variants:
            call = variant_call(spec, registry, stack)
            for _ in range(100):  # warm: channels up, methods registered, caches full
                call()
            counter.frames.clear()
            counter.codes.clear()
            counter.by_function.clear()
            sys.settrace(counter.trace)
            counter.on = True
            for _ in range(args.calls):
                call()
            counter.on = False
            sys.settrace(None)
            n = args.calls
            print(f"{spec.partition(':')[0]:<18} {counter.frames['consumer'] / n:>15.1f} "
                  f"{counter.codes['consumer'] / n:>10.0f} {counter.frames['provider'] / n:>16.1f} "
                  f"{counter.codes['provider'] / n:>10.0f}")
        if args.verbose:
            for (side, where), codes in sorted(counter.by_function.items(), key=lambda kv: (kv[0][0], -kv[1])):
                if codes >= args.calls:
                    print(f"  {side:<9} {codes / args.calls:>7.1f} {where}")
    finally:
        threading.settrace(None)  # type: ignore[arg-type]
        for stop in reversed(stack):
            stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
