"""Prometheus metrics of govrpc calls, named after gRPC's OpenTelemetry metrics (gRFC A66).

Instruments (Prometheus names; OpenTelemetry's dots become underscores, the unit a suffix)::

    grpc_client_attempt_started_total     {grpc_method, grpc_target}
    grpc_client_attempt_duration_seconds  {grpc_method, grpc_target, grpc_status}   histogram
    grpc_client_call_duration_seconds     {grpc_method, grpc_target, grpc_status}   histogram
    grpc_server_call_started_total        {grpc_method}
    grpc_server_call_duration_seconds     {grpc_method, grpc_status}                histogram
    govrpc_calls_total                    {side, service, method, status}
    govrpc_inflight_calls                 {side, service, method}                   gauge
    govrpc_retries_total                  {service, method}     attempts after a call's first
    govrpc_failovers_total                {service, method}     calls answered after a failed attempt
    govrpc_refusals_total                 {side, service, method, reason}   limiter / breaker refusals
    govrpc_directory_providers            {service}             providers a reference lists
    govrpc_registry_connected             {registry}            1 while the registry session is up

``grpc_method`` is ``service/method`` with the real method name (never gRPC's
"other" for generic handlers); ``grpc_target`` is ``govrpc:///service``. No label
names a provider address, so cardinality is services x methods x status codes;
method names a provider does not publish (generic calls) are kept up to
``METHODS_KEPT`` per filter, then labelled ``other``. Series are bound once per method
and updated under one uncontended lock per observation; the collector registered on
the prometheus-client ``CollectorRegistry`` builds the families at scrape time, so a
call costs a dict lookup and a few additions. ``govrpc_calls_total`` is read from the
histograms' counts: it costs nothing of its own.
"""

from __future__ import annotations

import bisect
import contextvars
import math
import threading
import time
import weakref
from typing import Any, Callable, ClassVar, Iterable

from govrpc.exceptions import CircuitOpenError, ConfigurationError, GovRpcError, RateLimitedError
from govrpc.invocation import Filter, Invocation, Invoker
from govrpc.options import Option
from govrpc.url import URL

__all__ = ["METRICS", "MetricsAttemptFilter", "MetricsCallFilter", "MetricsProviderFilter", "MetricsRecorder",
           "prometheus", "serve_metrics", "status_of"]

METRICS = Option.boolean("metrics", False, per_method=False,
                         doc="true: record Prometheus metrics of these calls (on the process's default "
                             "collector registry unless the Client/Server was given one)")

# gRFC A66's latency buckets, seconds
LATENCY_BUCKETS = (0.0, 0.00001, 0.00005, 0.0001, 0.0003, 0.0006, 0.0008, 0.001, 0.002, 0.003, 0.004, 0.005,
                   0.006, 0.008, 0.01, 0.013, 0.016, 0.02, 0.025, 0.03, 0.04, 0.05, 0.065, 0.08, 0.1, 0.13,
                   0.16, 0.2, 0.25, 0.3, 0.4, 0.5, 0.65, 0.8, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
METHODS_KEPT = 256
PENDING_KEPT = 1024  # durations a histogram holds before it buckets them
REFUSALS = (RateLimitedError, CircuitOpenError)

_perf = time.perf_counter
_ATTEMPTS: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("govrpc_attempts", default=None)


def prometheus() -> Any:
    """The ``prometheus_client`` module, or a ``ConfigurationError`` saying which extra installs it."""
    try:
        import prometheus_client
    except ImportError:
        raise ConfigurationError("metrics need prometheus-client: pip install 'govrpc[monitor]'") from None
    return prometheus_client


def status_of(exc: BaseException | None) -> str:
    """The gRPC status code name of an outcome (a business exception is UNKNOWN, as on the wire)."""
    if exc is None:
        return "OK"
    if isinstance(exc, GovRpcError):
        return str(exc.code)
    return "UNKNOWN"


class _Series:
    """What a histogram and a counter share: an update is one list append (atomic under the
    GIL: no lock on the call's path), folded into the totals in batches, under the lock, when
    ``PENDING_KEPT`` are waiting or a scrape reads them, so memory stays bounded between
    scrapes. Beside a real call, a lock and a bucket search per update cost about 4 µs of
    client CPU each here, the append about nothing (prometheus-client's own histogram
    children take a lock per bucket, sum and count: 5 µs per ``observe`` on a hot loop)."""

    __slots__ = ("pending", "lock")

    def __init__(self) -> None:
        self.pending: list[Any] = []
        self.lock = threading.Lock()

    def _add(self, value: Any = 1) -> None:  # a counter's step is 1 unless said
        pending = self.pending
        pending.append(value)
        if len(pending) >= PENDING_KEPT:
            with self.lock:
                self._fold(self._take())

    def _take(self) -> list[Any]:
        """The waiting updates (the lock held). Appends may go on meanwhile: only the updates
        copied here leave the front of the list, and the copy and the removal are each atomic."""
        pending = self.pending
        taken = pending[:]
        del pending[:len(taken)]
        return taken

    def _fold(self, taken: list[Any]) -> None:
        raise NotImplementedError


class _Histogram(_Series):
    """One label set of a latency histogram: bucket counts, sum (its count is the calls counter too)."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        super().__init__()
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0

    observe = _Series._add  # one call's seconds

    def _fold(self, taken: list[float]) -> None:
        counts, where = self.counts, bisect.bisect_left
        for seconds in taken:
            counts[where(LATENCY_BUCKETS, seconds)] += 1
        self.sum += math.fsum(taken)

    def read(self) -> tuple[list[int], float]:
        with self.lock:
            self._fold(self._take())
            return list(self.counts), self.sum


class _Counter(_Series):
    __slots__ = ("total",)

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    inc = _Series._add  # by ``amount`` (1)

    def _fold(self, taken: list[int]) -> None:
        self.total += sum(taken)

    @property
    def value(self) -> int:
        with self.lock:
            self._fold(self._take())
            return self.total


class MetricsRecorder:
    """The series of govrpc on one Prometheus ``CollectorRegistry`` (one recorder per registry).

    Use ``MetricsRecorder.on(registry)``: the recorder's collector is registered once per
    collector registry, so every Client and Server of a process shares it. Calls update
    plain series objects (bound per method by the filters); the collector turns them into
    Prometheus families at scrape time.
    """

    _by_registry: ClassVar[weakref.WeakKeyDictionary[Any, MetricsRecorder]] = weakref.WeakKeyDictionary()
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def on(cls, registry: Any = None) -> MetricsRecorder:
        """The recorder of ``registry`` (default: prometheus-client's process-wide ``REGISTRY``)."""
        client = prometheus()
        registry = client.REGISTRY if registry is None else registry
        if not isinstance(registry, client.CollectorRegistry):
            raise ConfigurationError(f"metrics_registry must be a prometheus_client CollectorRegistry, "
                                     f"not {registry!r}")
        with cls._lock:
            recorder = cls._by_registry.get(registry)
            if recorder is None:
                recorder = cls._by_registry[registry] = cls(registry)
            return recorder

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self._series_lock = threading.Lock()
        # kind -> labels -> series; kinds: "client_call", "client_attempt", "server_call" (histograms),
        # "attempt_started", "server_started", "retries", "failovers", "refusals" (counters), "inflight"
        self.series: dict[str, dict[tuple[str, ...], Any]] = {}
        self._sources: weakref.WeakSet[Any] = weakref.WeakSet()
        registry.register(_Collector(self))

    def _get(self, kind: str, labels: tuple[str, ...], make: Callable[[], Any]) -> Any:
        with self._series_lock:
            table = self.series.setdefault(kind, {})
            found = table.get(labels)
            if found is None:
                found = table[labels] = make()
            return found

    def histogram(self, kind: str, *labels: str) -> _Histogram:
        return self._get(kind, labels, _Histogram)

    def counter(self, kind: str, *labels: str) -> _Counter:
        return self._get(kind, labels, _Counter)

    def inflight(self, *labels: str) -> list[None]:
        """The in-flight list of (side, service, method): append when a call starts, pop when it ends."""
        return self._get("inflight", labels, list)

    def snapshot(self, kind: str) -> list[tuple[tuple[str, ...], Any]]:
        with self._series_lock:
            return list(self.series.get(kind, {}).items())

    def watch(self, source: Any) -> None:
        """Report ``source``'s directory sizes and registry state at each scrape (a ``Client``:
        ``directory_sizes()`` and ``registry_states()`` are called; held weakly)."""
        self._sources.add(source)


_BOUNDS_TEXT = [repr(float(b)) for b in LATENCY_BUCKETS] + ["+Inf"]


class _Collector:
    """Builds the Prometheus families from a recorder's series at scrape time (nothing on the call path)."""

    def __init__(self, recorder: MetricsRecorder) -> None:
        self.recorder = weakref.ref(recorder)

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        from prometheus_client import core

        recorder = self.recorder()
        if recorder is None:
            return []
        families: list[Any] = []
        calls = core.CounterMetricFamily("govrpc_calls", "calls by side, service, method and status",
                                         labels=["side", "service", "method", "status"])
        for kind, name, doc, side in (
                ("client_attempt", "grpc_client_attempt_duration_seconds",
                 "attempt latency (gRFC A66 grpc.client.attempt.duration)", ""),
                ("client_call", "grpc_client_call_duration_seconds",
                 "call latency, retries included (gRFC A66 grpc.client.call.duration)", "consumer"),
                ("server_call", "grpc_server_call_duration_seconds",
                 "server call latency (gRFC A66 grpc.server.call.duration)", "provider")):
            labels = ["grpc_method", "grpc_status"] if kind == "server_call" else \
                ["grpc_method", "grpc_target", "grpc_status"]
            family = core.HistogramMetricFamily(name, doc, labels=labels)
            for (service, method, status), series in recorder.snapshot(kind):
                counts, total = series.read()
                cumulative, running = [], 0
                for bound, count in zip(_BOUNDS_TEXT, counts):
                    running += count
                    cumulative.append((bound, running))
                values = [f"{service}/{method}", status] if kind == "server_call" else \
                    [f"{service}/{method}", f"govrpc:///{service}", status]
                family.add_metric(values, cumulative, total)
                if side:
                    calls.add_metric([side, service, method, status], running)
            families.append(family)
        families.append(calls)
        for kind, name, doc, labels in (
                ("attempt_started", "grpc_client_attempt_started",
                 "attempts started (gRFC A66 grpc.client.attempt.started)", ["grpc_method", "grpc_target"]),
                ("server_started", "grpc_server_call_started",
                 "calls started on the server (gRFC A66 grpc.server.call.started)", ["grpc_method"]),
                ("retries", "govrpc_retries", "attempts after the first of a call", ["service", "method"]),
                ("failovers", "govrpc_failovers", "calls answered by another provider after a failed attempt",
                 ["service", "method"]),
                ("refusals", "govrpc_refusals", "calls refused by a limiter or a circuit breaker",
                 ["side", "service", "method", "reason"])):
            counter = core.CounterMetricFamily(name, doc, labels=labels)
            for key, series in recorder.snapshot(kind):
                if kind == "attempt_started":
                    key = (f"{key[0]}/{key[1]}", f"govrpc:///{key[0]}")
                elif kind == "server_started":
                    key = (f"{key[0]}/{key[1]}",)
                counter.add_metric(list(key), series.value)
            families.append(counter)
        inflight = core.GaugeMetricFamily("govrpc_inflight_calls", "calls in flight", labels=["side", "service", "method"])
        for key, series in recorder.snapshot("inflight"):
            inflight.add_metric(list(key), len(series))
        families.append(inflight)
        providers = core.GaugeMetricFamily("govrpc_directory_providers", "providers a reference lists",
                                           labels=["service"])
        connected = core.GaugeMetricFamily("govrpc_registry_connected", "1 while the registry session is up",
                                           labels=["registry"])
        sizes: dict[str, int] = {}
        registries: dict[str, int] = {}
        for source in list(recorder._sources):
            for service, count in source.directory_sizes().items():
                sizes[service] = sizes.get(service, 0) + count
            for name, up in source.registry_states().items():
                registries[name] = int(up)
        for service, count in sorted(sizes.items()):
            providers.add_metric([service], count)
        for name, up in sorted(registries.items()):
            connected.add_metric([name], up)
        return [*families, providers, connected]


_servers: dict[tuple[str, int, int], int] = {}
_servers_lock = threading.Lock()


def serve_metrics(recorder: MetricsRecorder, port: int, host: str = "127.0.0.1") -> int:
    """Serve ``recorder``'s registry over HTTP at ``host:port`` (0: a free port); returns the port.

    One HTTP server per (host, port, registry) in a process: a second ask gets the same one.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigurationError(f"metrics_port must be a whole number from 0 to 65535, not {port!r}")
    key = (host, port, id(recorder.registry))
    with _servers_lock:
        if port and key in _servers:
            return _servers[key]
        try:
            server, _thread = prometheus().start_http_server(port, addr=host, registry=recorder.registry)
        except OSError as exc:
            raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {exc}") from exc
        bound = int(server.server_address[1])
        _servers[(host, bound, id(recorder.registry))] = bound
        return bound


class _Methods:
    """Per-method series, made on first use; past ``METHODS_KEPT`` names, ``other``."""

    __slots__ = ("make", "children", "lock")

    def __init__(self, make: Callable[[str], Any], known: Iterable[str] = ()) -> None:
        self.make = make
        self.children: dict[str, Any] = {}
        self.lock = threading.Lock()
        for name in known:
            self.children[name] = make(name)

    def get(self, method: str) -> Any:
        with self.lock:
            child = self.children.get(method)
            if child is None:
                name = method if len(self.children) < METHODS_KEPT else "other"
                child = self.children.get(name) or self.make(name)
                if name == method:
                    self.children[method] = child
            return child


class _Outcomes:
    """The series of one method: status -> histogram (bound on first use of a status), in flight."""

    __slots__ = ("recorder", "kind", "labels", "by_status", "ok", "started", "inflight")

    def __init__(self, recorder: MetricsRecorder, kind: str, service: str, method: str, *,
                 started: str = "", side: str = "") -> None:
        self.recorder = recorder
        self.kind = kind
        self.labels = (service, method)
        self.ok = recorder.histogram(kind, service, method, "OK")  # a success records here directly
        self.by_status = {"OK": self.ok}
        self.started = recorder.counter(started, service, method) if started else None
        self.inflight = recorder.inflight(side, service, method) if side else None

    def record(self, status: str, elapsed: float) -> None:
        series = self.by_status.get(status)
        if series is None:
            series = self.by_status[status] = self.recorder.histogram(self.kind, *self.labels, status)
        series.observe(elapsed)


class _MetricsFilter(Filter):
    """Shared by the three metrics filters: bound when a recorder is set or ``metrics = true``."""

    auto = True
    order = -1000  # outermost: refusals of limiters and breakers are counted too
    options = (METRICS,)

    def __init__(self, recorder: MetricsRecorder | None = None) -> None:
        self.recorder = recorder

    def bind(self, url: URL) -> Filter | None:
        recorder = self.recorder
        if recorder is None:
            if not METRICS.read(url):
                return None
            recorder = MetricsRecorder.on()
        return self._bound(recorder, url)

    def _bound(self, recorder: MetricsRecorder, url: URL) -> Filter:
        raise NotImplementedError

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:  # the unbound filter never runs
        return invoker.invoke(invocation)


class MetricsCallFilter(_MetricsFilter):
    """Consumer, once per logical call: call duration, calls, in flight, retries, failovers, refusals."""

    side = "consumer"
    level = "reference"

    def _bound(self, recorder: MetricsRecorder, url: URL) -> Filter:
        return _BoundCall(recorder, url.path)


class _BoundCall(Filter):
    side = "consumer"
    level = "reference"
    order = MetricsCallFilter.order

    def __init__(self, recorder: MetricsRecorder, service: str) -> None:
        self.recorder = recorder
        self.service = service
        r = recorder

        def make(method: str) -> tuple[_Outcomes, _Counter, _Counter, str]:
            outcomes = _Outcomes(r, "client_call", service, method, side="consumer")
            return outcomes, r.counter("retries", service, method), r.counter("failovers", service, method), method

        self.methods = _Methods(make)

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        outcomes, retries, failovers, method = self.methods.children.get(invocation.method) \
            or self.methods.get(invocation.method)
        attempts = [0, 0]  # attempts, failed attempts (the attempt filter counts them)
        token = _ATTEMPTS.set(attempts)
        inflight = outcomes.inflight
        inflight.append(None)
        started = _perf()
        try:
            value = invoker.invoke(invocation)
        except BaseException as exc:
            self._failed(exc, outcomes, started, method, attempts, retries)
            raise
        else:
            outcomes.ok.observe(_perf() - started)
            if attempts[1]:
                failovers.inc()
            if attempts[0] > 1:
                retries.inc(attempts[0] - 1)
            return value
        finally:
            inflight.pop()
            _ATTEMPTS.reset(token)

    async def ainvoke(self, invoker: Any, invocation: Invocation) -> Any:
        """The asyncio twin of ``invoke``: the same series, around the awaited call."""
        outcomes, retries, failovers, method = self.methods.children.get(invocation.method) \
            or self.methods.get(invocation.method)
        attempts = [0, 0]
        token = _ATTEMPTS.set(attempts)  # the task's context: its attempts (and fan-out branches) see it
        inflight = outcomes.inflight
        inflight.append(None)
        started = _perf()
        try:
            value = await invoker.ainvoke(invocation)
        except BaseException as exc:
            self._failed(exc, outcomes, started, method, attempts, retries)
            raise
        else:
            outcomes.ok.observe(_perf() - started)
            if attempts[1]:
                failovers.inc()
            if attempts[0] > 1:
                retries.inc(attempts[0] - 1)
            return value
        finally:
            inflight.pop()
            _ATTEMPTS.reset(token)

    def _failed(self, exc: BaseException, outcomes: _Outcomes, started: float, method: str,
                attempts: list[int], retries: _Counter) -> None:
        outcomes.record(status_of(exc), _perf() - started)
        if isinstance(exc, REFUSALS):
            self.recorder.counter("refusals", "consumer", self.service, method, type(exc).__name__).inc()
        self._retried(attempts, retries)

    @staticmethod
    def _retried(attempts: list[int], retries: _Counter) -> None:
        if attempts[0] > 1:
            retries.inc(attempts[0] - 1)


class MetricsAttemptFilter(_MetricsFilter):
    """Consumer, once per attempt on one provider: attempts started and their duration."""

    side = "consumer"
    level = "invoker"

    def _bound(self, recorder: MetricsRecorder, url: URL) -> Filter:
        return _BoundAttempt(recorder, url.path, url.methods)


class _BoundAttempt(Filter):
    side = "consumer"
    level = "invoker"
    order = MetricsAttemptFilter.order

    def __init__(self, recorder: MetricsRecorder, service: str, known: Iterable[str]) -> None:
        def make(method: str) -> _Outcomes:
            return _Outcomes(recorder, "client_attempt", service, method, started="attempt_started")

        self.methods = _Methods(make, known)

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        outcomes = self.methods.children.get(invocation.method) or self.methods.get(invocation.method)
        outcomes.started.inc()
        attempts = _ATTEMPTS.get()
        if attempts is not None:
            attempts[0] += 1
        started = _perf()
        try:
            value = invoker.invoke(invocation)
        except BaseException as exc:
            _attempt_failed(exc, outcomes, started, attempts)
            raise
        outcomes.ok.observe(_perf() - started)
        return value

    async def ainvoke(self, invoker: Any, invocation: Invocation) -> Any:
        """The asyncio twin of ``invoke``."""
        outcomes = self.methods.children.get(invocation.method) or self.methods.get(invocation.method)
        outcomes.started.inc()
        attempts = _ATTEMPTS.get()
        if attempts is not None:
            attempts[0] += 1
        started = _perf()
        try:
            value = await invoker.ainvoke(invocation)
        except BaseException as exc:
            _attempt_failed(exc, outcomes, started, attempts)
            raise
        outcomes.ok.observe(_perf() - started)
        return value


def _attempt_failed(exc: BaseException, outcomes: _Outcomes, started: float, attempts: list[int] | None) -> None:
    outcomes.record(status_of(exc), _perf() - started)
    if attempts is not None and isinstance(exc, GovRpcError) and exc.retryable:
        attempts[1] += 1


class MetricsProviderFilter(_MetricsFilter):
    """Provider side: calls started, their duration and status, in flight, refusals; and the
    per-service call window a health report (``monitor.health``) summarises."""

    side = "provider"

    def __init__(self, recorder: MetricsRecorder | None = None) -> None:
        super().__init__(recorder)
        self.windows: dict[str, Any] | None = None  # service name -> CallWindow, set by the Server

    def bind(self, url: URL) -> Filter | None:
        window = self.windows.get(url.path) if self.windows is not None else None
        recorder = self.recorder
        if recorder is None and METRICS.read(url):
            recorder = MetricsRecorder.on()
        if recorder is None and window is None:
            return None
        return _BoundProvider(recorder, url.path, url.methods, window)


class _BoundProvider(Filter):
    side = "provider"
    order = MetricsProviderFilter.order

    def __init__(self, recorder: MetricsRecorder | None, service: str, known: Iterable[str], window: Any) -> None:
        self.recorder = recorder
        self.service = service
        self.window = window
        self.methods: _Methods | None = None
        if recorder is not None:
            def make(method: str) -> _Outcomes:
                return _Outcomes(recorder, "server_call", service, method, started="server_started",
                                 side="provider")

            self.methods = _Methods(make, known)

    def scope(self, call: Any, name: str, method: Callable[..., Any], args: tuple[Any, ...],
              kwargs: dict[str, Any]) -> Any:
        """``invoke`` without an Invocation (``Filter.scope``): the same series and call window,
        around ``method(*args, **kwargs)``; it never needs the chain."""
        methods, window = self.methods, self.window
        outcomes = None
        if methods is not None:
            outcomes = methods.children.get(name) or methods.get(name)
            outcomes.started.inc()
            outcomes.inflight.append(None)
        if window is not None:
            window.inflight.append(None)
        started = _perf()
        try:
            value = method(*args, **kwargs)
        except BaseException as exc:
            self._failed(exc, outcomes, window, started, name)
            raise
        else:
            elapsed = _perf() - started
            if outcomes is not None:
                outcomes.ok.observe(elapsed)
            if window is not None:
                window.record(elapsed, True)
            return value
        finally:
            if outcomes is not None:
                outcomes.inflight.pop()
            if window is not None:
                window.inflight.pop()

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        # ``scope``'s body for a chained call (another stage is bound): calling ``scope`` from
        # here would add a frame and an argument tuple to every such call
        methods, window = self.methods, self.window
        outcomes = None
        if methods is not None:
            outcomes = methods.children.get(invocation.method) or methods.get(invocation.method)
            outcomes.started.inc()
            outcomes.inflight.append(None)
        if window is not None:
            window.inflight.append(None)
        started = _perf()
        try:
            value = invoker.invoke(invocation)
        except BaseException as exc:
            self._failed(exc, outcomes, window, started, invocation.method)
            raise
        else:
            elapsed = _perf() - started
            if outcomes is not None:
                outcomes.ok.observe(elapsed)
            if window is not None:
                window.record(elapsed, True)
            return value
        finally:
            if outcomes is not None:
                outcomes.inflight.pop()
            if window is not None:
                window.inflight.pop()

    async def ainvoke(self, invoker: Any, invocation: Invocation) -> Any:
        """The asyncio twin of ``invoke`` (AsyncServer's chain): the same series and call window."""
        outcomes, window = self._begin(invocation), self.window
        started = _perf()
        try:
            value = await invoker.ainvoke(invocation)
        except BaseException as exc:
            self._failed(exc, outcomes, window, started, invocation.method)
            raise
        else:
            self._done(outcomes, window, started)
            return value
        finally:
            self._end(outcomes, window)

    def _begin(self, invocation: Invocation) -> Any:
        methods, outcomes = self.methods, None
        if methods is not None:
            outcomes = methods.children.get(invocation.method) or methods.get(invocation.method)
            outcomes.started.inc()
            outcomes.inflight.append(None)
        if self.window is not None:
            self.window.inflight.append(None)
        return outcomes

    @staticmethod
    def _done(outcomes: Any, window: Any, started: float) -> None:
        elapsed = _perf() - started
        if outcomes is not None:
            outcomes.ok.observe(elapsed)
        if window is not None:
            window.record(elapsed, True)

    @staticmethod
    def _end(outcomes: Any, window: Any) -> None:
        if outcomes is not None:
            outcomes.inflight.pop()
        if window is not None:
            window.inflight.pop()

    def _failed(self, exc: BaseException, outcomes: Any, window: Any, started: float, method: str) -> None:
        elapsed = _perf() - started
        if outcomes is not None:
            outcomes.record(status_of(exc), elapsed)
            if isinstance(exc, REFUSALS) and self.recorder is not None:
                self.recorder.counter("refusals", "provider", self.service, method, type(exc).__name__).inc()
        if window is not None:
            window.record(elapsed, False)
