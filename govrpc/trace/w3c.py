"""W3C Trace Context without an SDK: parse and make ``traceparent``, carry ``tracestate`` and baggage.

A ``SpanRef`` is what govrpc keeps in a contextvar for the call being handled when no
OpenTelemetry SDK records: the trace id, this hop's span id, the flags and the two
opaque headers it passes on. Parsing is strict (https://www.w3.org/TR/trace-context/):
a header of the wrong length, with upper-case or non-hex digits, all-zero ids or
a version other than ``00`` gives None, and the callee starts a fresh trace. (The
specification would read a future version by its first four fields; govrpc's issue 12
asks for a fresh trace instead, and both the SDK and the SDK-less paths do that.)
"""

from __future__ import annotations

import contextvars
import os
import random
import re
from typing import Any, Iterator, Mapping, NamedTuple, Sequence, Union

__all__ = ["BAGGAGE", "TRACEPARENT", "TRACESTATE", "Incoming", "SpanRef", "current_span_ref", "fresh_traceparent",
           "fresh_ids", "incoming", "new_span_id", "new_trace_id", "parse_traceparent", "valid_form"]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
BAGGAGE = "baggage"

_HEX = frozenset("0123456789abcdef")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_MAX_HEADER = 8192  # tracestate and baggage beyond this are dropped, not passed on

_randbits = random.getrandbits  # what the OpenTelemetry SDK's id generator uses too


def new_trace_id() -> str:
    """32 lower-case hex digits, never all zero."""
    return "%032x" % (_randbits(128) or 1)


def new_span_id() -> str:
    """16 lower-case hex digits, never all zero."""
    return "%016x" % (_randbits(64) or 1)


_FRESH: list[str] = []  # traceparent headers of new traces, not handed out yet
_take_fresh = _FRESH.pop
_BATCH = 256
_MASK64 = (1 << 64) - 1
if hasattr(os, "register_at_fork"):  # a child must not send its parent's ids (random reseeds there too)
    os.register_at_fork(after_in_child=_FRESH.clear)


def fresh_traceparent() -> str:
    """The ``traceparent`` of a new trace's first span (sampled): random ids, never all zero.

    Every call that starts a trace sends one, so they are made 256 at a time, in one loop
    that stays in the CPU's caches. Made one per call, beside a real gRPC call, the same few
    string operations cost about 8 µs of client CPU here; taken from the batch, about
    nothing (``benchmarks/consumer_cost.py`` measures the loop, not this: see README)."""
    try:
        return _take_fresh()
    except IndexError:
        return _refill()


def _draws() -> Iterator[tuple[int, int, str]]:
    """A batch of random (trace id, span id), neither all zero, each with its 48 hex digits."""
    made = 0
    while made < _BATCH:
        bits = _randbits(192)
        trace_id, span_id = bits >> 64, bits & _MASK64
        if trace_id and span_id:
            made += 1
            yield trace_id, span_id, bits.to_bytes(24, "big").hex()


def _refill() -> str:
    made = [f"00-{digits[:32]}-{digits[32:]}-01" for _, _, digits in _draws()]
    header = made.pop()
    _FRESH.extend(made)  # list operations hold the GIL: threads refilling at once each add theirs
    return header


_IDS: list[tuple[int, int, str]] = []  # a new trace's ids and its traceparent less the flags, not handed out yet
_take_ids = _IDS.pop
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_IDS.clear)


def fresh_ids() -> tuple[int, int, str]:
    """A new trace's ids as numbers (trace id, span id: random, never all zero) and the start of its
    ``traceparent``, ``"00-<trace id>-<span id>-"``, for the flags to end: what an SDK's random id
    generator would draw, for the light spans (``govrpc.trace.spans``), made 256 at a time as
    ``fresh_traceparent``'s headers are, for the same reason."""
    try:
        return _take_ids()
    except IndexError:
        return _refill_ids()


def _refill_ids() -> tuple[int, int, str]:
    made = [(trace_id, span_id, f"00-{digits[:32]}-{digits[32:]}-") for trace_id, span_id, digits in _draws()]
    ids = made.pop()
    _IDS.extend(made)
    return ids


def ref_of(header: str) -> SpanRef:
    """The ``SpanRef`` a ``fresh_traceparent()`` header names (the consumer keeps the header alone)."""
    return SpanRef(header[3:35], header[36:52], header[53:55])


class SpanRef(NamedTuple):
    """One hop of a trace as govrpc carries it without an SDK."""

    trace_id: str
    span_id: str
    flags: str = "01"
    tracestate: str = ""
    baggage: str = ""

    def child(self) -> SpanRef:
        """The same trace, a new span id (the next hop)."""
        return SpanRef(self.trace_id, fresh_traceparent()[36:52], self.flags, self.tracestate, self.baggage)

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def inject(self, carrier: dict[str, str]) -> None:
        """Write this span as the parent of the call ``carrier`` (gRPC metadata) belongs to."""
        carrier[TRACEPARENT] = f"00-{self.trace_id}-{self.span_id}-{self.flags}"
        if self.tracestate:
            carrier[TRACESTATE] = self.tracestate
        if self.baggage:
            carrier[BAGGAGE] = self.baggage


_FORM = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}").fullmatch  # one C call: a fraction of a µs


def valid_form(value: str | None) -> bool:
    """Whether ``value`` is a version-00 ``traceparent``'s shape: ``00-``, 32, 16 and 2 lowercase hex
    digits between dashes (the ids may still be all zeros)."""
    return type(value) is str and _FORM(value) is not None  # bytes or another type: not a header


def parse_traceparent(value: str | None) -> tuple[str, str, str] | None:
    """``(trace_id, parent_span_id, flags)`` of a valid header (``valid_form``, ids not all zeros), else None."""
    if not valid_form(value):
        return None
    trace_id, span_id = value[3:35], value[36:52]  # type: ignore[index]
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id, value[53:55]  # type: ignore[index]


def extract(carrier: Mapping[str, str]) -> SpanRef | None:
    """The caller's span from gRPC metadata (as a parent: its id is the caller's), or None."""
    parsed = parse_traceparent(carrier.get(TRACEPARENT))
    if parsed is None:
        return None
    trace_id, span_id, flags = parsed
    state = carrier.get(TRACESTATE, "")
    baggage = carrier.get(BAGGAGE, "")
    return SpanRef(trace_id, span_id, flags, state if len(state) <= _MAX_HEADER else "",
                   baggage if len(baggage) <= _MAX_HEADER else "")


class Incoming:
    """A handled call's trace context as it arrived, read when the call first needs it.

    A provider without an SDK makes one per handled call (two slot writes, no parsing; its
    carrier is the call's attachments, or the request metadata itself on the server's direct path):
    most handled calls make no call of their own, and then nothing is parsed and no id
    is drawn. The first call it makes (or log record it writes) resolves it, once, into
    this hop's ``SpanRef``: the caller's trace continued with a new span id, or a fresh
    trace when the caller sent none or a malformed header. It reads as that ``SpanRef``.
    """

    __slots__ = ("carrier", "span")

    carrier: Mapping[str, str] | Sequence[tuple[str, Any]]  # attachments, or the request's metadata pairs
    span: SpanRef | None

    def resolve(self) -> SpanRef:
        span = self.span
        if span is None:
            carrier = self.carrier
            if not isinstance(carrier, dict):
                carrier = dict(carrier)
            parent = extract(carrier) if TRACEPARENT in carrier else None
            span = self.span = parent.child() if parent is not None else SpanRef(new_trace_id(), new_span_id())
        return span

    def child(self) -> SpanRef:
        return self.resolve().child()

    def inject(self, carrier: dict[str, str]) -> None:
        self.resolve().inject(carrier)

    @property
    def trace_id(self) -> str:
        return self.resolve().trace_id

    @property
    def span_id(self) -> str:
        return self.resolve().span_id


def incoming(carrier: Mapping[str, str]) -> Incoming:
    """An ``Incoming`` for ``carrier`` (the provider filter builds one inline: no frame)."""
    made = object.__new__(Incoming)
    made.carrier, made.span = carrier, None
    return made


Current = Union[SpanRef, Incoming, str, None]
"""What ``_CURRENT`` holds: a hop's ``SpanRef``, a handled call's ``Incoming``, or the
``traceparent`` a consumer sent for a trace it started (a string: nothing more to keep)."""

_CURRENT: contextvars.ContextVar[Current] = contextvars.ContextVar("govrpc_trace", default=None)


def as_ref(current: Current) -> SpanRef | None:
    """``current`` (a value of ``_CURRENT``) as the ``SpanRef`` it stands for."""
    if current is None or isinstance(current, SpanRef):
        return current
    if isinstance(current, str):
        return ref_of(current)
    return current.resolve()


def current_span_ref() -> SpanRef | None:
    """The span of the call being handled in this context when no SDK records, or None."""
    return as_ref(_CURRENT.get())
