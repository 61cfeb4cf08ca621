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
``METHODS_KEPT`` per filter, then labelled ``other``. Label children are bound once
per method, so a call costs a dict lookup and the observations themselves.
"""

from __future__ import annotations

import contextvars
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


class MetricsRecorder:
    """The instruments of govrpc on one Prometheus ``CollectorRegistry`` (one recorder per registry).

    Use ``MetricsRecorder.on(registry)``: instruments are registered once per
    collector registry, so every Client and Server of a process shares them.
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
        p = prometheus()
        self.registry = registry
        b = LATENCY_BUCKETS
        self.client_attempt_started = p.Counter(
            "grpc_client_attempt_started", "attempts started (gRFC A66 grpc.client.attempt.started)",
            ["grpc_method", "grpc_target"], registry=registry)
        self.client_attempt_duration = p.Histogram(
            "grpc_client_attempt_duration_seconds", "attempt latency (gRFC A66 grpc.client.attempt.duration)",
            ["grpc_method", "grpc_target", "grpc_status"], registry=registry, buckets=b)
        self.client_call_duration = p.Histogram(
            "grpc_client_call_duration_seconds", "call latency, retries included (gRFC A66 grpc.client.call.duration)",
            ["grpc_method", "grpc_target", "grpc_status"], registry=registry, buckets=b)
        self.server_call_started = p.Counter(
            "grpc_server_call_started", "calls started on the server (gRFC A66 grpc.server.call.started)",
            ["grpc_method"], registry=registry)
        self.server_call_duration = p.Histogram(
            "grpc_server_call_duration_seconds", "server call latency (gRFC A66 grpc.server.call.duration)",
            ["grpc_method", "grpc_status"], registry=registry, buckets=b)
        self.calls = p.Counter("govrpc_calls", "calls by side, service, method and status",
                               ["side", "service", "method", "status"], registry=registry)
        self.inflight = p.Gauge("govrpc_inflight_calls", "calls in flight", ["side", "service", "method"],
                                registry=registry)
        self.retries = p.Counter("govrpc_retries", "attempts after the first of a call", ["service", "method"],
                                 registry=registry)
        self.failovers = p.Counter("govrpc_failovers", "calls answered by another provider after a failed attempt",
                                   ["service", "method"], registry=registry)
        self.refusals = p.Counter("govrpc_refusals", "calls refused by a limiter or a circuit breaker",
                                  ["side", "service", "method", "reason"], registry=registry)
        self._sources: weakref.WeakSet[Any] = weakref.WeakSet()
        registry.register(_StateCollector(self._sources))

    def watch(self, source: Any) -> None:
        """Report ``source``'s directory sizes and registry state at each scrape (a ``Client``: its
        ``metric_families()`` is called; held weakly)."""
        self._sources.add(source)


class _StateCollector:
    """Gauges read at scrape time from the clients and servers watched (nothing on the call path)."""

    def __init__(self, sources: weakref.WeakSet[Any]) -> None:
        self.sources = sources

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        from prometheus_client import core

        providers = core.GaugeMetricFamily("govrpc_directory_providers", "providers a reference lists",
                                           labels=["service"])
        connected = core.GaugeMetricFamily("govrpc_registry_connected", "1 while the registry session is up",
                                           labels=["registry"])
        sizes: dict[str, int] = {}
        registries: dict[str, int] = {}
        for source in list(self.sources):
            for service, count in source.directory_sizes().items():
                sizes[service] = sizes.get(service, 0) + count
            for name, up in source.registry_states().items():
                registries[name] = int(up)
        for service, count in sorted(sizes.items()):
            providers.add_metric([service], count)
        for name, up in sorted(registries.items()):
            connected.add_metric([name], up)
        return [providers, connected]


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
    """Per-method label children, made on first use; past ``METHODS_KEPT`` names, ``other``."""

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
    """The children of one method: status -> (histogram, counter), bound on first use of a status."""

    __slots__ = ("histogram", "counter", "by_status", "started", "inflight")

    def __init__(self, histogram: Callable[[str], Any], counter: Callable[[str], Any],
                 started: Any = None, inflight: Any = None) -> None:
        self.histogram = histogram
        self.counter = counter
        self.by_status = {"OK": (histogram("OK"), counter("OK"))}
        self.started = started
        self.inflight = inflight

    def record(self, status: str, elapsed: float) -> None:
        pair = self.by_status.get(status)
        if pair is None:
            pair = self.by_status[status] = (self.histogram(status), self.counter(status))
        pair[0].observe(elapsed)
        pair[1].inc()


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
        target = f"govrpc:///{service}"
        r = recorder

        def make(method: str) -> tuple[_Outcomes, Any, Any, Any]:
            full = f"{service}/{method}"
            outcomes = _Outcomes(lambda s: r.client_call_duration.labels(full, target, s),
                                 lambda s: r.calls.labels("consumer", service, method, s),
                                 inflight=r.inflight.labels("consumer", service, method))
            return outcomes, r.retries.labels(service, method), r.failovers.labels(service, method), method

        self.methods = _Methods(make)

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        outcomes, retries, failovers, method = self.methods.children.get(invocation.method) \
            or self.methods.get(invocation.method)
        attempts = [0, 0]  # attempts, failed attempts (the attempt filter counts them)
        token = _ATTEMPTS.set(attempts)
        inflight = outcomes.inflight
        inflight.inc()
        started = _perf()
        try:
            value = invoker.invoke(invocation)
        except BaseException as exc:
            outcomes.record(status_of(exc), _perf() - started)
            if isinstance(exc, REFUSALS):
                self.recorder.refusals.labels("consumer", self.service, method, type(exc).__name__).inc()
            self._retried(attempts, retries)
            raise
        else:
            outcomes.record("OK", _perf() - started)
            if attempts[1]:
                failovers.inc()
            self._retried(attempts, retries)
            return value
        finally:
            inflight.dec()
            _ATTEMPTS.reset(token)

    @staticmethod
    def _retried(attempts: list[int], retries: Any) -> None:
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
        target = f"govrpc:///{service}"
        r = recorder

        def make(method: str) -> _Outcomes:
            full = f"{service}/{method}"
            return _Outcomes(lambda s: r.client_attempt_duration.labels(full, target, s),
                             lambda s: _NO_COUNTER, started=r.client_attempt_started.labels(full, target))

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
            outcomes.record(status_of(exc), _perf() - started)
            if attempts is not None and isinstance(exc, GovRpcError) and exc.retryable:
                attempts[1] += 1
            raise
        outcomes.record("OK", _perf() - started)
        return value


class _NoCounter:
    def inc(self, amount: float = 1) -> None:
        pass


_NO_COUNTER = _NoCounter()


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
            r = recorder

            def make(method: str) -> _Outcomes:
                full = f"{service}/{method}"
                return _Outcomes(lambda s: r.server_call_duration.labels(full, s),
                                 lambda s: r.calls.labels("provider", service, method, s),
                                 started=r.server_call_started.labels(full),
                                 inflight=r.inflight.labels("provider", service, method))

            self.methods = _Methods(make, known)

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        methods, window = self.methods, self.window
        outcomes = None
        if methods is not None:
            outcomes = methods.children.get(invocation.method) or methods.get(invocation.method)
            outcomes.started.inc()
            outcomes.inflight.inc()
        if window is not None:
            window.inflight.append(None)
        started = _perf()
        try:
            value = invoker.invoke(invocation)
        except BaseException as exc:
            elapsed = _perf() - started
            if outcomes is not None:
                outcomes.record(status_of(exc), elapsed)
                if isinstance(exc, REFUSALS) and self.recorder is not None:
                    self.recorder.refusals.labels("provider", self.service, invocation.method,
                                                  type(exc).__name__).inc()
            if window is not None:
                window.record(elapsed, False)
            raise
        else:
            elapsed = _perf() - started
            if outcomes is not None:
                outcomes.record("OK", elapsed)
            if window is not None:
                window.record(elapsed, True)
            return value
        finally:
            if outcomes is not None:
                outcomes.inflight.dec()
            if window is not None:
                window.inflight.pop()
