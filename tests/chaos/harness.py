"""What every chaos scenario uses: provider processes, steady load, and its figures.

``Load`` runs consumer threads for a bounded time and count; every call is counted
when it starts and when it ends (returned or raised), so a scenario can assert that
none was lost silently, and prints ``calls``, ``failed`` and ``p99`` to quote.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = str(Path(__file__).resolve().parents[2])


class ProviderProcess:
    """One ``tests.chaos.provider`` process; ``port`` once it has registered."""

    def __init__(self, address: str, name: str, grace: float = 2.0) -> None:
        self.name = name
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.chaos.provider", address, name, str(grace)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # bounded: the process exits on its own within its lifetime
        if not line.startswith("READY"):
            self.kill()
            raise RuntimeError(f"provider {name} did not start: {line!r}")
        self.port = int(line.split()[1])

    def kill(self) -> None:
        """SIGKILL: no deregistration, no drain (its ZooKeeper node goes with its session)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._close()

    def terminate(self, timeout: float = 15.0) -> None:
        """SIGTERM: the graceful stop (deregister, drain, stop); waits for the exit."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        finally:
            self.kill()

    def _close(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Load:
    """``threads`` consumer threads calling ``call(worker, n)`` until ``stop()``, ``seconds`` or ``max_calls``."""

    def __init__(self, call: Callable[[int, int], Any], *, threads: int = 4, seconds: float = 30.0,
                 max_calls: int = 100_000, pause: float = 0.002) -> None:
        self.call = call
        self.seconds = seconds
        self.max_calls = max_calls
        self.pause = pause
        self.started = 0
        self.returned = 0
        self.failures: collections.Counter[str] = collections.Counter()
        self.examples: dict[str, str] = {}
        self.latencies: list[float] = []
        self.durations_failed: list[float] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(w,), daemon=True, name=f"load-{w}")
                         for w in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, worker: int) -> None:
        deadline = time.monotonic() + self.seconds
        n = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if self.started >= self.max_calls:
                    return
                self.started += 1
            n += 1
            began = time.monotonic()
            try:
                self.call(worker, n)
            except Exception as exc:  # noqa: BLE001 - counted, named, kept as an example
                took = time.monotonic() - began
                with self._lock:
                    self.failures[type(exc).__name__] += 1
                    self.examples.setdefault(type(exc).__name__, str(exc)[:300])
                    self.durations_failed.append(took)
            else:
                took = time.monotonic() - began
                with self._lock:
                    self.returned += 1
                    self.latencies.append(took)
            if self.pause:
                time.sleep(self.pause)

    def wait_calls(self, count: int, timeout: float = 20.0) -> None:
        """Until ``count`` more calls have ended (a bounded wait)."""
        target = self.ended + count
        deadline = time.monotonic() + timeout
        while self.ended < target and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.ended >= target, f"load stalled: {self.ended} of {target} calls ended in {timeout} s"

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        assert not any(t.is_alive() for t in self._threads), "a consumer thread is stuck in a call"

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def ended(self) -> int:
        return self.returned + self.failed

    def p99(self) -> float:
        ordered = sorted(self.latencies + self.durations_failed)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0

    def report(self, scenario: str) -> str:
        """Print and return the figures; asserts no call was lost (every one returned or raised)."""
        assert self.started == self.ended, f"{self.started - self.ended} calls neither returned nor raised"
        line = (f"chaos {scenario}: calls={self.started} failed={self.failed} p99={self.p99() * 1000:.1f}ms"
                + (f" failures={dict(self.failures)} e.g. {self.examples}" if self.failed else ""))
        print(line)
        return line
