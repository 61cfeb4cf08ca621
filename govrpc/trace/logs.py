"""``TraceContextFilter``: the trace and span ids of the call being handled on every log record.

    govrpc.trace.TraceContextFilter.install()   # one line, at start-up

puts ``record.trace_id`` and ``record.span_id`` (32 and 16 hex digits, ``""`` outside
a call) on every record of every logger, so a format such as
``"%(asctime)s %(trace_id)s %(span_id)s %(message)s"`` correlates the logs of one call
across services. It reads the current OpenTelemetry span when an SDK records, else the
context govrpc propagates itself. It can also be added to one handler as an ordinary
``logging.Filter`` (``handler.addFilter(TraceContextFilter())``).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from govrpc.trace import otel, w3c

__all__ = ["TraceContextFilter", "current_ids"]

_current_ref = w3c._CURRENT.get


def current_ids() -> tuple[str, str]:
    """``(trace_id, span_id)`` of the call being handled in this context, or ``("", "")``."""
    if otel.available:
        span_context = otel.otel_trace.get_current_span().get_span_context()
        if span_context.is_valid:
            return f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"
    ref = _current_ref()
    if ref is None:
        return "", ""
    if type(ref) is str:  # the traceparent of a trace this consumer started
        return ref[3:35], ref[36:52]
    return ref.trace_id, ref.span_id  # type: ignore[union-attr]


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` to each record it sees; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "trace_id"):  # set already by the record factory, or by the caller
            record.trace_id, record.span_id = current_ids()
        return True

    @classmethod
    def install(cls) -> None:
        """Put the ids on every record made from now on, whatever logger or handler it goes to.

        Wraps ``logging``'s record factory (once: installing again does nothing)."""
        factory = logging.getLogRecordFactory()
        if getattr(factory, "_govrpc_trace", False):
            return

        def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = factory(*args, **kwargs)
            record.trace_id, record.span_id = current_ids()
            return record

        make._govrpc_trace = True  # type: ignore[attr-defined]
        make._govrpc_wrapped = factory  # type: ignore[attr-defined]
        logging.setLogRecordFactory(make)

    @classmethod
    def uninstall(cls) -> None:
        """Undo ``install`` (tests)."""
        factory: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()
        if getattr(factory, "_govrpc_trace", False):
            logging.setLogRecordFactory(factory._govrpc_wrapped)  # type: ignore[attr-defined]
