"""Live traffic of a service: the health summaries its providers publish, kept a few minutes.

``TrafficRing`` holds, per service and provider, the last ``points`` summaries it was
shown (time, calls/s, error rate, p99). It reads the registry only when asked for a
service's series and at most once per ``poll_seconds`` per service, so a console nobody
looks at reads nothing. ``traffic_svg`` draws the series as three small inline SVG
charts (calls/s, error %, p99 ms), one line per provider.
"""

from __future__ import annotations

import collections
import html
import threading
import time
from typing import Callable, Iterable, Mapping, Sequence

from govrpc.monitor.health import HealthSummary

__all__ = ["Point", "TrafficRing", "traffic_svg"]

POLL_SECONDS = 2.0
POINTS = 180  # a few minutes at a 1 s report interval
MAX_SERVICES = 200
MAX_PROVIDERS = 64

Point = tuple[float, float, float, float]  # time, qps, error rate (0..1), p99 ms


class TrafficRing:
    """Bounded in-memory series of published summaries; thread-safe; reads only on demand."""

    def __init__(self, read: Callable[[str], Iterable[HealthSummary]], *, poll_seconds: float = POLL_SECONDS,
                 points: int = POINTS) -> None:
        self._read = read
        self.poll_seconds = poll_seconds
        self.points = points
        self._series: collections.OrderedDict[str, dict[str, collections.deque[Point]]] = collections.OrderedDict()
        self._polled: dict[str, float] = {}
        self._lock = threading.Lock()

    def series(self, service: str) -> dict[str, list[Point]]:
        """Provider address -> its points, oldest first; polls the registry if the last poll is old."""
        now = time.monotonic()
        with self._lock:
            due = now - self._polled.get(service, -1e9) >= self.poll_seconds
            if due:
                self._polled[service] = now
        if due:
            self.observe(service, self._read(service))
        with self._lock:
            return {address: list(points) for address, points in sorted(self._series.get(service, {}).items())}

    def observe(self, service: str, summaries: Iterable[HealthSummary]) -> None:
        """Append each provider summary newer than the last point kept for its address."""
        with self._lock:
            providers = self._series.get(service)
            if providers is None:
                providers = self._series[service] = {}
                while len(self._series) > MAX_SERVICES:
                    gone, _ = self._series.popitem(last=False)
                    self._polled.pop(gone, None)
            self._series.move_to_end(service)
            for s in summaries:
                if s.side != "provider":
                    continue
                points = providers.get(s.address)
                if points is None:
                    if len(providers) >= MAX_PROVIDERS:
                        continue
                    points = providers[s.address] = collections.deque(maxlen=self.points)
                if points and points[-1][0] >= s.time:
                    continue  # the same report read again
                points.append((s.time, s.qps, 1.0 - s.success_rate, s.p99_ms))


_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
_CHARTS = (("qps", "calls/s", 1, 1.0), ("errors", "error %", 2, 100.0), ("p99", "p99 ms", 3, 1.0))
_W, _H, _PAD = 300, 110, 28


def _chart(key: str, label: str, column: int, scale: float, series: Mapping[str, Sequence[Point]],
           start: float, end: float) -> str:
    top = max((p[column] * scale for points in series.values() for p in points), default=0.0)
    top = top * 1.1 if top > 0 else 1.0
    span = max(end - start, 1e-9)
    lines = []
    for i, (address, points) in enumerate(series.items()):
        xy = " ".join(f"{_PAD + (p[0] - start) / span * (_W - 2 * _PAD):.1f},"
                      f"{_H - _PAD - p[column] * scale / top * (_H - 2 * _PAD):.1f}" for p in points)
        last = points[-1][column] * scale if points else 0.0
        lines.append(f'<polyline class="series" data-address="{html.escape(address, quote=True)}" '
                     f'data-last="{last:.3f}" fill="none" stroke="{_COLORS[i % len(_COLORS)]}" stroke-width="1.5" '
                     f'points="{xy}"/>')
    axes = (f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" stroke="#999"/>'
            f'<line x1="{_PAD}" y1="{_PAD}" x2="{_PAD}" y2="{_H - _PAD}" stroke="#999"/>'
            f'<text x="{_PAD}" y="{_PAD - 8}" font-size="11">{html.escape(label)} (max {top / 1.1 if top != 1.0 else 0:.1f})'
            f'</text><text x="{_W - _PAD}" y="{_H - 8}" font-size="10" text-anchor="end">last {end - start:.0f} s</text>')
    return (f'<svg class="chart" id="chart-{key}" xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
            f'viewBox="0 0 {_W} {_H}" role="img" aria-label="{html.escape(label)}">{axes}{"".join(lines)}</svg>')


def traffic_svg(series: Mapping[str, Sequence[Point]]) -> str:
    """Three ``<svg>`` charts of ``series`` (``TrafficRing.series``) and a legend, in one ``<div>``."""
    times = [p[0] for points in series.values() for p in points]
    if not times:
        return ('<div id="traffic-charts" data-points="0"><p class="empty">no provider publishes a health summary '
                '(<code>Server(report_interval=...)</code>)</p></div>')
    start, end = min(times), max(times)
    charts = "".join(_chart(key, label, column, scale, series, start, end) for key, label, column, scale in _CHARTS)
    legend = "".join(f'<li><svg width="10" height="10"><rect width="10" height="10" fill="{_COLORS[i % len(_COLORS)]}"/></svg> '
                     f'{html.escape(a)}</li>'
                     for i, a in enumerate(series))
    return f'<div id="traffic-charts" data-points="{len(times)}">{charts}<ul class="legend">{legend}</ul></div>'
