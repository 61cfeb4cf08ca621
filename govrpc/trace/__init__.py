"""Tracing: W3C trace context on every call, OpenTelemetry spans, log correlation, call analysis.

Where it sits: ``TraceFilter`` is a built-in (``auto``) filter of the ``govrpc.filter``
group on both sides, outermost on the consumer's reference level (once per logical
call) and on the provider. Without an SDK it propagates ``traceparent`` itself; with
one it records a CLIENT and a SERVER span per call, with what the cluster and router
decided (``govrpc.context.CallRecorder``). ``TraceContextFilter`` puts the ids on log
records; ``JsonLinesSpanExporter`` writes spans for ELK; ``govrpc trace report``
(``govrpc.trace.report``) reads collected spans back and analyses them.
"""

from __future__ import annotations

from govrpc.trace.exporter import JsonLinesSpanExporter
from govrpc.trace.filter import TraceFilter
from govrpc.trace.logs import TraceContextFilter, current_ids

__all__ = ["JsonLinesSpanExporter", "TraceContextFilter", "TraceFilter", "current_ids"]
