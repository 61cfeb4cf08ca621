"""``govrpc trace report``: dependencies, top consumers and slow call paths from collected spans.

Reads span files as they are collected: govrpc's own JSON lines
(``JsonLinesSpanExporter``) and the OTLP JSON lines of the OpenTelemetry Collector's
file exporter (``{"resourceSpans": [...]}`` per line), plain or gzip. Several files
(one per process) are merged by span end time, so the spans of one trace arrive
together; traces are assembled in a window of at most ``window`` spans (the oldest
trace is analysed when it is full), which bounds memory whatever the input size:
files are read a line at a time, a span held in the window is a tuple of its ids,
names (shared strings), times and outcome (about 400 bytes), and a latency sample is
8 bytes. Latency quantiles are exact up to ``SAMPLES`` calls per edge and from a
uniform reservoir beyond. A line that does not parse is skipped and counted, never
fatal; the first ``CORRUPT_SHOWN`` are kept with their file, line number and reason.

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
from array import array
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


# What the analysis holds of one span while its trace is assembled: a plain tuple, cheaper to make
# and to hold than an object (SpanRow's fields but the trace id, which is the window's key):
# (span_id, parent_id, kind, service, method, caller, start, end, error, attempt)
_Row = tuple
_SHARED_MAX = 4096  # distinct kind/service/method/caller strings shared per run


def _row(trace_id: Any, span_id: Any, parent: Any, kind: Any, attrs: dict[str, Any], resource: dict[str, Any],
         start: Any, end: Any, status_error: bool, shared: dict[str, str]) -> tuple[str, _Row]:
    """(trace id, row) of one span; raises ValueError, KeyError, TypeError or AttributeError for a bad one."""
    code = attrs.get("rpc.grpc.status_code")
    error = status_error or (code is not None and int(code) != 0)
    kind = str(kind)
    if kind == "CLIENT":
        caller = str(attrs.get("govrpc.application") or "") or str(resource.get("service.name") or "")
    else:
        caller = str(attrs.get("govrpc.caller") or "")
    # the same few names on every span: one string each, not one per span held in the window
    service, method = str(attrs.get("rpc.service") or ""), str(attrs.get("rpc.method") or "")
    if len(shared) < _SHARED_MAX:
        kind, service = shared.setdefault(kind, kind), shared.setdefault(service, service)
        method, caller = shared.setdefault(method, method), shared.setdefault(caller, caller)
    parent = parent or ""
    if type(trace_id) is not str or type(span_id) is not str or type(parent) is not str:
        raise TypeError("trace_id, span_id and parent_span_id must be strings")
    return trace_id, (span_id, parent, kind, service, method, caller, int(start), int(end), error,
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


def _rows_of_line(data: Any, shared: dict[str, str]) -> list[tuple[str, _Row]]:
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
                                     status in (2, "STATUS_CODE_ERROR"), shared))
        return rows
    return [_row(data["trace_id"], data["span_id"], data.get("parent_span_id", ""), data.get("kind", ""),
                 data.get("attributes") or {}, data.get("resource") or {}, data["start_time_unix_nano"],
                 data["end_time_unix_nano"], data.get("status") == "ERROR", shared)]


CORRUPT_SHOWN = 10  # corrupt lines kept with their place and reason (all are counted)


class _Counter:
    """Spans read and lines skipped (the first ``CORRUPT_SHOWN`` of them with file, line and reason)."""

    def __init__(self) -> None:
        self.skipped = 0
        self.spans = 0
        self.corrupt: list[tuple[str, int, str]] = []
        self.shared: dict[str, str] = {}

    def skip(self, path: str, number: int, line: str, exc: Exception) -> None:
        if not line.strip():
            return  # a blank line is no span and no damage
        self.skipped += 1
        if len(self.corrupt) < CORRUPT_SHOWN:
            reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc) or type(exc).__name__
            self.corrupt.append((path, number, reason[:200]))


def _open(path: str) -> IO[str]:
    try:
        with open(path, "rb") as probe:
            gz = probe.read(2) == b"\x1f\x8b"
        if gz:
            return gzip.open(path, "rt", encoding="utf-8", errors="replace")
        return open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed by the reader
    except OSError as exc:
        raise ConfigurationError(f"cannot read span file {path}: {exc}") from exc


_decode = json.JSONDecoder().raw_decode  # json.loads without its two whitespace scans per line


def _file_rows(path: str, counter: _Counter) -> Iterator[tuple[int, int, str, _Row]]:
    """(end, order read, trace id, row) of every span of ``path``, one line in memory at a time."""
    shared = counter.shared
    with _open(path) as f:
        for number, line in enumerate(f, 1):
            try:
                try:
                    data, end = _decode(line)
                    if end != len(line) and line[end:].strip():
                        raise json.JSONDecodeError("Extra data", line, end)
                except ValueError:
                    data = json.loads(line)  # leading whitespace; else the error that names the problem
                if type(data) is dict and "resourceSpans" not in data:  # govrpc's own line: one span
                    trace, row = _row(data["trace_id"], data["span_id"], data.get("parent_span_id", ""),
                                      data.get("kind", ""), data.get("attributes") or {}, data.get("resource") or {},
                                      data["start_time_unix_nano"], data["end_time_unix_nano"],
                                      data.get("status") == "ERROR", shared)
                else:
                    for trace, row in _rows_of_line(data, shared):
                        counter.spans += 1
                        yield row[7], counter.spans, trace, row
                    continue
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                counter.skip(path, number, line, exc)
                continue
            counter.spans += 1
            yield row[7], counter.spans, trace, row


def _rows(paths: list[str], counter: _Counter) -> Iterator[tuple[int, int, str, _Row]]:
    if len(paths) == 1:  # one file is already in its own order: nothing to merge
        return _file_rows(paths[0], counter)
    return heapq.merge(*(_file_rows(p, counter) for p in paths))


def read_spans(paths: Iterable[str], counter: _Counter | None = None) -> Iterator[SpanRow]:
    """Spans of every file, merged by end time (each file is in about that order already)."""
    for _end, _n, trace, row in _rows(list(paths), counter or _Counter()):
        yield SpanRow(trace, *row)


class _Stats:
    """Calls, errors, retries and a bounded sample of latencies (ms), 8 bytes a sample."""

    __slots__ = ("calls", "errors", "retries", "samples", "_random")

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self.retries = 0
        self.samples = array("d")
        self._random: random.Random | None = None  # made when the reservoir is full

    def add(self, ms: float, error: bool) -> None:
        calls = self.calls = self.calls + 1
        if error:
            self.errors += 1
        if calls <= SAMPLES:
            self.samples.append(ms)
        else:  # reservoir: every call equally likely to be kept
            if self._random is None:
                self._random = random.Random(12)
            slot = self._random.randrange(calls)
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
    corrupt: list[tuple[str, int, str]] = dataclasses.field(default_factory=list)  # (file, line, reason)

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


def _finish_trace(report: Report, rows: list[_Row]) -> None:
    report.traces += 1
    by_id: dict[str, _Row] = {}
    children: dict[str, list[_Row]] = {}
    for r in rows:
        by_id[r[0]] = r
        kids = children.get(r[1])
        if kids is None:
            children[r[1]] = [r]
        else:
            kids.append(r)
    edges, consumers = report.edges, report.consumers
    for _span, parent_id, kind, service, method, caller, start, end, error, attempt in rows:
        if not service or (kind != "CLIENT" and kind != "SERVER"):
            continue
        parent = by_id.get(parent_id)
        if parent is not None and parent[2] == "CLIENT":
            if kind == "SERVER":
                continue  # its client span counted the call
            if attempt >= 2:
                _stats(edges, (parent[5] or "?", service, method)).retries += 1
                continue
        caller = caller or "?"
        ms = (end - start) / 1e6
        stats = edges.get((caller, service, method))
        if stats is None:
            stats = edges[caller, service, method] = _Stats()
        stats.add(ms, error)
        stats = consumers.get((service, caller))
        if stats is None:
            stats = consumers[service, caller] = _Stats()
        stats.add(ms, error)
    # call paths: root to each leaf, hops named service/method, a client and its server span one hop
    paths, bottlenecks = report.paths, report.bottlenecks
    for root in rows:
        if root[1] in by_id:
            continue
        prefix = f"{root[5]} > " if root[5] else ""
        # (span, hop labels, self ms per hop); a client span and its server span make one hop
        stack: list[tuple[_Row, tuple[str, ...], tuple[float, ...]]] = [(root, (), ())]
        while stack:
            span, hops, selfs = stack.pop()
            kids = children.get(span[0])
            if span[9] >= 2 and not kids:
                continue  # a retry that reached no provider: counted as a retry of its call
            took = span[7] - span[6]
            if kids:
                for kid in kids:
                    took -= kid[7] - kid[6]
            if span[3]:
                label = f"{span[3]}/{span[4]}"
                if not hops or hops[-1] != label:
                    hops, selfs = hops + (label,), selfs + (took / 1e6,)  # a client's own: the wire
                elif selfs:
                    selfs = selfs[:-1] + (selfs[-1] + took / 1e6,)
            if kids:
                if len(kids) == 1:
                    stack.append((kids[0], hops, selfs))
                else:
                    stack.extend([(kid, hops, selfs) for kid in kids])
                continue
            if hops:
                key = prefix + " > ".join(hops)
                stats = paths.get(key)
                if stats is None:
                    stats = paths[key] = _Stats()
                    bottlenecks[key] = {}
                stats.add((root[7] - root[6]) / 1e6, root[8])
                necks = bottlenecks[key]
                for hop, ms in zip(hops, selfs):
                    necks[hop] = necks.get(hop, 0.0) + (ms if ms > 0.0 else 0.0)


def analyse(paths: Iterable[str], *, window: int = WINDOW) -> Report:
    """Read every span of ``paths`` and aggregate them (memory bounded by ``window`` spans).

    Corrupt lines are skipped and counted (``Report.skipped``); the first ``CORRUPT_SHOWN``
    are kept in ``Report.corrupt`` as (file, line number, reason)."""
    if window < 1:
        raise ConfigurationError(f"window must be at least 1 span, not {window}")
    report = Report()
    counter = _Counter()
    # the traces being assembled, least recently grown first: the oldest is analysed when the window is full
    pending: OrderedDict[str, list[_Row]] = OrderedDict()
    touch, oldest = pending.move_to_end, pending.popitem
    first = last = held = 0
    for _end, _n, trace, row in _rows(list(paths), counter):
        start, end = row[6], row[7]
        if not first or start < first:
            first = start
        if end > last:
            last = end
        rows = pending.get(trace)
        if rows is None:
            pending[trace] = [row]
        else:
            touch(trace)
            rows.append(row)
        held += 1
        while held > window:
            done = oldest(last=False)[1]
            held -= len(done)
            _finish_trace(report, done)
    for rows in pending.values():
        _finish_trace(report, rows)
    report.first, report.last = first, last
    report.spans, report.skipped, report.corrupt = counter.spans, counter.skipped, counter.corrupt
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
