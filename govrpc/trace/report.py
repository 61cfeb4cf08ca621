"""``govrpc trace report``: dependencies, top consumers and slow call paths from collected spans.

Reads span files as they are collected: govrpc's own JSON lines
(``JsonLinesSpanExporter``) and the OTLP JSON lines of the OpenTelemetry Collector's
file exporter (``{"resourceSpans": [...]}`` per line), plain or gzip. Several files
(one per process) are merged by span end time, so the spans of one trace arrive
together; traces are assembled in a window of at most ``window`` spans (the oldest
trace is analysed when it is full), which bounds memory whatever the input size.
Latency quantiles are exact up to ``SAMPLES`` calls per edge and from a uniform
reservoir beyond. A line that does not parse is skipped and counted, never fatal.

An edge is ``caller -> service/method``: each CLIENT span of an RPC (its caller is
the span's ``govrpc.application``, else its resource's ``service.name``), and each
SERVER span whose client side was not collected (caller ``govrpc.caller``, else
``?``). A retry attempt (``govrpc.attempt``) is counted as a retry of its call, not
as a call. A call path is the chain of ``service/method`` hops from a trace's root
to one of its leaves; its bottleneck is the hop with the largest self time.
"""

from __future__ import annotations

import dataclasses
import gzip
import heapq
import json
import math
import random
import shutil
import subprocess
from collections import OrderedDict
from typing import IO, Any, Iterable, Iterator

from govrpc.exceptions import ConfigurationError

__all__ = ["SAMPLES", "Report", "SpanRow", "analyse", "read_spans", "render_dot", "render_text", "write_graph"]

SAMPLES = 100_000
WINDOW = 200_000
_OTLP_KINDS = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


@dataclasses.dataclass(slots=True)
class SpanRow:
    """What the analysis keeps of one span."""

    trace_id: str
    span_id: str
    parent_id: str
    kind: str
    service: str   # rpc.service ("" for a span that is no RPC)
    method: str
    caller: str    # the calling application, as far as the span tells
    start: int     # ns since the epoch
    end: int
    error: bool
    attempt: int   # govrpc.attempt of a retry span, else 0

    @property
    def label(self) -> str:
        return f"{self.service}/{self.method}" if self.service else ""


def _row(trace_id: str, span_id: str, parent: str, kind: str, attrs: dict[str, Any], resource: dict[str, Any],
         start: int, end: int, status_error: bool) -> SpanRow:
    code = attrs.get("rpc.grpc.status_code")
    error = status_error or (code is not None and int(code) != 0)
    caller = str(attrs.get("govrpc.application") or "") if kind == "CLIENT" else str(attrs.get("govrpc.caller") or "")
    if not caller and kind == "CLIENT":
        caller = str(resource.get("service.name") or "")
    return SpanRow(trace_id, span_id, parent or "", kind, str(attrs.get("rpc.service") or ""),
                   str(attrs.get("rpc.method") or ""), caller, int(start), int(end), error,
                   int(attrs.get("govrpc.attempt") or 0))


def _otlp_value(value: dict[str, Any]) -> Any:
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        return int(value["intValue"])
    if "arrayValue" in value:
        return [_otlp_value(v) for v in value["arrayValue"].get("values", ())]
    return None


def _otlp_attrs(items: Iterable[dict[str, Any]] | None) -> dict[str, Any]:
    return {a["key"]: _otlp_value(a.get("value") or {}) for a in items or ()}


def _rows_of_line(data: Any) -> list[SpanRow]:
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if "resourceSpans" in data:
        rows = []
        for resource_spans in data["resourceSpans"]:
            resource = _otlp_attrs((resource_spans.get("resource") or {}).get("attributes"))
            for scope in resource_spans.get("scopeSpans", ()):
                for span in scope.get("spans", ()):
                    kind = span.get("kind", 0)
                    kind = _OTLP_KINDS.get(kind, str(kind)) if isinstance(kind, int) else \
                        str(kind).replace("SPAN_KIND_", "")
                    status = (span.get("status") or {}).get("code", 0)
                    rows.append(_row(span["traceId"].lower(), span["spanId"].lower(),
                                     (span.get("parentSpanId") or "").lower(), kind,
                                     _otlp_attrs(span.get("attributes")), resource,
                                     int(span["startTimeUnixNano"]), int(span["endTimeUnixNano"]),
                                     status in (2, "STATUS_CODE_ERROR")))
        return rows
    return [_row(data["trace_id"], data["span_id"], data.get("parent_span_id", ""), data.get("kind", ""),
                 data.get("attributes") or {}, data.get("resource") or {}, data["start_time_unix_nano"],
                 data["end_time_unix_nano"], data.get("status") == "ERROR")]


class _Counter:
    skipped = 0
    spans = 0


def _open(path: str) -> IO[str]:
    try:
        with open(path, "rb") as probe:
            gz = probe.read(2) == b"\x1f\x8b"
        if gz:
            return gzip.open(path, "rt", encoding="utf-8", errors="replace")
        return open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed by the reader
    except OSError as exc:
        raise ConfigurationError(f"cannot read span file {path}: {exc}") from exc


def _file_rows(path: str, counter: _Counter) -> Iterator[tuple[int, int, SpanRow]]:
    with _open(path) as f:
        for line in f:
            if not line.strip():
                continue
            try:
                rows = _rows_of_line(json.loads(line))
            except (ValueError, KeyError, TypeError, AttributeError):
                counter.skipped += 1
                continue
            for row in rows:
                counter.spans += 1
                yield row.end, counter.spans, row


def read_spans(paths: Iterable[str], counter: _Counter | None = None) -> Iterator[SpanRow]:
    """Spans of every file, merged by end time (each file is in about that order already)."""
    counter = counter or _Counter()
    for _end, _n, row in heapq.merge(*(_file_rows(p, counter) for p in paths)):
        yield row


class _Stats:
    """Calls, errors, retries and a bounded sample of latencies (ms)."""

    __slots__ = ("calls", "errors", "retries", "samples", "seen", "_random")

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self.retries = 0
        self.samples: list[float] = []
        self.seen = 0
        self._random = random.Random(12)

    def add(self, ms: float, error: bool) -> None:
        self.calls += 1
        self.errors += error
        self.seen += 1
        if len(self.samples) < SAMPLES:
            self.samples.append(ms)
        else:  # reservoir: every call equally likely to be kept
            slot = self._random.randrange(self.seen)
            if slot < SAMPLES:
                self.samples[slot] = ms

    def quantile(self, q: float) -> float:
        if not self.samples:
            return 0.0
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    def summary(self, seconds: float) -> dict[str, Any]:
        return {"calls": self.calls, "errors": self.errors, "retries": self.retries,
                "qps": round(self.calls / seconds, 3) if seconds > 0 else 0.0,
                "error_rate": round(self.errors / self.calls, 6) if self.calls else 0.0,
                "p50_ms": round(self.quantile(0.50), 3), "p99_ms": round(self.quantile(0.99), 3)}


@dataclasses.dataclass
class Report:
    spans: int = 0
    skipped: int = 0
    traces: int = 0
    first: int = 0
    last: int = 0
    edges: dict[tuple[str, str, str], _Stats] = dataclasses.field(default_factory=dict)
    consumers: dict[tuple[str, str], _Stats] = dataclasses.field(default_factory=dict)
    paths: dict[str, _Stats] = dataclasses.field(default_factory=dict)
    bottlenecks: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return (self.last - self.first) / 1e9 if self.last > self.first else 0.0

    def as_dict(self, top: int = 10) -> dict[str, Any]:
        seconds = self.seconds
        edges = [{"caller": c, "service": s, "method": m, **st.summary(seconds)}
                 for (c, s, m), st in sorted(self.edges.items())]
        by_service: dict[str, list[dict[str, Any]]] = {}
        for (service, caller), st in self.consumers.items():
            by_service.setdefault(service, []).append({"caller": caller, **st.summary(seconds)})
        consumers = {s: sorted(rows, key=lambda r: (-r["calls"], r["caller"]))[:top]
                     for s, rows in sorted(by_service.items())}
        paths = []
        for path, st in self.paths.items():
            hops = self.bottlenecks.get(path, {})
            neck = max(sorted(hops), key=lambda h: hops[h]) if hops else ""
            paths.append({"path": path, **st.summary(seconds), "bottleneck": neck,
                          "bottleneck_self_ms": round(hops.get(neck, 0.0) / max(st.calls, 1), 3)})
        paths.sort(key=lambda r: (-r["p99_ms"], r["path"]))
        return {"spans": self.spans, "skipped_lines": self.skipped, "traces": self.traces,
                "seconds": round(seconds, 3), "dependencies": edges, "top_consumers": consumers,
                "slowest_paths": paths[:top]}


def _stats(table: dict[Any, _Stats], key: Any) -> _Stats:
    stats = table.get(key)
    if stats is None:
        stats = table[key] = _Stats()
    return stats


def _finish_trace(report: Report, rows: list[SpanRow]) -> None:
    report.traces += 1
    by_id = {r.span_id: r for r in rows}
    children: dict[str, list[SpanRow]] = {}
    for r in rows:
        children.setdefault(r.parent_id, []).append(r)
    for r in rows:
        if not r.service or r.kind not in ("CLIENT", "SERVER"):
            continue
        ms = (r.end - r.start) / 1e6
        parent = by_id.get(r.parent_id)
        if r.kind == "CLIENT":
            if r.attempt >= 2 and parent is not None and parent.kind == "CLIENT":
                _stats(report.edges, (parent.caller or "?", r.service, r.method)).retries += 1
                continue
            caller = r.caller or "?"
        elif parent is not None and parent.kind == "CLIENT":
            continue  # its client span counted the call
        else:
            caller = r.caller or "?"
        _stats(report.edges, (caller, r.service, r.method)).add(ms, r.error)
        _stats(report.consumers, (r.service, caller)).add(ms, r.error)
    # call paths: root to each leaf, hops named service/method, a client and its server span one hop
    roots = [r for r in rows if r.parent_id not in by_id]
    for root in roots:
        # (span, hop labels, self ms per hop); a client span and its server span make one hop
        stack: list[tuple[SpanRow, tuple[str, ...], tuple[float, ...]]] = [(root, (), ())]
        while stack:
            span, hops, selfs = stack.pop()
            kids = children.get(span.span_id, [])
            if span.attempt >= 2 and not kids:
                continue  # a retry that reached no provider: counted as a retry of its call
            own = ((span.end - span.start) - sum(k.end - k.start for k in kids)) / 1e6  # a client's own: the wire
            label = span.label
            if label and (not hops or hops[-1] != label):
                hops, selfs = hops + (label,), selfs + (own,)
            elif label and selfs:
                selfs = selfs[:-1] + (selfs[-1] + own,)
            if kids:
                stack.extend((kid, hops, selfs) for kid in kids)
                continue
            if hops:
                key = " > ".join(((root.caller,) if root.caller else ()) + hops)
                _stats(report.paths, key).add((root.end - root.start) / 1e6, root.error)
                necks = report.bottlenecks.setdefault(key, {})
                for hop, ms in zip(hops, selfs):
                    necks[hop] = necks.get(hop, 0.0) + max(ms, 0.0)


def analyse(paths: Iterable[str], *, window: int = WINDOW) -> Report:
    """Read every span of ``paths`` and aggregate them (memory bounded by ``window`` spans)."""
    if window < 1:
        raise ConfigurationError(f"window must be at least 1 span, not {window}")
    report = Report()
    counter = _Counter()
    pending: OrderedDict[str, list[SpanRow]] = OrderedDict()
    held = 0
    for row in read_spans(list(paths), counter):
        if not report.first or row.start < report.first:
            report.first = row.start
        if row.end > report.last:
            report.last = row.end
        rows = pending.get(row.trace_id)
        if rows is None:
            rows = pending[row.trace_id] = []
        else:
            pending.move_to_end(row.trace_id)
        rows.append(row)
        held += 1
        while held > window:
            _tid, oldest = pending.popitem(last=False)
            held -= len(oldest)
            _finish_trace(report, oldest)
    for rows in pending.values():
        _finish_trace(report, rows)
    report.spans, report.skipped = counter.spans, counter.skipped
    return report


def render_text(data: dict[str, Any]) -> str:
    """The report as tables for a terminal."""
    out = [f"{data['spans']} spans in {data['traces']} traces over {data['seconds']} s"
           + (f"; {data['skipped_lines']} corrupt line(s) skipped" if data["skipped_lines"] else "")]
    head = f"{'calls':>8} {'qps':>9} {'err%':>7} {'p50 ms':>9} {'p99 ms':>9} {'retries':>7}"

    def nums(r: dict[str, Any]) -> str:
        return (f"{r['calls']:>8} {r['qps']:>9.2f} {100 * r['error_rate']:>7.2f} {r['p50_ms']:>9.3f} "
                f"{r['p99_ms']:>9.3f} {r['retries']:>7}")

    out += ["", "Dependencies (caller -> service/method)", f"{head}  edge"]
    out += [f"{nums(r)}  {r['caller']} -> {r['service']}/{r['method']}" for r in data["dependencies"]]
    out += ["", "Top consumers of each service"]
    for service, rows in data["top_consumers"].items():
        out += [f"  {service}", f"  {head}  caller"]
        out += [f"  {nums(r)}  {r['caller']}" for r in rows]
    out += ["", "Slowest call paths (by p99)", f"{head}  path  [bottleneck: self ms per call]"]
    out += [f"{nums(r)}  {r['path']}  [{r['bottleneck']}: {r['bottleneck_self_ms']}]" for r in data["slowest_paths"]]
    return "\n".join(out) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_dot(data: dict[str, Any]) -> str:
    """The dependency graph in Graphviz's DOT: applications and services as nodes, calls as edges."""
    lines = ["digraph govrpc {", "  rankdir=LR;", '  node [shape=box, style=rounded, fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=10];']
    edges: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in data["dependencies"]:
        edges.setdefault((r["caller"], r["service"]), []).append(r)
    for (caller, service), rows in sorted(edges.items()):
        calls = sum(r["calls"] for r in rows)
        errors = sum(r["errors"] for r in rows)
        p99 = max(r["p99_ms"] for r in rows)
        label = "\\n".join(f"{r['method']}: {r['calls']} calls, {r['qps']:.1f}/s, p99 {r['p99_ms']:.1f} ms"
                           for r in rows)
        color = "red" if calls and errors / calls > 0.01 else "black"
        lines.append(f"  {_quote(caller)} -> {_quote(service)} [label={_quote(label)}, color={color}, "
                     f"penwidth={1 + min(4.0, math.log10(calls + 1)):.2f}, tooltip={_quote(f'p99 {p99} ms')}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_graph(data: dict[str, Any], path: str) -> None:
    """Write the dependency graph to ``path``: DOT for ``.dot``/``.gv``, SVG or PNG through Graphviz."""
    dot = render_dot(data)
    fmt = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if fmt in ("dot", "gv"):
        with open(path, "w", encoding="utf-8") as f:
            f.write(dot)
        return
    if fmt not in ("svg", "png"):
        raise ConfigurationError(f"--graph {path}: the file must end in .dot, .gv, .svg or .png")
    program = shutil.which("dot")
    if program is None:
        raise ConfigurationError(f"--graph {path}: drawing {fmt.upper()} needs Graphviz's 'dot' "
                                 f"(apt-get install graphviz), or write a .dot file instead")
    done = subprocess.run([program, f"-T{fmt}", "-o", path], input=dot.encode(), capture_output=True,
                          timeout=120, check=False)
    if done.returncode != 0:
        raise ConfigurationError(f"--graph {path}: dot failed: {done.stderr.decode(errors='replace')[:500]}")
