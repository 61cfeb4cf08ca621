"""Health summaries: what each provider reports of itself to the monitor centre, the registry.

A ``Server(report_interval=5)`` publishes, every interval and for each service it
hosts, one JSON summary as a rule of category ``monitors`` named
``provider-{host}-{port}`` (ZooKeeper: ``/govrpc/{service}/monitors/provider-10.0.0.5-50051``)::

    {"v": 1, "side": "provider", "address": "10.0.0.5:50051", "application": "greeter",
     "time": 1764620000.5, "interval": 5.0, "serving": true, "calls": 812, "qps": 162.4,
     "p50_ms": 1.9, "p99_ms": 8.4, "success_rate": 0.998, "inflight": 3,
     "cpu": 0.41, "rss_mb": 88.2, "zone": "a"}

A ``Client(report_interval=5)`` publishes the same summary of its own calls (once per
logical call, retries included, as its caller saw them) for each service it calls,
with ``"side": "consumer"``, named ``consumer-{host}-{pid}``; its ``address`` is
``host:pid`` (a consumer has no port) and ``serving`` is always true. The
directories and balancers read only the providers' summaries; ``Admin.health(side=None)``
and ``govrpc top`` show both.

``cpu`` is the process's CPU time over the interval divided by wall time (1.0 = one
core busy), ``rss_mb`` its resident memory. The node is deleted when the server
stops; one left by a provider that died is ignored once older than
``max_age(interval)``. A summary that is not such JSON, or holds out-of-range
numbers, is ignored (logged once): it never fails a consumer nor zeroes a weight.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import threading
import time
from typing import Any, Callable, Iterable, Mapping

from govrpc.invocation import Filter, Invocation, Invoker
from govrpc.url import URL

__all__ = ["CallSummaryFilter", "CallWindow", "HealthReporter", "HealthSummary", "MONITORS", "ProcessSampler", "max_age",
           "parse_summary", "read_summaries", "summary_name"]

log = logging.getLogger("govrpc.monitor")

MONITORS = "monitors"
"""The registry rule category holding health summaries."""

SAMPLES_KEPT = 4096  # latencies kept per interval for the percentiles (the count is exact)
MAX_TEXT = 4096
_perf = time.perf_counter


def max_age(interval: float) -> float:
    """How old a summary may be and still count: three intervals, at least 15 s."""
    return max(3 * interval, 15.0)


def summary_name(side: str, host: str, port: int | str) -> str:
    """The rule name of a summary: ``provider-10.0.0.5-50051``."""
    return f"{side}-{host}-{port}".replace("/", "_").replace(":", "_")


@dataclasses.dataclass(frozen=True)
class HealthSummary:
    """One provider's (or consumer's) report of itself over its last interval."""

    address: str
    time: float
    interval: float
    side: str = "provider"
    application: str = ""
    serving: bool = True
    calls: int = 0
    qps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    success_rate: float = 1.0
    inflight: int = 0
    cpu: float | None = None
    rss_mb: float | None = None
    zone: str = ""

    def fresh(self, now: float | None = None) -> bool:
        """Not older than ``max_age(interval)`` (nor from the future beyond a clock skew of that much)."""
        now = time.time() if now is None else now
        return abs(now - self.time) <= max_age(self.interval)

    def text(self) -> str:
        return json.dumps({"v": 1, **dataclasses.asdict(self)}, sort_keys=True)


def _number(data: Mapping[str, Any], key: str, low: float, high: float, default: Any) -> Any:
    value = data.get(key, default)
    if value is None and default is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ValueError(f"{key} = {value!r} is not a number from {low} to {high}")
    return value


def parse_summary(text: str) -> HealthSummary:
    """The summary ``text`` holds; ``ValueError`` naming what is wrong (garbage is never half-read)."""
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise ValueError("a summary is JSON text of at most 4096 characters")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("v") != 1:
        raise ValueError("not a version 1 summary object")
    address, side = data.get("address"), data.get("side", "provider")
    if not isinstance(address, str) or not address or side not in ("provider", "consumer"):
        raise ValueError("address must be host:port and side provider or consumer")
    serving = data.get("serving", True)
    if not isinstance(serving, bool):
        raise ValueError(f"serving = {serving!r} is not true or false")
    texts = {k: data.get(k, "") for k in ("application", "zone")}
    if not all(isinstance(v, str) and len(v) <= 256 for v in texts.values()):
        raise ValueError("application and zone must be short strings")
    return HealthSummary(
        address=address, side=side, serving=serving, **texts,
        time=float(_number(data, "time", 0, 1e11, None) or 0),
        interval=float(_number(data, "interval", 0.01, 86400, 5.0)),
        calls=int(_number(data, "calls", 0, 1e15, 0)),
        qps=float(_number(data, "qps", 0, 1e9, 0.0)),
        p50_ms=float(_number(data, "p50_ms", 0, 1e9, 0.0)),
        p99_ms=float(_number(data, "p99_ms", 0, 1e9, 0.0)),
        success_rate=float(_number(data, "success_rate", 0, 1, 1.0)),
        inflight=int(_number(data, "inflight", 0, 1e9, 0)),
        cpu=_number(data, "cpu", 0, 1e4, None),
        rss_mb=_number(data, "rss_mb", 0, 1e9, None),
    )


_warned: set[tuple[str, str]] = set()


def read_summaries(texts: Mapping[str, str], *, where: str = "", now: float | None = None,
                   fresh_only: bool = True, side: str = "provider") -> dict[str, HealthSummary]:
    """address -> summary of ``side`` (provider or consumer) from the ``monitors`` rules of a
    service; garbage and stale ones left out."""
    found: dict[str, HealthSummary] = {}
    now = time.time() if now is None else now
    for name, text in texts.items():
        try:
            summary = parse_summary(text)
        except ValueError as exc:
            if (where, name) not in _warned and len(_warned) < 4096:
                _warned.add((where, name))
                log.warning("%s: ignoring health summary %r: %s", where, name, exc)
            continue
        if summary.side != side or (fresh_only and not summary.fresh(now)):
            continue
        found[summary.address] = summary
    return found


class CallWindow:
    """Calls of one service since the last report: count, failures, latency samples, in flight.

    Written on the call path without a lock (appends are atomic; a count lost to a race only
    blurs a summary); ``drain`` swaps the lists whole.
    """

    __slots__ = ("samples", "ok", "failed", "inflight")

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.ok = 0
        self.failed = 0
        self.inflight: list[None] = []

    def record(self, elapsed: float, ok: bool) -> None:
        if ok:
            self.ok += 1
        else:
            self.failed += 1
        samples = self.samples
        if len(samples) < SAMPLES_KEPT:
            samples.append(elapsed)

    def drain(self) -> tuple[int, int, list[float]]:
        """(answered, failed, latency samples) since the last drain."""
        samples, self.samples = self.samples, []
        ok, failed = self.ok, self.failed
        self.ok -= ok
        self.failed -= failed
        return ok, failed, samples


def _percentile(sorted_samples: list[float], q: float) -> float:
    if not sorted_samples:
        return 0.0
    return sorted_samples[min(len(sorted_samples) - 1, int(q * len(sorted_samples)))]


class ProcessSampler:
    """This process's CPU share since the last sample and its resident memory (psutil when installed)."""

    def __init__(self) -> None:
        try:
            import psutil
            self._process: Any = psutil.Process(os.getpid())
        except ImportError:  # CPU from os.times(); memory unknown
            self._process = None
        self._last = (time.monotonic(), self._cpu_seconds())

    def _cpu_seconds(self) -> float:
        if self._process is not None:
            t = self._process.cpu_times()
            return float(t.user + t.system)
        t = os.times()
        return t.user + t.system

    def sample(self) -> tuple[float, float | None]:
        now, cpu = time.monotonic(), self._cpu_seconds()
        then, cpu_then = self._last
        self._last = (now, cpu)
        share = (cpu - cpu_then) / (now - then) if now > then else 0.0
        rss = self._process.memory_info().rss / 1e6 if self._process is not None else None
        return round(max(share, 0.0), 4), (round(rss, 1) if rss is not None else None)


def summarize(window: CallWindow, interval: float, *, address: str, application: str, serving: bool,
              zone: str, cpu: float | None, rss_mb: float | None, now: float, side: str = "provider") -> HealthSummary:
    ok, failed, samples = window.drain()
    calls = ok + failed
    samples.sort()
    return HealthSummary(
        address=address, side=side, time=now, interval=interval, application=application, serving=serving,
        # to the ns: a method that answers in under a µs must not read as taking no time at all
        calls=calls, qps=round(calls / interval, 3), p50_ms=round(_percentile(samples, 0.5) * 1000, 6),
        p99_ms=round(_percentile(samples, 0.99) * 1000, 6),
        success_rate=round(ok / calls, 4) if calls else 1.0, inflight=len(window.inflight),
        cpu=cpu, rss_mb=rss_mb, zone=zone)


class HealthReporter:
    """Publishes a provider's (``side`` consumer: a consumer's) summaries every ``interval`` seconds
    on a daemon thread.

    ``put(service, name, text)`` / ``delete(service, name)`` write the registry;
    ``services()`` gives service name -> its ``CallWindow``; ``serving(service)`` the
    server's own verdict (False from the moment it stops).
    """

    def __init__(self, interval: float, *, address: str, application: str, zone: str,
                 services: Callable[[], Mapping[str, CallWindow]], serving: Callable[[str], bool],
                 put: Callable[[str, str, str], None], delete: Callable[[str, str], None],
                 side: str = "provider") -> None:
        self.interval = interval
        self.address = address
        self.application = application
        self.zone = zone
        self.side = side
        self.name = summary_name(side, *address.rsplit(":", 1))
        self._services, self._serving, self._put, self._delete = services, serving, put, delete
        self._sampler = ProcessSampler()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._published: set[str] = set()
        self._report_lock = threading.Lock()  # one report at a time: a verdict changed now is published last

    def start(self) -> None:
        self.report()  # the first summary at once: consumers see the provider is reporting
        self._thread = threading.Thread(target=self._run, name="govrpc-health-report", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.report()
            except Exception:  # noqa: BLE001 - a registry hiccup must not end the reports
                log.warning("cannot publish the health summary of %s", self.address, exc_info=True)

    def report(self) -> list[HealthSummary]:
        with self._report_lock:
            return self._report()

    def _report(self) -> list[HealthSummary]:
        cpu, rss = self._sampler.sample()
        now = time.time()
        made = []
        for service, window in self._services().items():
            summary = summarize(window, self.interval, address=self.address, application=self.application,
                                serving=self._serving(service), zone=self.zone, cpu=cpu, rss_mb=rss, now=now,
                                side=self.side)
            self._put(service, self.name, summary.text())
            self._published.add(service)
            made.append(summary)
        return made

    def stop(self, services: Iterable[str] | None = None) -> None:
        """Stop reporting and delete the summaries published."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for service in sorted(self._published):
            try:
                self._delete(service, self.name)
            except Exception:  # noqa: BLE001
                log.warning("cannot delete the health summary of %s for %s", self.address, service)
        self._published.clear()


class CallSummaryFilter(Filter):
    """Consumer, once per logical call: the per-service call window a consumer's health report
    summarises (``Client(report_interval=...)``). Binds to nothing while the client reports nothing."""

    side = "consumer"
    level = "reference"
    auto = True
    order = -990  # outside the limiters and breakers: their refusals are calls the caller saw fail

    def __init__(self) -> None:
        self.windows: Mapping[str, CallWindow] | None = None  # service name -> window, set by the Client

    def bind(self, url: URL) -> Filter | None:
        window = self.windows.get(url.path) if self.windows is not None else None
        return _BoundSummary(window) if window is not None else None

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:  # the unbound filter never runs
        return invoker.invoke(invocation)


class _BoundSummary(Filter):
    side = "consumer"
    level = "reference"
    order = CallSummaryFilter.order

    def __init__(self, window: CallWindow) -> None:
        self.window = window

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        window = self.window
        window.inflight.append(None)
        started = _perf()
        try:
            value = invoker.invoke(invocation)
        except BaseException:
            window.record(_perf() - started, False)
            raise
        else:
            window.record(_perf() - started, True)
            return value
        finally:
            window.inflight.pop()

    async def ainvoke(self, invoker: Any, invocation: Invocation) -> Any:
        """The asyncio twin of ``invoke`` (an ``AsyncClient`` reporting): the same call window."""
        window = self.window
        window.inflight.append(None)
        started = _perf()
        try:
            value = await invoker.ainvoke(invocation)
        except BaseException:
            window.record(_perf() - started, False)
            raise
        else:
            window.record(_perf() - started, True)
            return value
        finally:
            window.inflight.pop()
