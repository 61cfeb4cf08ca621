"""A provider process for the ZooKeeper tests: ``python -m tests.integration.zk.provider_main ADDRESS NAME``.

Prints ``READY <port>`` once registered, then serves until killed.
"""

from __future__ import annotations

import sys
import time

import govrpc
from tests.integration.services import Echo


def main() -> None:
    address, name = sys.argv[1], sys.argv[2]
    server = govrpc.Server(address, application=name)
    server.add(Echo(name))
    server.start()
    print(f"READY {server.port}", flush=True)
    deadline = time.monotonic() + 120  # never outlive a test run
    while time.monotonic() < deadline:
        time.sleep(0.5)
    server.stop(grace=0.5)


if __name__ == "__main__":
    main()
