"""ORCA per-call load reports (gRFC A51): the ``endpoint-load-metrics-bin`` trailer.

With ``Server(orca=True)`` every answer carries an ``xds.data.orca.v3.OrcaLoadReport``
in its trailing metadata: ``cpu_utilization`` (this process's CPU share of the
machine's cores over the last second), ``rps_fractional`` (calls answered per
second over the last second) and ``eps`` (failed ones). gRPC clients balancing
with ``weighted_round_robin`` weigh providers by it (weight = qps / utilization).
``Server(orca=callable)`` reports what the callable returns instead (a mapping of
``cpu_utilization``, ``application_utilization``, ``mem_utilization``,
``rps_fractional``, ``eps``), the application's own notion of its load.

The message is written by hand (five doubles), so no xds protobuf package is needed.

grpcio's client core takes ``endpoint-load-metrics-bin`` for its own balancers: a
Python client never sees it, not in ``with_call``'s call object nor in a future's
``trailing_metadata()`` (tried with grpcio 1.85, with and without
``weighted_round_robin``). So a govrpc provider also sends the same bytes under
``govrpc-load-bin`` (``LOAD_TRAILER``), which govrpc consumers read:
``loadbalance = healthweighted`` with ``healthweighted.orca = true`` binds an
``OrcaReaderFilter`` to each provider, whose transport then hands it the trailing
metadata of every unary answer (``GrpcInvoker.read_trailers``); the balancer
lowers the weight of the more loaded providers (``govrpc.cluster.healthweighted``).
A reference without that setting binds no reader and its transport reads no
trailer. In-process (local-first) calls hand the reader the same trailing metadata the
provider's filters set (``InProcessInvoker.read_trailers``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import struct
import threading
import time
from typing import Any, Callable, Mapping

from govrpc.cluster.healthweighted import ORCA_WEIGHING
from govrpc.invocation import Filter, Invocation, Invoker
from govrpc.options import Option
from govrpc.url import URL

log = logging.getLogger("govrpc.monitor")

__all__ = ["LOAD_TRAILER", "ORCA", "ORCA_TRAILER", "ORCA_WEIGHING", "LoadReport", "OrcaFilter", "OrcaReaderFilter",
           "decode_load_report", "encode_load_report", "utilization_of"]

ORCA_TRAILER = "endpoint-load-metrics-bin"
LOAD_TRAILER = "govrpc-load-bin"
"""The same ORCA bytes under a key grpcio hands to the application (it keeps ``ORCA_TRAILER``)."""
ERROR_PENALTY = 1.0  # gRFC A58's error_utilization_penalty: a share of failed answers counts as that much load
ORCA = Option.boolean("orca", False, per_method=False, side="provider",
                      doc="true: answers carry an ORCA load report (endpoint-load-metrics-bin)")

FIELDS = {"cpu_utilization": 1, "mem_utilization": 2, "rps_fractional": 6, "eps": 7, "application_utilization": 9}
_NAMES = {number: name for name, number in FIELDS.items()}
REFRESH = 0.1  # seconds a report is reused: building one per call would cost more than the call


def encode_load_report(report: Mapping[str, float]) -> bytes:
    """The protobuf bytes of an ``OrcaLoadReport`` holding ``report``'s doubles (unknown keys refused)."""
    out = bytearray()
    for name, value in report.items():
        number = FIELDS.get(name)
        if number is None:
            raise ValueError(f"{name!r} is not an ORCA load report field; fields: {', '.join(FIELDS)}")
        value = float(value)
        if value != value or value < 0 or value == float("inf"):
            raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        if value:  # proto3: zero is the default and is not written
            out.append(number << 3 | 1)  # wire type 1: 64-bit
            out += struct.pack("<d", value)
    return bytes(out)


def decode_load_report(data: bytes) -> dict[str, float]:
    """The known doubles of an ``OrcaLoadReport`` (other fields skipped); ``ValueError`` if malformed."""
    found: dict[str, float] = {}
    i, n = 0, len(data)
    while i < n:
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 1:
            if i + 8 > n:
                raise ValueError("truncated ORCA load report")
            if number in _NAMES:
                found[_NAMES[number]] = struct.unpack_from("<d", data, i)[0]
            i += 8
        elif wire == 0:
            _, i = _varint(data, i)
        elif wire == 2:
            length, i = _varint(data, i)
            i += length
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"ORCA load report: wire type {wire} is not supported")
        if i > n:
            raise ValueError("truncated ORCA load report")
    return found


def _varint(data: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("malformed varint in ORCA load report")
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7


class _Load:
    """This process's load over the last second: CPU share of the machine, answers and failures per second."""

    def __init__(self, source: Callable[[], Mapping[str, float]] | None) -> None:
        self.source = source
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = 0
        self.cores = os.cpu_count() or 1
        self.since = time.monotonic()
        self.cpu_at = time.process_time()
        self.rates = {"cpu_utilization": 0.0, "rps_fractional": 0.0, "eps": 0.0}
        self.report = b""
        self.built = 0.0

    def record(self, ok: bool) -> bytes:
        now = time.monotonic()
        with self.lock:
            if ok:
                self.ok += 1
            else:
                self.failed += 1
            if now - self.built < REFRESH and self.report:
                return self.report
            elapsed = now - self.since
            if elapsed >= 1.0 or not self.built:
                cpu = time.process_time()
                span = max(elapsed, 1e-3)
                self.rates = {"cpu_utilization": min(1.0, (cpu - self.cpu_at) / span / self.cores),
                              "rps_fractional": self.ok / span, "eps": self.failed / span}
                self.since, self.cpu_at, self.ok, self.failed = now, cpu, 0, 0
            report: Mapping[str, float] = self.rates
            if self.source is not None:
                report = {**{k: v for k, v in self.rates.items() if k != "cpu_utilization"}, **self.source()}
            self.report = encode_load_report(report)
            self.built = now
            return self.report


class OrcaFilter(Filter):
    """Provider side: attach an ORCA load report to every answer (``orca = true``, or ``Server(orca=...)``)."""

    side = "provider"
    auto = True
    order = -900
    options = (ORCA,)

    def __init__(self) -> None:
        self.source: Callable[[], Mapping[str, float]] | None = None  # set by Server(orca=callable)
        self.load: _Load | None = None  # shared by the services of one server

    def bind(self, url: URL) -> Filter | None:
        if not ORCA.read(url):
            return None
        if self.load is None:
            self.load = _Load(self.source)
        return _BoundOrca(self.load)

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:  # the unbound filter never runs
        return invoker.invoke(invocation)


class _BoundOrca(Filter):
    side = "provider"
    order = OrcaFilter.order

    def __init__(self, load: _Load) -> None:
        self.load = load

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        context = invocation.context
        try:
            value = invoker.invoke(invocation)
        except BaseException:
            if context is not None:
                report = self.load.record(False)
                context.trailing += ((ORCA_TRAILER, report), (LOAD_TRAILER, report))
            raise
        if context is not None:
            report = self.load.record(True)
            context.trailing += ((ORCA_TRAILER, report), (LOAD_TRAILER, report))
        return value

    async def ainvoke(self, invoker: Any, invocation: Invocation) -> Any:
        """The asyncio twin of ``invoke`` (AsyncServer's chain): the same load, the same trailer."""
        context = invocation.context
        ok = False
        try:
            value = await invoker.ainvoke(invocation)
            ok = True
            return value
        finally:
            if context is not None:
                report = self.load.record(ok)
                context.trailing += ((ORCA_TRAILER, report), (LOAD_TRAILER, report))


@dataclasses.dataclass(frozen=True, slots=True)
class LoadReport:
    """A provider's last ORCA report as a consumer read it: its utilization and when (``time.monotonic()``)."""

    utilization: float
    time: float

    def fresh(self, now: float) -> bool:
        """Read within the last ``REPORT_EXPIRY`` seconds (an older one says nothing of the provider now)."""
        return now - self.time <= REPORT_EXPIRY


REPORT_EXPIRY = 10.0  # seconds: a provider still called sends one with every answer


def utilization_of(report: Mapping[str, float]) -> float:
    """gRFC A58's utilization of a decoded report: the application's figure when it gives one, else
    the CPU's, plus the share of failed answers (``eps / rps_fractional``) times the error penalty."""
    utilization = report.get("application_utilization", 0.0) or report.get("cpu_utilization", 0.0)
    rps = report.get("rps_fractional", 0.0)
    if rps > 0:
        utilization += ERROR_PENALTY * report.get("eps", 0.0) / rps
    return utilization


class OrcaReaderFilter(Filter):
    """Consumer side, per provider: keep the provider's ORCA reports on its state (``state.load``).

    Binds only where ``healthweighted.orca = true``; then its transport hands it the trailing
    metadata of each answer. Reports are decoded once per distinct bytes (a provider reuses one
    for 0.1 s); a malformed one is ignored and logged once.
    """

    side = "consumer"
    level = "invoker"
    auto = True
    order = 900  # innermost: it only listens
    options = (ORCA_WEIGHING,)

    def bind(self, url: URL) -> Filter | None:
        return _BoundReader(url.address) if ORCA_WEIGHING.read(url) else None

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:  # the unbound filter never runs
        return invoker.invoke(invocation)


class _BoundReader(Filter):
    side = "consumer"
    level = "invoker"
    order = OrcaReaderFilter.order

    def __init__(self, address: str) -> None:
        self.address = address
        self.state: Any = None
        self._last: tuple[bytes, float] | None = None
        self._warned = False

    def attach_state(self, state: Any) -> None:
        self.state = state

    def on_trailers(self, metadata: Any) -> None:
        """The transport's listener: the trailing metadata of one answer."""
        for key, value in metadata or ():
            if key == LOAD_TRAILER and isinstance(value, bytes):
                break
        else:
            return
        last = self._last
        if last is not None and last[0] == value:
            utilization = last[1]
        else:
            try:
                utilization = utilization_of(decode_load_report(value))
            except ValueError as exc:
                if not self._warned:
                    self._warned = True
                    log.warning("provider %s sent a malformed load report (ignored): %s", self.address, exc)
                return
            if not math.isfinite(utilization) or utilization < 0:
                return
            self._last = (value, utilization)
        if self.state is not None:
            self.state.load = LoadReport(utilization, time.monotonic())

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        return invoker.invoke(invocation)

    async def ainvoke(self, invoker: Any, invocation: Invocation) -> Any:  # the transport reads the trailers
        return await invoker.ainvoke(invocation)
