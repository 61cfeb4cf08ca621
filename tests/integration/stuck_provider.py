"""A provider process whose ``block`` method outlives any deadline (tests/integration/test_server_lifecycle.py).

python -m tests.integration.stuck_provider REGISTRY GRACE MODE
MODE ``serve``: ``Server.serve(grace)``; ``handler``: examples' older pattern, a SIGTERM
handler calling ``stop(grace)`` while the main thread is in ``wait()``.
"""

from __future__ import annotations

import signal
import sys
import threading

import govrpc

RELEASE = threading.Event()  # never set: ``block`` ends by its own bound only


@govrpc.service("test.Stuck")
class Stuck:
    entered = 0

    def block(self, seconds: float) -> float:
        Stuck.entered += 1
        RELEASE.wait(seconds)
        return seconds

    def blocked(self) -> int:
        """How many ``block`` calls have begun."""
        return Stuck.entered


def main(registry: str, grace: float, mode: str) -> None:
    server = govrpc.Server(registry, application="stuck")
    server.add(Stuck()).start()
    print(f"serving {server.port}", flush=True)
    if mode == "serve":
        server.serve(grace=grace)
    else:
        signal.signal(signal.SIGTERM, lambda *_: server.stop(grace=grace))
        server.wait()
    print("stopped", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), sys.argv[3])
