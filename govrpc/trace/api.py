"""The OpenTelemetry API as govrpc's tracing reads it, found out once at import (needs ``opentelemetry-api``).

The current context is read, attached and detached through the API's ``ContextVar`` itself
when the API keeps it in one (its default), and the current span is set in a ``Context`` under
the key the API uses, found by asking it. Span contexts are read and made as the tuples they
are (``TUPLES``), where the API lays them out so. Each costs a frame or two less per call than
the API's functions and properties (``govrpc.trace.filter``, ``otel``, ``spans``).
"""

from __future__ import annotations

import contextvars
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace

from govrpc.trace import w3c

__all__ = ["Context", "DEFAULT_TRACE_STATE", "NonRecordingSpan", "SPAN_KEY", "SpanContext", "TUPLES", "attach",
           "current_context", "detach", "parent_of", "trace_state_of"]


def _context_access() -> tuple[Any, Any, Any, Any]:
    """How the current OpenTelemetry context is read, attached and detached, and the key the API keeps
    the current span under in a ``Context``. With the API's default runtime context (a ``ContextVar``)
    that variable's own ``get``, ``set`` and ``reset``: what ``get_current``, ``attach`` and ``detach``
    call, two frames deeper each; with another runtime context, the API's functions."""
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    get: Any
    set_: Any
    reset: Any
    if type(runtime).__name__ == "ContextVarsRuntimeContext" and isinstance(variable, contextvars.ContextVar):
        get, set_, reset = variable.get, variable.set, variable.reset
    else:  # pragma: no cover - a runtime context configured otherwise (OTEL_PYTHON_CONTEXT)
        get, set_, reset = otel_context.get_current, otel_context.attach, otel_context.detach
    probe = otel_trace.NonRecordingSpan(otel_trace.INVALID_SPAN_CONTEXT)
    (key,) = (k for k, v in otel_trace.set_span_in_context(probe, otel_context.Context()).items() if v is probe)
    return get, set_, reset, key


def _tuple_layout() -> bool:
    """Whether the API's ``SpanContext`` is the tuple (trace id, span id, remote, flags, state, valid) and
    a ``NonRecordingSpan`` keeps its context in ``_context``, as govrpc reads and makes them (a
    property per field costs a frame; the constructor's checks do not apply to ids known valid)."""
    flags = otel_trace.TraceFlags(1)
    made = otel_trace.SpanContext(1, 2, True, flags, None)
    return (tuple(made) == (1, 2, True, flags, otel_trace.DEFAULT_TRACE_STATE, True) and made.trace_id == 1
            and made.span_id == 2 and made.is_remote is True and made.trace_flags is flags
            and made.trace_state is otel_trace.DEFAULT_TRACE_STATE and made.is_valid is True
            and otel_trace.NonRecordingSpan(made)._context is made)


current_context, attach, detach, SPAN_KEY = _context_access()
# Context({**parent, SPAN_KEY: span}) is set_span_in_context(span, parent), a copy with the span set
Context = otel_context.Context
TUPLES = _tuple_layout()
SpanContext = otel_trace.SpanContext
NonRecordingSpan = otel_trace.NonRecordingSpan
DEFAULT_TRACE_STATE = otel_trace.DEFAULT_TRACE_STATE

_new_tuple = tuple.__new__
_FORM = w3c._FORM
_MAX_HEADER = w3c._MAX_HEADER
_FLAGS: dict[str, Any] = {}


def _flags(text: str) -> Any:
    """The ``TraceFlags`` of a header's two hex digits, made once per spelling (a span keeps its parent's)."""
    flags = otel_trace.TraceFlags(int(text, 16))
    if len(_FLAGS) < 256:  # 484 spellings with upper and lower case: the common ones are kept
        _FLAGS[text] = flags
    return flags


def parent_of(value: Any, state: Any) -> Any:
    """The caller's span context from the values of its ``traceparent`` and ``tracestate`` headers (None: not
    sent), or None for a fresh trace: no header, or one ``w3c.parse_traceparent`` would refuse (version ``00``
    only, stricter than the SDK propagator's regular expression: ``w3c.valid_form``, ids not all zeros).
    A header it accepts is built into the span context directly."""
    if type(value) is not str or _FORM(value) is None:  # w3c.valid_form, written out: a frame less per call
        return None
    trace_id = int(value[3:35], 16)  # hex digits only (checked): int() takes no sign, space or "_" here
    span_id = int(value[36:52], 16)
    if not trace_id or not span_id:
        return None
    flags = value[53:55]
    trace_flags = _FLAGS.get(flags)
    if trace_flags is None:  # not "or": the unsampled flags are a zero, false
        trace_flags = _flags(flags)
    trace_state = trace_state_of(state)
    if TUPLES:  # valid: non-zero ids of the right length
        return _new_tuple(SpanContext, (trace_id, span_id, True, trace_flags, trace_state, True))
    return SpanContext(trace_id, span_id, True, trace_flags, trace_state)  # pragma: no cover - laid out otherwise


def trace_state_of(state: Any) -> Any:
    """The ``TraceState`` of a ``tracestate`` header's value (empty: none sent, or past the bound). The API
    logs a warning for each malformed member and leaves it out."""
    if state and len(state) <= _MAX_HEADER:
        return otel_trace.TraceState.from_header([state])
    return DEFAULT_TRACE_STATE
