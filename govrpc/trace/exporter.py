"""``JsonLinesSpanExporter``: spans as JSON lines in a rotated file, for Filebeat or Logstash.

    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    provider.add_span_processor(BatchSpanProcessor(JsonLinesSpanExporter("/var/log/app/spans.jsonl")))

One span per line (the fields are listed in docs/tracing.md), appended to ``path``;
when the file passes ``max_bytes`` it is renamed ``path.1`` (older ones shift up to
``path.{backups}``, the oldest is dropped) and a new one started. ``export`` only
puts the lines in a bounded buffer and returns: a writer thread does the disk I/O,
so neither the SDK's processor nor, with a simple processor, a call ever waits on
the disk; when the buffer is full, spans are dropped and counted (``dropped``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import deque
from typing import Any, Sequence

from govrpc.exceptions import ConfigurationError

try:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
except ImportError:  # pragma: no cover - the otel extra is missing
    SpanExporter = object  # type: ignore[assignment,misc]
    SpanExportResult = None  # type: ignore[assignment,misc]

__all__ = ["JsonLinesSpanExporter", "span_record"]

log = logging.getLogger("govrpc.trace")

_KINDS = {0: "INTERNAL", 1: "SERVER", 2: "CLIENT", 3: "PRODUCER", 4: "CONSUMER"}


def _value(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return value


def span_record(span: Any) -> dict[str, Any]:
    """The JSON object written for one SDK ``ReadableSpan``."""
    context = span.get_span_context()
    parent = span.parent
    status = span.status
    resource = span.resource.attributes if span.resource is not None else {}
    return {
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_span_id": f"{parent.span_id:016x}" if parent is not None else "",
        "name": span.name,
        "kind": _KINDS.get(span.kind.value, str(span.kind.value)),
        "start_time_unix_nano": span.start_time,
        "end_time_unix_nano": span.end_time,
        "status": status.status_code.name,
        "status_message": status.description or "",
        "attributes": {k: _value(v) for k, v in (span.attributes or {}).items()},
        "events": [{"name": e.name, "time_unix_nano": e.timestamp,
                    "attributes": {k: _value(v) for k, v in (e.attributes or {}).items()}}
                   for e in span.events],
        "resource": {k: _value(v) for k, v in resource.items()},
        "scope": span.instrumentation_scope.name if span.instrumentation_scope is not None else "",
    }


class JsonLinesSpanExporter(SpanExporter):
    """An OpenTelemetry ``SpanExporter`` writing one JSON span per line to ``path``, rotated.

    Args:
        path: the file (its directory must exist).
        max_bytes: size past which the file is rotated (default 64 MiB; 0: never).
        backups: rotated files kept (``path.1`` ... ``path.N``; default 5).
        max_buffered: spans held while the writer catches up (default 50 000); more are dropped.

    Raises ``ConfigurationError`` for a bad argument or a path that cannot be opened for appending.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int = 64 * 1024 * 1024, backups: int = 5,
                 max_buffered: int = 50_000) -> None:
        if SpanExportResult is None:
            raise ConfigurationError("JsonLinesSpanExporter needs the OpenTelemetry SDK: pip install 'govrpc[otel]'")
        for name, value, low in (("max_bytes", max_bytes, 0), ("backups", backups, 0),
                                 ("max_buffered", max_buffered, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigurationError(f"JsonLinesSpanExporter: {name} must be an integer >= {low}, not {value!r}")
        self.path = os.fspath(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.max_buffered = max_buffered
        self.dropped = 0
        self.written = 0
        try:
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held until shutdown
        except OSError as exc:
            raise ConfigurationError(f"JsonLinesSpanExporter: cannot open {self.path} for appending: {exc}") from exc
        self._size = self._file.tell()
        self._buffer: deque[str] = deque()
        self._cond = threading.Condition()
        self._idle = threading.Event()
        self._idle.set()
        self._stopped = False
        self._writer = threading.Thread(target=self._write_loop, name="govrpc-span-writer", daemon=True)
        self._writer.start()

    def export(self, spans: Sequence[Any]) -> Any:
        lines = []
        for span in spans:
            try:
                lines.append(json.dumps(span_record(span), separators=(",", ":"), default=str))
            except Exception:  # noqa: BLE001 - one odd span must not lose the batch
                log.exception("cannot encode span %s", getattr(span, "name", span))
        with self._cond:
            if self._stopped:
                return SpanExportResult.FAILURE
            room = self.max_buffered - len(self._buffer)
            if room < len(lines):
                self.dropped += len(lines) - max(room, 0)
                lines = lines[:max(room, 0)]
            if lines:
                self._buffer.extend(lines)
                self._idle.clear()
                self._cond.notify()
        return SpanExportResult.SUCCESS

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._buffer and not self._stopped:
                    self._idle.set()
                    self._cond.wait()
                if not self._buffer and self._stopped:
                    self._idle.set()
                    return
                lines = list(self._buffer)
                self._buffer.clear()
            try:
                self._write(lines)
            except OSError:
                log.exception("cannot write %d span(s) to %s", len(lines), self.path)

    def _write(self, lines: list[str]) -> None:
        for line in lines:
            data = line + "\n"
            if self.max_bytes and self._size and self._size + len(data) > self.max_bytes:
                self._rotate()
            self._file.write(data)
            self._size += len(data)
            self.written += 1
        self._file.flush()

    def _rotate(self) -> None:
        self._file.close()
        if self.backups:
            for n in range(self.backups - 1, 0, -1):
                older = f"{self.path}.{n}"
                if os.path.exists(older):
                    os.replace(older, f"{self.path}.{n + 1}")
            os.replace(self.path, f"{self.path}.1")
        else:
            os.remove(self.path)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self._size = 0

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait until what was exported is on disk (at most ``timeout_millis``)."""
        return self._idle.wait(timeout_millis / 1000)

    def shutdown(self) -> None:
        with self._cond:
            if self._stopped:
                return
            self._stopped = True
            self._cond.notify()
        self._writer.join(timeout=10)
        self._file.close()
