"""Provider processes for the monitoring tests: ``spawn(registry, name, **server_options)``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

PROVIDER = textwrap.dedent("""
    import json, sys, time
    import govrpc

    @govrpc.service("mon.Echo")
    class Echo:
        @govrpc.method(idempotent=True)
        def whoami(self) -> str:
            return sys.argv[1]

    options = json.loads(sys.argv[2])
    server = govrpc.Server({registry!r}, application="mon", **options).add(Echo()).start()
    print(server.port, flush=True)
    time.sleep(120)
""")


def spawn(registry: str, name: str, **options: Any) -> tuple[subprocess.Popen[str], int]:
    """A provider process answering ``whoami`` with ``name``; returns it and its port."""
    import json

    root = str(Path(__file__).resolve().parents[3])
    proc = subprocess.Popen([sys.executable, "-c", PROVIDER.format(registry=registry), name, json.dumps(options)],
                            stdout=subprocess.PIPE, text=True, cwd=root)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def stop(procs: list[subprocess.Popen[str]]) -> None:
    """Kill the providers (a frozen one is woken first, so it can die)."""
    for proc in procs:
        try:
            os.kill(proc.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    for proc in procs:
        proc.kill()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()
