"""Services used by the integration tests (importable by provider subprocesses too)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import govrpc


@govrpc.safe_exception
class OutOfStock(Exception):
    """A business exception registered as safe to re-raise on the consumer."""


class Unregistered(Exception):
    """A business exception the consumer receives as RemoteError."""


@govrpc.service("test.Echo", idempotent=True)
class Echo:
    def __init__(self, name: str = "echo") -> None:
        self.name = name
        self.calls = 0
        self.oneway_seen = threading.Event()
        self._lock = threading.Lock()

    def echo(self, value: Any) -> Any:
        with self._lock:
            self.calls += 1
        return value

    def whoami(self) -> str:
        with self._lock:
            self.calls += 1
        return self.name

    def pid(self) -> int:
        return os.getpid()

    def add(self, a: int, b: int = 0) -> int:
        return a + b

    def sleep(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    def buy(self, item: str) -> None:
        raise OutOfStock(f"no {item} left")

    def fail(self) -> None:
        raise Unregistered("something private went wrong")

    def notify(self, text: str) -> None:
        self.oneway_seen.set()

    def blob(self, size: int) -> bytes:
        return b"x" * size

    def unencodable(self) -> Any:
        return object()
