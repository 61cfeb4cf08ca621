"""``govrpc trace report`` on a generated workload whose numbers are known exactly."""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest

from govrpc.cli import main
from govrpc.trace.report import SpanRow, analyse, read_spans, render_dot, write_graph

T0 = 1_700_000_000 * 10**9
MS = 10**6
_ids = iter(range(1, 10**6))


def _id(width: int) -> str:
    return f"{next(_ids):0{width}x}"


def _span(trace: str, parent: str, kind: str, service: str, method: str, start: int, ms: float,
          error: bool = False, **attrs: Any) -> dict[str, Any]:
    return {"trace_id": trace, "span_id": _id(16), "parent_span_id": parent, "name": f"/{service}/{method}",
            "kind": kind, "start_time_unix_nano": start, "end_time_unix_nano": start + int(ms * MS),
            "status": "ERROR" if error else "UNSET",
            "attributes": {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method,
                           "rpc.grpc.status_code": 14 if error else 0, **attrs}}


def _otlp(span: dict[str, Any], service_name: str) -> dict[str, Any]:
    def value(v: Any) -> dict[str, Any]:
        return {"intValue": str(v)} if isinstance(v, int) else {"stringValue": str(v)}

    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service_name}}]},
        "scopeSpans": [{"scope": {"name": "x"}, "spans": [{
            "traceId": span["trace_id"], "spanId": span["span_id"], "parentSpanId": span["parent_span_id"],
            "name": span["name"], "kind": 3 if span["kind"] == "CLIENT" else 2,
            "startTimeUnixNano": str(span["start_time_unix_nano"]), "endTimeUnixNano": str(span["end_time_unix_nano"]),
            "attributes": [{"key": k, "value": value(v)} for k, v in span["attributes"].items()],
            "status": {"code": 2 if span["status"] == "ERROR" else 0}}]}]}]}


def _write(path: Any, rows: list[Any], corrupt: bool = False) -> str:
    rows.sort(key=lambda r: r.get("end_time_unix_nano") or
              int(r["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["endTimeUnixNano"]))
    with open(path, "w", encoding="utf-8") as f:
        for i, row in enumerate(rows):
            f.write(json.dumps(row) + "\n")
            if corrupt and i == 3:
                f.write('{"trace_id": "broken\n')
    return str(path)


@pytest.fixture
def workload(tmp_path: Any) -> list[str]:
    """web -> A.get (100 calls, 5 failing, 10 slow; A.get -> B.find each; one retry) and
    mobile -> A.get (50 calls, from an OTLP collector file, no further call)."""
    web, a, b, mobile = [], [], [], []
    for i in range(100):
        start, trace = T0 + i * 100 * MS, _id(32)
        ms = 30 if i >= 90 else 10
        client = _span(trace, "", "CLIENT", "demo.A", "get", start, ms, error=i >= 95, **{"govrpc.application": "web"})
        web.append(client)
        if i == 0:
            web.append(_span(trace, client["span_id"], "CLIENT", "demo.A", "get", start + 1 * MS, 1,
                             **{"govrpc.application": "web", "govrpc.attempt": 2}))
        server = _span(trace, client["span_id"], "SERVER", "demo.A", "get", start + 1 * MS, ms - 2, error=i >= 95)
        inner = _span(trace, server["span_id"], "CLIENT", "demo.B", "find", start + 1 * MS, 7,
                      **{"govrpc.application": "app-A"})
        a += [server, inner]
        b.append(_span(trace, inner["span_id"], "SERVER", "demo.B", "find", start + 2 * MS, 4.5))
    for j in range(50):
        start, trace = T0 + j * 150 * MS, _id(32)
        client = _span(trace, "", "CLIENT", "demo.A", "get", start, 20)
        mobile.append(_otlp(client, "mobile"))
        a.append(_span(trace, client["span_id"], "SERVER", "demo.A", "get", start + 1 * MS, 18))
    return [_write(tmp_path / "web.jsonl", web, corrupt=True), _write(tmp_path / "a.jsonl", a),
            _write(tmp_path / "b.jsonl", b), _write(tmp_path / "mobile.otlp.json", mobile)]


SECONDS = 9.93  # first start T0, last end: call 99 at 9.9 s lasting 30 ms


def test_numbers_of_a_known_workload(workload: list[str]) -> None:
    data = analyse(workload).as_dict()
    assert data["spans"] == 100 * 4 + 1 + 50 * 2 and data["skipped_lines"] == 1 and data["traces"] == 150
    assert data["seconds"] == SECONDS
    edges = {(r["caller"], r["service"], r["method"]): r for r in data["dependencies"]}
    assert set(edges) == {("web", "demo.A", "get"), ("app-A", "demo.B", "find"), ("mobile", "demo.A", "get")}
    web = edges["web", "demo.A", "get"]
    assert (web["calls"], web["errors"], web["retries"], web["error_rate"]) == (100, 5, 1, 0.05)
    assert (web["p50_ms"], web["p99_ms"], web["qps"]) == (10.0, 30.0, round(100 / SECONDS, 3))
    inner = edges["app-A", "demo.B", "find"]
    assert (inner["calls"], inner["errors"], inner["p50_ms"], inner["p99_ms"]) == (100, 0, 7.0, 7.0)
    mobile = edges["mobile", "demo.A", "get"]
    assert (mobile["calls"], mobile["p50_ms"], mobile["qps"]) == (50, 20.0, round(50 / SECONDS, 3))
    assert [r["caller"] for r in data["top_consumers"]["demo.A"]] == ["web", "mobile"]
    assert [r["calls"] for r in data["top_consumers"]["demo.A"]] == [100, 50]
    assert data["top_consumers"]["demo.B"][0]["caller"] == "app-A"
    paths = {r["path"]: r for r in data["slowest_paths"]}
    deep = paths["web > demo.A/get > demo.B/find"]
    assert (deep["calls"], deep["p99_ms"], deep["bottleneck"], deep["bottleneck_self_ms"]) == \
        (100, 30.0, "demo.B/find", 7.0)
    assert paths["mobile > demo.A/get"]["calls"] == 50
    assert data["slowest_paths"][0]["path"] == "web > demo.A/get > demo.B/find"


def test_a_small_window_still_counts_every_call(workload: list[str]) -> None:
    data = analyse(workload, window=8).as_dict()
    edges = {(r["caller"], r["service"], r["method"]): r["calls"] for r in data["dependencies"]}
    assert edges[("web", "demo.A", "get")] == 100 and edges[("mobile", "demo.A", "get")] == 50


def test_cli_report_json_text_and_picture(workload: list[str], tmp_path: Any, capsys: Any) -> None:
    assert main(["trace", "report", *workload, "--json", "--graph", str(tmp_path / "deps.dot")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["skipped_lines"] == 1
    dot = (tmp_path / "deps.dot").read_text()
    assert dot.startswith("digraph govrpc") and '"web" -> "demo.A"' in dot and '"app-A" -> "demo.B"' in dot
    assert main(["trace", "report", *workload]) == 0
    text = capsys.readouterr().out
    assert "web -> demo.A/get" in text and "1 corrupt line(s) skipped" in text
    if shutil.which("dot"):
        assert main(["trace", "report", *workload, "--graph", str(tmp_path / "deps.svg")]) == 0
        assert (tmp_path / "deps.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    assert render_dot(data) == dot


def test_bad_files_and_graph_paths_give_clear_errors(workload: list[str], tmp_path: Any, capsys: Any) -> None:
    assert main(["trace", "report", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read span file" in capsys.readouterr().err
    with pytest.raises(Exception, match="must end in"):
        write_graph(analyse(workload).as_dict(), str(tmp_path / "deps.txt"))
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b"\x00\xffnot json\n[1,2]\n{}\n")
    data = analyse([str(garbage)]).as_dict()
    assert (data["spans"], data["skipped_lines"]) == (0, 3)


def _big_file(path: Any, calls: int, corrupt: dict[int, str]) -> str:
    """``calls`` traces web -> demo.A/get -> demo.B/find (4 spans each) as one process's lines,
    with the text of ``corrupt`` put in at those line numbers (1-based) of the file."""
    lines = []
    for i in range(calls):
        start, trace = T0 + i * MS, _id(32)
        client = _span(trace, "", "CLIENT", "demo.A", "get", start, 10, error=i % 100 == 0,
                       **{"govrpc.application": "web"})
        server = _span(trace, client["span_id"], "SERVER", "demo.A", "get", start + MS, 8)
        inner = _span(trace, server["span_id"], "CLIENT", "demo.B", "find", start + 2 * MS, 5,
                      **{"govrpc.application": "app-A"})
        leaf = _span(trace, inner["span_id"], "SERVER", "demo.B", "find", start + 3 * MS, 3)
        lines += [json.dumps(s, separators=(",", ":")) for s in (leaf, inner, server, client)]
    for number in sorted(corrupt):
        lines.insert(number - 1, corrupt[number])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_corrupt_lines_of_a_big_file_are_named_and_the_rest_analysed(tmp_path: Any, capsys: Any) -> None:
    bad = {
        7: "",                                                    # blank: no span, not corrupt either
        12_345: '{"trace_id": "0a", "span_id": "0b", "kind": "CLI',  # cut short, as a crash leaves it
        20_001: json.dumps({"trace_id": ["not", "a", "string"], "span_id": "1", "start_time_unix_nano": 1,
                            "end_time_unix_nano": 2}),           # crashed the report before
        30_000: '{"trace_id": "0c", "span_id": "0d"} trailing',  # two values on one line
        39_990: json.dumps({"trace_id": "0e", "span_id": "0f"}),  # no times
    }
    path = _big_file(tmp_path / "big.jsonl", 10_000, bad)
    report = analyse([path], window=1_000)
    assert (report.spans, report.skipped, report.traces) == (40_000, 4, 10_000)
    assert [(p, n) for p, n, _ in report.corrupt] == [(path, 12_345), (path, 20_001), (path, 30_000), (path, 39_990)]
    reasons = [reason for _, _, reason in report.corrupt]
    assert reasons[0].startswith("Invalid control character") and "must be strings" in reasons[1]
    assert "Extra data" in reasons[2] and "start_time_unix_nano" in reasons[3]
    data = report.as_dict()
    edges = {(r["caller"], r["service"], r["method"]): r for r in data["dependencies"]}
    assert (edges["web", "demo.A", "get"]["calls"], edges["web", "demo.A", "get"]["errors"]) == (10_000, 100)
    assert (edges["app-A", "demo.B", "find"]["calls"], edges["app-A", "demo.B", "find"]["p99_ms"]) == (10_000, 5.0)
    assert data["slowest_paths"][0]["path"] == "web > demo.A/get > demo.B/find"
    assert main(["trace", "report", path, "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == data  # stdout is the report alone; the places of the bad lines go to stderr
    assert f"{path} line 12345 skipped: Invalid control character" in err and f"{path} line 39990 skipped" in err


def test_every_corrupt_line_is_counted_and_the_first_ones_named(tmp_path: Any, capsys: Any) -> None:
    path = _big_file(tmp_path / "noisy.jsonl", 100, {n: "garbage" for n in range(1, 50, 2)})
    report = analyse([path])
    assert (report.spans, report.skipped, len(report.corrupt)) == (400, 25, 10)
    assert [n for _, n, _ in report.corrupt] == list(range(1, 20, 2))
    assert main(["trace", "report", path]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("400 spans in 100 traces") and "25 corrupt line(s) skipped" in out
    assert err.count(" skipped: ") == 10 and "15 more corrupt line(s) skipped" in err


def test_read_spans_gives_span_rows_merged_by_end(workload: list[str]) -> None:
    rows = list(read_spans(workload))
    assert len(rows) == 501 and all(isinstance(r, SpanRow) for r in rows)
    assert [r.end for r in rows] == sorted(r.end for r in rows)
    retry = next(r for r in rows if r.attempt == 2)
    assert (retry.kind, retry.label, retry.caller, len(retry.trace_id)) == ("CLIENT", "demo.A/get", "web", 32)
