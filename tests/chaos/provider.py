"""A provider process for the chaos suite: ``python -m tests.chaos.provider ADDRESS NAME [GRACE]``.

Hosts ``chaos.Ledger`` (``balance`` idempotent, ``deposit`` not). Prints ``READY <port>``
once registered, then serves until SIGTERM (graceful: deregister, drain ``GRACE`` s, stop)
or SIGKILL; it never outlives ``LIFETIME`` seconds.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import govrpc

LIFETIME = 150.0


@govrpc.service("chaos.Ledger")
class Ledger:
    def __init__(self, name: str) -> None:
        self.name = name

    @govrpc.method(idempotent=True)
    def balance(self, account: str, n: int) -> list:
        return [self.name, account, n]

    def deposit(self, account: str, n: int, pause: float = 0.0) -> list:
        if pause:
            time.sleep(pause)
        return [self.name, account, n]


def main() -> None:
    address, name = sys.argv[1], sys.argv[2]
    grace = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
    server = govrpc.Server(address, application="chaos-ledger").add(Ledger(name)).start()
    threading.Timer(LIFETIME, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
    print(f"READY {server.port}", flush=True)
    server.serve(grace=grace)
    print("STOPPED", flush=True)
    os._exit(0)  # the lifetime timer must not hold the exit


if __name__ == "__main__":
    main()
