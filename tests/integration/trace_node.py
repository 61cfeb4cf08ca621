"""A provider process for the tracing tests: serves ``trace.A`` (which calls ``trace.B``) or ``trace.B``.

    python -m tests.integration.trace_node ROLE REGISTRY SPANS LOG [sdk|nosdk]

With ``sdk`` it records spans (JsonLinesSpanExporter under a batch processor) into SPANS;
every log record goes to LOG with its trace and span ids. It prints ``ready`` once serving
and stops when its standard input closes.
"""

from __future__ import annotations

import logging
import sys

import govrpc
from govrpc.trace import TraceContextFilter


@govrpc.service("trace.B")
class B:
    def find(self, x: int) -> int:
        logging.getLogger("app.B").info("B.find %s", x)
        return x * 2


def main() -> None:
    role, registry, spans, log_path = sys.argv[1:5]
    sdk = len(sys.argv) > 5 and sys.argv[5] == "sdk"
    TraceContextFilter.install()
    logging.basicConfig(filename=log_path, level=logging.INFO,
                        format="%(trace_id)s %(span_id)s %(name)s %(message)s")
    provider = None
    if sdk:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from govrpc.trace import JsonLinesSpanExporter

        provider = TracerProvider(resource=Resource.create({"service.name": f"svc-{role}"}))
        provider.add_span_processor(BatchSpanProcessor(JsonLinesSpanExporter(spans), schedule_delay_millis=50))
        trace.set_tracer_provider(provider)
    client = govrpc.Client(registry, application=f"app-{role}", local_first=False, timeout=5.0)

    @govrpc.service("trace.A")
    class A:
        def get(self, x: int) -> int:
            logging.getLogger("app.A").info("A.get %s", x)
            return client.proxy("trace.B").find(x) + 1

    server = govrpc.Server(registry, port=0, application=f"app-{role}")
    server.add(A() if role == "A" else B())
    server.start()
    print("ready", flush=True)
    sys.stdin.read()
    server.stop(grace=1.0)
    client.close()
    if provider is not None:
        provider.shutdown()


if __name__ == "__main__":
    main()
