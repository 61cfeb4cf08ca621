"""``HealthBoard``: a reference's view of its providers' own health verdicts (the monitor centre's feedback).

It watches the service's ``monitors`` rules in the registry and hands each provider
its fresh summary (``ProviderState.health``, None when there is none or it is stale
or garbage), which the ``healthweighted`` load balancer reads. Every registry
reference has one, whatever its balancer: a provider whose own summary says it is
not serving is listed by the directory only when no other provider is left
(``ProviderState.reports_unhealthy``), so random, roundrobin, leastactive and the
others all avoid it. When the set of such providers changes the directory lists
again at once; a NOT_SERVING summary that grows stale (``max_age``, the provider
stopped reporting) stops counting when it does, by a timer.

``HealthProber`` adds what the provider's grpc health service says: every
``health_check`` seconds (``Client(health_check=...)``) one non-blocking
``grpc.health.v1.Health/Check`` per provider address and service, through the
client's own transport; NOT_SERVING sets ``ProviderState.serving`` False, SERVING
sets it back. A provider without a health service is not asked again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterable

from govrpc.invocation import Invocation, Invoker
from govrpc.monitor.health import MONITORS, HealthSummary, max_age, read_summaries
from govrpc.registry.base import Registry
from govrpc.url import URL, ServiceKey

__all__ = ["HealthBoard", "HealthProber"]

log = logging.getLogger("govrpc.monitor")


def _endpoints(directory: Any) -> Iterable[Any]:
    """Every provider of ``directory``, listed or not (one left out as unhealthy must hear it recovered)."""
    return getattr(directory, "endpoints", None) or directory.invokers


class HealthBoard:
    """Summaries of the providers of ``directory``'s service, kept on their states. Thread-safe."""

    def __init__(self, registry: Registry, directory: Any) -> None:
        self.registry = registry
        self.directory = directory
        self.service = directory.key.service
        self.summaries: dict[str, HealthSummary] = {}
        self._texts: dict[str, str] = {}
        self._flagged: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._closed = False
        registry.watch_rules(self.service, MONITORS, self.update)

    def update(self, texts: dict[str, str]) -> None:
        """Registry listener: every summary of the service (garbage and stale ones are left out)."""
        with self._lock:
            if self._closed:
                return
            self._texts = dict(texts)
            now = time.time()
            self.summaries = summaries = read_summaries(texts, where=f"{self.service} monitors", now=now)
            self.apply()
            flagged = frozenset(a for a, s in summaries.items() if not s.serving)
            moved, self._flagged = flagged != self._flagged, flagged
            expiries = [s.time + max_age(s.interval) for s in summaries.values() if not s.serving]
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if expiries:  # a NOT_SERVING summary no longer renewed stops counting when it grows stale
                self._timer = threading.Timer(max(0.05, min(expiries) - now + 0.05), self._expire)
                self._timer.daemon = True
                self._timer.start()
        if moved:
            self._relist()

    def _expire(self) -> None:
        self.update(self._texts)

    def apply(self) -> None:
        summaries = self.summaries
        for invoker in _endpoints(self.directory):
            state = getattr(invoker, "state", None)
            if state is not None:
                state.health = summaries.get(invoker.url.address)

    def _relist(self) -> None:
        refresh = getattr(self.directory, "refresh", None)
        if refresh is not None:
            refresh()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
        self.registry.unwatch_rules(self.service, MONITORS, self.update)


HEALTH_SERVICE = "grpc.health.v1.Health"
_SERVING, _NOT_SERVING = 1, 2  # grpc.health.v1.HealthCheckResponse.ServingStatus


class HealthProber:
    """Asks providers' grpc health service whether they serve, every ``interval`` seconds, on one
    daemon thread; ``transport(url)`` makes the consumer's invoker for a health URL. Thread-safe."""

    def __init__(self, interval: float, transport: Callable[[URL], Invoker]) -> None:
        self.interval = interval
        self._transport = transport
        self._lock = threading.Lock()
        self._directories: list[Any] = []
        self._invokers: dict[str, Invoker] = {}
        self._silent: set[str] = set()  # addresses with no health service: not asked again
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._request: Any = None

    def watch(self, directory: Any) -> None:
        """Probe the providers of ``directory`` from now on (until ``forget``)."""
        if self._request is None:
            try:
                from grpc_health.v1 import health_pb2
            except ImportError:
                log.warning("grpcio-health-checking is not installed: providers' grpc health is not watched")
                return
            self._request = health_pb2.HealthCheckRequest
        with self._lock:
            self._directories.append(directory)
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="govrpc-health-probe", daemon=True)
                self._thread.start()

    def forget(self, directory: Any) -> None:
        with self._lock:
            if directory in self._directories:
                self._directories.remove(directory)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.probe()
            except Exception:  # noqa: BLE001 - one bad pass must not end the probing
                log.warning("health probe pass failed", exc_info=True)

    def probe(self) -> None:
        """One pass: a non-blocking Check per (provider address, service) of the watched directories."""
        with self._lock:
            directories = list(self._directories)
        targets: dict[tuple[str, str], list[tuple[Any, Any]]] = {}
        for directory in directories:
            for endpoint in _endpoints(directory):
                state = getattr(endpoint, "state", None)
                transport = getattr(endpoint, "transport", None)
                # in-process providers are not probed; asyncio ones are, through this prober's own channel
                if state is None or getattr(transport, "in_process", False) or not hasattr(transport, "start"):
                    continue
                address = endpoint.url.address
                if address not in self._silent:
                    targets.setdefault((address, endpoint.url.path), []).append((state, directory))
        with self._lock:  # providers that left: their probe channel goes back
            gone = [self._invokers.pop(a) for a in list(self._invokers) if a not in {a for a, _ in targets}]
        for invoker in gone:
            invoker.close()
        for (address, service), watchers in targets.items():
            invoker = self._invoker(address)
            invocation = Invocation(ServiceKey(HEALTH_SERVICE), "Check", (self._request(service=service),),
                                    deadline=time.monotonic() + max(1.0, self.interval))
            try:
                future = invoker.start(invocation)  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - a provider refused before the call left: no verdict
                continue
            future.add_done_callback(lambda f, a=address, w=watchers: self._heard(f, a, w))

    def _invoker(self, address: str) -> Invoker:
        with self._lock:
            invoker = self._invokers.get(address)
            if invoker is None:
                host, port = address.rsplit(":", 1)
                url = URL("grpc", host, int(port), HEALTH_SERVICE,
                          {"Check.response": "grpc.health.v1.HealthCheckResponse"})
                invoker = self._invokers[address] = self._transport(url)
            return invoker

    def _heard(self, future: Any, address: str, watchers: list[tuple[Any, Any]]) -> None:
        from govrpc.exceptions import MethodNotFoundError

        exc = future.exception()
        if isinstance(exc, MethodNotFoundError):
            self._silent.add(address)  # no grpc health service there (a plain server): do not ask again
            serving: bool | None = None
        elif exc is not None:
            return  # unreachable or unknown service: link liveness and the registry tell the rest
        else:
            status = future.result().status
            serving = True if status == _SERVING else False if status == _NOT_SERVING else None
        relist = []
        for state, directory in watchers:
            if state.serving != serving:
                state.serving = serving
                relist.append(directory)
        for directory in dict.fromkeys(relist):
            refresh = getattr(directory, "refresh", None)
            if refresh is not None:
                refresh()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            invokers, self._invokers = list(self._invokers.values()), {}
            self._directories.clear()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for invoker in invokers:
            invoker.close()
