"""A provider in its own process: python examples/provider.py [REGISTRY] [NAME]

Try two or three of these with a shared file registry, then examples/consumer.py:
    python examples/provider.py file:///tmp/govrpc-registry p1 &
    python examples/provider.py file:///tmp/govrpc-registry p2 &
    python examples/consumer.py file:///tmp/govrpc-registry
"""

import sys

import govrpc

registry = sys.argv[1] if len(sys.argv) > 1 else "file:///tmp/govrpc-registry"
name = sys.argv[2] if len(sys.argv) > 2 else "p1"


@govrpc.service("demo.Greeter", version="1.0", idempotent=True)
class Greeter:
    def hello(self, who: str) -> str:
        return f"hello {who} from {name}"


server = govrpc.Server(registry, application="greeter", tags={"name": name})
server.add(Greeter()).start()
print(f"{name} serving demo.Greeter on 127.0.0.1:{server.port} via {registry}", flush=True)
server.serve(grace=5)  # until SIGTERM or Ctrl-C: deregister, drain, stop; then the process exits
