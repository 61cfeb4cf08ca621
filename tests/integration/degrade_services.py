"""Services for the degradation tests: hit counters and failures the test switches on and off."""

from __future__ import annotations

import threading
import time
from typing import Any

import govrpc
from govrpc.exceptions import ProviderUnavailableError, RateLimitedError
from tests.integration.services import OutOfStock


@govrpc.service("test.Flaky", idempotent=True)
class Flaky:
    """``mode``: ok, down (ProviderUnavailableError: a transport-class failure), limited
    (RateLimitedError), business (OutOfStock); ``delay`` seconds before answering."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.mode = "ok"
        self.delay = 0.0
        self.hits = 0
        self._lock = threading.Lock()

    def get(self, key: Any = None) -> str:
        with self._lock:
            self.hits += 1
        if self.delay:
            time.sleep(self.delay)
        if self.mode == "down":
            raise ProviderUnavailableError(f"{self.name} is down")
        if self.mode == "limited":
            raise RateLimitedError(f"{self.name} is busy")
        if self.mode == "business":
            raise OutOfStock("no more")
        return self.name

    def items(self) -> dict[str, Any]:
        with self._lock:
            self.hits += 1
        if self.mode == "down":
            raise ProviderUnavailableError(f"{self.name} is down")
        return {"items": ["real"]}


@govrpc.mock("test.Flaky")
class FlakyMock:
    def get(self, key: Any = None) -> str:
        return f"mock:{key}"
