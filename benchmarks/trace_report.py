"""``govrpc trace report`` on a million spans: spans/s, wall time and peak memory.

Generates the span files a small shop writes in a few minutes of traffic, one file per
process, through the real ``JsonLinesSpanExporter`` (fed SDK ``ReadableSpan`` objects
with the ids, kinds, names, attributes and events govrpc's trace stage puts on them,
handed over in the order they end, 512 at a time as the SDK's batch processor does),
then runs the real command on them in a fresh process, once per output:

    govrpc trace report DIR/*.jsonl            (text)
    govrpc trace report DIR/*.jsonl --json
    govrpc trace report DIR/*.jsonl --window 20000   (memory is the window's, not the input's)

The workload: ``web`` and ``mobile`` call ``demo.OrderService`` (create: user, inventory,
payment -> risk; get: user) and ``demo.UserService`` over four providers each; about 1%
of payments fail with a business error (an exception event with a stack trace on both
sides), 2% of inventory reservations meet a dead provider first and are retried (a
``govrpc.retry`` event and a child attempt span), 0.3% of user lookups time out at 1 s,
and 1% of risk checks are slow (200-800 ms). Printed for each report: wall time,
spans/s, CPU time (user + system: the figure to compare on a shared machine) and peak RSS
of the report's own process (``os.wait4``'s rusage); and the floor, the CPU time to read
every line and ``json.loads`` it, nothing else.

    python benchmarks/trace_report.py [--spans 1000000] [--dir DIR] [--reuse] [--keep]

Bounded: ``--spans`` spans are generated (about 12 s and 130 MB per 100,000 here), each
report is killed after ``--timeout`` seconds (default 600), the files are removed unless
``--keep`` or ``--dir`` is given.
"""

from __future__ import annotations

import argparse
import glob
import heapq
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from govrpc.trace import JsonLinesSpanExporter

T0 = 1_760_000_000 * 10**9
MS = 10**6
US = 10**3
TRACES_PER_S = 800
SCOPE = InstrumentationScope("govrpc")
APPS = ("web", "mobile", "order", "user", "inventory", "payment", "risk")
SERVICE_APP = {"demo.OrderService": "order", "demo.UserService": "user", "demo.InventoryService": "inventory",
               "demo.PaymentService": "payment", "demo.RiskService": "risk"}
PROVIDERS = {service: [f"10.0.{n}.{i + 11}:50051" for i in range(4)] for n, service in enumerate(SERVICE_APP)}
STACK = "Traceback (most recent call last):\n" + "".join(
    f'  File "/srv/payment/app/charge.py", line {40 + i}, in step_{i}\n    result = gateway.call(request)\n'
    for i in range(8)) + "PaymentDeclined: card declined by issuer\n"
Inner = Callable[[int, int], int]  # (parent span id, start ns) -> end ns of the provider's own calls


class Workload:
    """Spans of the shop's processes, each exported to its process's file in the order spans end."""

    def __init__(self, directory: str, seed: int) -> None:
        self.random = random.Random(seed)
        self.resources = {app: Resource.create({"service.name": app, "service.instance.id": f"{app}-1"})
                          for app in APPS}
        self.exporters = {app: JsonLinesSpanExporter(os.path.join(directory, f"{app}.jsonl"), max_bytes=0)
                          for app in APPS}
        self.heaps: dict[str, list[tuple[int, int, ReadableSpan]]] = {app: [] for app in APPS}
        self.exported = dict.fromkeys(APPS, 0)
        self.spans = 0

    def id(self, bits: int) -> int:
        return self.random.getrandbits(bits) or 1

    def _emit(self, app: str, trace: int, span_id: int, parent: int, kind: SpanKind, service: str, method: str,
              start: int, end: int, attributes: dict[str, Any], error: str, events: tuple[Event, ...]) -> None:
        self.spans += 1
        context = SpanContext(trace, span_id, False, TraceFlags(1))
        parent_context = SpanContext(trace, parent, kind is SpanKind.SERVER, TraceFlags(1)) if parent else None
        status = Status(StatusCode.ERROR, error) if error else Status(StatusCode.UNSET)
        span = ReadableSpan(f"/{service}/{method}", context, parent_context, self.resources[app],
                            {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method, **attributes},
                            events, kind=kind, status=status, start_time=start, end_time=end,
                            instrumentation_scope=SCOPE)
        heapq.heappush(self.heaps[app], (end, self.spans, span))

    def call(self, caller: str, trace: int, parent: int, service: str, method: str, start: int, work_ms: float,
             inner: Inner | None = None, fail: bool = False, slow: bool = False, retry: bool = False,
             timeout: bool = False) -> int:
        """One call ``caller -> service/method`` recorded as govrpc records it; returns its end (ns)."""
        r = self.random
        providers = PROVIDERS[service]
        provider = r.choice(providers)
        call_id, attempt_id, server_id = self.id(64), self.id(64) if retry else 0, self.id(64)
        events: list[Event] = []
        attempt_start = start
        if retry:  # the first provider is dead: an event on the call, then a child span for attempt 2
            dead, provider = provider, providers[(providers.index(provider) + 1) % len(providers)]
            attempt_start = start + 3 * MS
            events.append(Event("govrpc.retry", {"govrpc.attempt": 2, "govrpc.failed_provider": dead,
                                                 "govrpc.error": "ProviderUnavailableError",
                                                 "govrpc.reason": f"{dead} is unavailable: connection refused"},
                                timestamp=attempt_start))
        server_start = attempt_start + 300 * US
        work = int(r.uniform(200, 800) * MS) if slow else int(r.lognormvariate(0, 0.35) * work_ms * MS)
        cursor = inner(server_id, server_start + 100 * US) if inner is not None else server_start
        server_end = max(cursor, server_start + work) + 100 * US
        end = server_end + 300 * US
        code, error = 0, ""
        if fail:
            code, error = 2, "PaymentDeclined: card declined by issuer"
        if timeout:  # the consumer gives up at 1 s; the provider finishes later
            end = start + 1000 * MS
            server_end = max(server_end, end + 50 * MS)
            code, error = 4, f"TimeoutError: {service}.{method} timed out after 1.0 s"
        if error:
            events.append(Event("exception", {"exception.type": error.split(":")[0], "exception.message": error,
                                              "exception.stacktrace": STACK, "exception.escaped": "False"},
                                timestamp=end))
        host, port = provider.rsplit(":", 1)
        chose = {"govrpc.providers.total": 4, "govrpc.providers.routed": 4, "govrpc.routers": ("condition", "tag"),
                 "govrpc.loadbalance": "roundrobin", "govrpc.provider": provider, "net.peer.name": host,
                 "net.peer.port": int(port)}
        self._emit(caller, trace, call_id, parent, SpanKind.CLIENT, service, method, start, end,
                   {"govrpc.application": caller, "govrpc.attempts": 2 if retry else 1, **chose,
                    "rpc.grpc.status_code": code}, error, tuple(events))
        if retry:
            self._emit(caller, trace, attempt_id, call_id, SpanKind.CLIENT, service, method, attempt_start,
                       end - 100 * US, {"govrpc.application": caller, "govrpc.attempt": 2, **chose,
                                        "govrpc.providers.routed": 3, "rpc.grpc.status_code": code}, error, ())
        server_events = (Event("exception", {"exception.type": "PaymentDeclined", "exception.message": error,
                                             "exception.stacktrace": STACK, "exception.escaped": "False"},
                               timestamp=server_end),) if fail else ()
        self._emit(SERVICE_APP[service], trace, server_id, attempt_id or call_id, SpanKind.SERVER, service, method,
                   server_start, server_end, {"govrpc.caller": caller, "net.peer.ip": "10.0.9.1",
                                              "net.peer.port": 40000 + r.randrange(1000),
                                              "rpc.grpc.status_code": code if fail else 0},
                   error if fail else "", server_events)
        return end

    def flush(self, before: int | None) -> None:
        """Export the spans that ended by ``before`` (every one with None): no later span ends earlier."""
        for app, heap in self.heaps.items():
            batch: list[ReadableSpan] = []
            while heap and (before is None or heap[0][0] <= before):
                batch.append(heapq.heappop(heap)[2])
                if len(batch) == 512 or not heap or (before is not None and heap[0][0] > before):
                    self._export(app, batch)
                    batch = []

    def _export(self, app: str, batch: list[ReadableSpan]) -> None:
        exporter = self.exporters[app]
        exporter.export(batch)
        self.exported[app] += len(batch)
        if self.exported[app] - exporter.written > 20_000:  # let the writer catch up: nothing may be dropped
            exporter.force_flush(60_000)

    def close(self) -> int:
        self.flush(None)
        dropped = 0
        for exporter in self.exporters.values():
            exporter.force_flush(60_000)
            exporter.shutdown()
            dropped += exporter.dropped
        return dropped


def _order_create(w: Workload, caller: str, trace: int, start: int) -> None:
    r = w.random

    def order(parent: int, at: int) -> int:
        at = w.call("order", trace, parent, "demo.UserService", "get", at, 2, timeout=r.random() < 0.003)
        at = w.call("order", trace, parent, "demo.InventoryService", "reserve", at, 4, retry=r.random() < 0.02)

        def payment(parent2: int, at2: int) -> int:
            return w.call("payment", trace, parent2, "demo.RiskService", "check", at2, 6, slow=r.random() < 0.01)

        return w.call("order", trace, parent, "demo.PaymentService", "charge", at, 3, payment,
                      fail=r.random() < 0.01)

    w.call(caller, trace, 0, "demo.OrderService", "create", start, 5, order)


def _order_get(w: Workload, caller: str, trace: int, start: int) -> None:
    def order(parent: int, at: int) -> int:
        return w.call("order", trace, parent, "demo.UserService", "get", at, 2, timeout=w.random.random() < 0.003)

    w.call(caller, trace, 0, "demo.OrderService", "get", start, 3, order)


def generate(directory: str, spans: int, seed: int = 7) -> tuple[int, int]:
    """Write whole traces into ``directory`` until about ``spans`` spans; returns (spans, traces)."""
    w = Workload(directory, seed)
    r = w.random
    traces, start = 0, T0
    while w.spans < spans:
        traces += 1
        start += int(r.expovariate(TRACES_PER_S) * 1e9)
        trace, caller, shape = w.id(128), "web" if r.random() < 0.75 else "mobile", r.random()
        if shape < 0.30:
            _order_create(w, caller, trace, start)
        elif shape < 0.70:
            _order_get(w, caller, trace, start)
        else:
            w.call(caller, trace, 0, "demo.UserService", "login" if shape < 0.8 else "get", start, 3,
                   timeout=r.random() < 0.003)
        w.flush(start)
    dropped = w.close()
    if dropped:
        raise SystemExit(f"the exporter dropped {dropped} span(s): the benchmark's input would be incomplete")
    return w.spans, traces


def run_report(files: list[str], extra: list[str], timeout: float) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds, peak RSS (KiB) and output of ``govrpc trace report FILES EXTRA``,
    run in a fresh process."""
    command = [sys.executable, "-c", "import sys; from govrpc.cli import main; sys.exit(main(sys.argv[1:]))",
               "trace", "report", *files, *extra]
    with tempfile.TemporaryFile("w+") as out:
        began = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = began + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                raise SystemExit(f"govrpc trace report took longer than {timeout} s: stopped")
            time.sleep(0.05)
        wall = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise SystemExit(f"govrpc trace report failed ({proc.returncode}):\n{text[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, text


def json_floor(files: list[str]) -> tuple[float, int]:
    """CPU seconds to read every line of ``files`` and ``json.loads`` it (what any reader must pay)."""
    loads, lines = json.loads, 0
    began = time.process_time()
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                loads(line)
                lines += 1
    return time.process_time() - began, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--dir", help="where the span files go (kept); default a temporary directory")
    parser.add_argument("--reuse", action="store_true", help="use the span files already in --dir")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds each report may take")
    args = parser.parse_args()
    if not 1 <= args.spans <= 5_000_000:
        parser.error("--spans must be between 1 and 5000000")
    directory = args.dir or tempfile.mkdtemp(prefix="govrpc-trace-report-")
    os.makedirs(directory, exist_ok=True)
    try:
        files = sorted(glob.glob(os.path.join(directory, "*.jsonl")))
        if not (args.reuse and files):
            for path in files:
                os.remove(path)
            began = time.perf_counter()
            spans, traces = generate(directory, args.spans)
            files = sorted(glob.glob(os.path.join(directory, "*.jsonl")))
            size = sum(os.path.getsize(p) for p in files)
            print(f"generated {spans:,} spans in {traces:,} traces, {len(files)} files, {size / 2**20:,.0f} MiB "
                  f"in {time.perf_counter() - began:.1f} s ({directory})")
        floor, lines = json_floor(files)
        print(f"floor: read + json.loads of {lines:,} lines: {floor:.1f} s CPU ({lines / floor:,.0f} lines/s)")
        for label, extra in (("text", []), ("json", ["--json"]), ("text, --window 20000", ["--window", "20000"])):
            wall, cpu, rss, out = run_report(files, extra, args.timeout)
            spans = json.loads(out)["spans"] if "--json" in extra else int(out.split(" ", 1)[0])
            print(f"govrpc trace report ({label}): {spans:,} spans in {wall:.1f} s wall ({spans / wall:,.0f} spans/s), "
                  f"{cpu:.1f} s CPU ({spans / cpu:,.0f} spans/s), peak RSS {rss / 1024:,.0f} MiB; "
                  f"the json.loads floor is {100 * floor / cpu:.0f}% of its CPU time")
    finally:
        if not (args.dir or args.keep):
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
