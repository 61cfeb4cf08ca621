"""The dependency graph of ``govrpc trace report`` drawn as inline SVG, with no Graphviz needed.

Nodes (applications and services) are placed in columns by their depth from the
callers that nobody calls; each edge is a line with an arrow, its width growing
with the calls, red when more than 1 % failed, labelled with calls/s and p99.
"""

from __future__ import annotations

import html
import math
from typing import Any, Mapping

__all__ = ["dependency_svg"]

_W, _H, _GAP_X, _GAP_Y, _PAD = 200, 34, 140, 26, 20


def _ranks(nodes: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    callers: dict[str, set[str]] = {n: set() for n in nodes}
    for a, b in edges:
        if a != b:
            callers[b].add(a)
    rank: dict[str, int] = {}
    for _ in range(len(nodes) + 1):  # longest-path layering, bounded: a cycle cannot loop forever
        changed = False
        for node in nodes:
            value = max((rank.get(c, 0) + 1 for c in callers[node]), default=0)
            value = min(value, len(nodes))
            if rank.get(node) != value:
                rank[node], changed = value, True
        if not changed:
            break
    return rank


def dependency_svg(report: Mapping[str, Any]) -> str:
    """An ``<svg>`` of ``report["dependencies"]`` (the rows of ``Report.as_dict()``)."""
    grouped: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in report.get("dependencies", ()):
        grouped.setdefault((str(row["caller"]), str(row["service"])), []).append(row)
    nodes = sorted({n for pair in grouped for n in pair})
    if not nodes:
        return '<p class="empty">no call in the spans</p>'
    rank = _ranks(nodes, list(grouped))
    columns: dict[int, list[str]] = {}
    for node in nodes:
        columns.setdefault(rank[node], []).append(node)
    place = {}
    for col, members in sorted(columns.items()):
        for row_index, node in enumerate(members):
            place[node] = (_PAD + col * (_W + _GAP_X), _PAD + row_index * (_H + _GAP_Y))
    width = _PAD * 2 + (max(columns) + 1) * (_W + _GAP_X) - _GAP_X
    height = _PAD * 2 + max(len(m) for m in columns.values()) * (_H + _GAP_Y) - _GAP_Y + 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="dependencies" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
             'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>']
    for (caller, service), rows in sorted(grouped.items()):
        calls = sum(int(r.get("calls", 0)) for r in rows)
        errors = sum(int(r.get("errors", 0)) for r in rows)
        qps = sum(float(r.get("qps", 0.0)) for r in rows)
        p99 = max(float(r.get("p99_ms", 0.0)) for r in rows)
        (x1, y1), (x2, y2) = place[caller], place[service]
        sx, sy, tx, ty = float(x1 + _W), y1 + _H / 2, float(x2), y2 + _H / 2
        if x2 <= x1:  # a call back to an earlier column: route below the boxes
            sx, sy, tx, ty = x1 + _W / 2, float(y1 + _H), x2 + _W / 2, float(y2 + _H)
        color = "#c0392b" if calls and errors / calls > 0.01 else "#555"
        stroke = 1 + min(4.0, math.log10(calls + 1))
        label = html.escape(f"{qps:.1f}/s, p99 {p99:.1f} ms" + (f", {errors} errors" if errors else ""))
        methods = html.escape(", ".join(sorted(str(r["method"]) for r in rows)))
        parts.append(f'<g class="edge" data-caller="{html.escape(caller)}" data-service="{html.escape(service)}">'
                     f'<title>{html.escape(caller)} -&gt; {html.escape(service)}: {methods}</title>'
                     f'<line x1="{sx:.0f}" y1="{sy:.0f}" x2="{tx:.0f}" y2="{ty:.0f}" stroke="{color}" '
                     f'stroke-width="{stroke:.2f}" marker-end="url(#arrow)"/>'
                     f'<text x="{(sx + tx) / 2:.0f}" y="{(sy + ty) / 2 - 4:.0f}" text-anchor="middle" '
                     f'fill="{color}">{label}</text></g>')
    for node in nodes:
        x, y = place[node]
        name = html.escape(node if len(node) <= 30 else node[:28] + "..")
        parts.append(f'<g class="node" data-name="{html.escape(node)}"><title>{html.escape(node)}</title>'
                     f'<rect x="{x}" y="{y}" width="{_W}" height="{_H}" rx="6" fill="#eef3f8" stroke="#21405e"/>'
                     f'<text x="{x + _W / 2}" y="{y + _H / 2 + 4}" text-anchor="middle">{name}</text></g>')
    parts.append("</svg>")
    return "".join(parts)
