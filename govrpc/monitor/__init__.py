"""Monitoring: metrics, health summaries and the health feedback into routing.

Where it sits: ``MetricsCallFilter`` wraps a consumer's logical call (reference level),
``MetricsAttemptFilter`` each attempt on one provider (invoker level) and
``MetricsProviderFilter`` the provider's side of a call; all three are ``auto``
filters of group ``govrpc.filter`` that bind to nothing until metrics or health
reports are switched on (``Server(metrics_port=...)``, ``Client(metrics_port=...)``,
the ``metrics = true`` option). ``health`` holds the periodic health summaries a
provider publishes in the registry (category ``monitors``), read by ``govrpc top``,
``Admin.health`` and the ``healthweighted`` load balancer; ``CallSummaryFilter`` (auto,
reference level) gathers a consumer's own calls for the summaries a
``Client(report_interval=...)`` publishes. ``board`` turns providers' own verdicts
(summaries, grpc health) into the directory's listing, so every balancer avoids an
unhealthy provider; ``orca`` holds the ORCA load reports providers send
(``OrcaFilter``) and consumers read (``OrcaReaderFilter``, invoker level).
"""

from govrpc.monitor.board import HealthBoard, HealthProber
from govrpc.monitor.health import CallSummaryFilter, HealthSummary, parse_summary
from govrpc.monitor.metrics import (
    MetricsAttemptFilter,
    MetricsCallFilter,
    MetricsProviderFilter,
    MetricsRecorder,
)

__all__ = [
    "CallSummaryFilter",
    "HealthBoard",
    "HealthProber",
    "HealthSummary",
    "MetricsAttemptFilter",
    "MetricsCallFilter",
    "MetricsProviderFilter",
    "MetricsRecorder",
    "parse_summary",
]
