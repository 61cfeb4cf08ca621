"""govrpc.trace.w3c without an SDK: fresh traceparent headers, and the consumer's current context."""

from __future__ import annotations

import os
from typing import Any

import pytest

from govrpc.invocation import Invocation, Invoker
from govrpc.trace import current_ids, w3c
from govrpc.trace.filter import TraceFilter
from govrpc.url import URL, ServiceKey


def test_fresh_headers_are_valid_and_distinct_across_batches() -> None:
    headers = [w3c.fresh_traceparent() for _ in range(3 * w3c._BATCH + 7)]
    assert len(set(headers)) == len(headers)
    assert len({h[3:35] for h in headers}) == len(headers) and len({h[36:52] for h in headers}) == len(headers)
    for header in headers:
        assert w3c.parse_traceparent(header) == (header[3:35], header[36:52], "01")


def test_a_draw_with_an_all_zero_id_is_never_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter([0, 1 << 64, 1, (7 << 64) | 9] + [(5 << 64) | 3] * w3c._BATCH)  # zero trace, zero span, ...
    monkeypatch.setattr(w3c, "_randbits", lambda bits: next(draws))
    monkeypatch.setattr(w3c, "_FRESH", [])
    monkeypatch.setattr(w3c, "_take_fresh", w3c._FRESH.pop)
    made = [w3c.fresh_traceparent() for _ in range(w3c._BATCH)]
    assert all(w3c.parse_traceparent(h) is not None for h in made)
    assert f"00-{'0' * 31}7-{'0' * 15}9-01" in made and not any(h[3:35] == "0" * 32 for h in made)


def test_fresh_ids_are_numbers_their_header_names_never_zero_and_distinct_across_batches(
        monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = [w3c.fresh_ids() for _ in range(2 * w3c._BATCH + 3)]
    assert len({trace_id for trace_id, _, _ in drawn}) == len({span_id for _, span_id, _ in drawn}) == len(drawn)
    for trace_id, span_id, start in drawn:
        assert start == f"00-{trace_id:032x}-{span_id:016x}-" and trace_id and span_id
    draws = iter([0, 1 << 64, (7 << 64) | 9] + [(5 << 64) | 3] * w3c._BATCH)  # zero trace id, zero span id, ...
    monkeypatch.setattr(w3c, "_randbits", lambda bits: next(draws))
    monkeypatch.setattr(w3c, "_IDS", [])
    monkeypatch.setattr(w3c, "_take_ids", w3c._IDS.pop)
    made = [w3c.fresh_ids() for _ in range(w3c._BATCH)]
    assert (7, 9, f"00-{'0' * 31}7-{'0' * 15}9-") in made and all(t and s for t, s, _ in made)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("draw", [w3c.fresh_traceparent, lambda: w3c.fresh_ids()[2]], ids=["headers", "ids"])
def test_a_forked_child_does_not_send_its_parents_next_ids(draw: Any) -> None:
    draw()  # the batch is made: the rest waits in the pool
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, draw().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) >= 52 and child[:52] != draw()[:52]


class _Seen(Invoker):
    """The provider end of the chain: what the call sends, and what the consumer's context says meanwhile."""

    def __init__(self, then: Any = None) -> None:
        self.url = URL.parse("grpc://127.0.0.1:1/x.Echo")
        self.then = then
        self.seen: list[tuple[Any, ...]] = []

    def invoke(self, invocation: Invocation) -> Any:
        self.seen.append((invocation.attachments["traceparent"], current_ids(), w3c.current_span_ref()))
        return self.then() if self.then is not None else None


def _call(trace: Any, invoker: Invoker) -> Any:
    return trace.invoke(invoker, Invocation(ServiceKey("x.Echo"), "echo", (), {}, {}))


def test_while_a_call_that_started_a_trace_runs_its_ids_are_current_and_a_nested_call_is_its_child() -> None:
    trace = TraceFilter().bind(URL.parse("consumer://127.0.0.1/x.Echo"))
    inner = _Seen()
    outer = _Seen(then=lambda: _call(trace, inner))
    _call(trace, outer)
    (header, ids, ref), = outer.seen
    assert ids == (header[3:35], header[36:52])  # the logs of this context name what the provider gets
    assert ref == w3c.SpanRef(header[3:35], header[36:52], "01")
    (nested, nested_ids, _), = inner.seen
    assert nested[3:35] == header[3:35] and nested[36:52] != header[36:52] == ids[1]
    assert nested_ids == (nested[3:35], nested[36:52])
    assert current_ids() == ("", "") and w3c.current_span_ref() is None  # outside the call again


def test_a_traceparent_that_is_not_text_is_no_header_on_either_path() -> None:
    """A carrier value of another type (bytes, a number) gives a fresh trace, not an error."""
    from govrpc.trace import otel

    header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert w3c.parse_traceparent(header) is not None and otel.remote_parent({"traceparent": header}) is not None
    for value in (header.encode(), 55, None):
        assert w3c.parse_traceparent(value) is None  # type: ignore[arg-type]
        assert otel.remote_parent({"traceparent": value}) is None
