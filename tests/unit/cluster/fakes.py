"""Tiny in-memory invokers and directories for cluster unit tests (no sockets)."""

from __future__ import annotations

import threading
import time
from typing import Any, Sequence

from govrpc.cluster.directory import StaticDirectory
from govrpc.invocation import Invocation, Invoker
from govrpc.url import CONSUMER, URL, ServiceKey

KEY = ServiceKey("demo.Svc")


class FakeInvoker(Invoker):
    """Answers with ``outcome``: a value, an exception instance to raise, or a callable(invocation)."""

    def __init__(self, port: int, outcome: Any = "ok", *, weight: int = 100, **params: Any) -> None:
        self.url = URL("grpc", "10.0.0.1", port, KEY.service, {"weight": weight, **params})
        self.outcome = outcome
        self.calls: list[Invocation] = []
        self.closed = False
        self._lock = threading.Lock()

    def invoke(self, invocation: Invocation) -> Any:
        with self._lock:
            self.calls.append(invocation)
        outcome = self.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        if callable(outcome):
            return outcome(invocation)
        return outcome

    def close(self) -> None:
        self.closed = True

    def __repr__(self) -> str:
        return f"Fake({self.url.port})"


def consumer_url(**params: Any) -> URL:
    return URL(CONSUMER, "127.0.0.1", 0, KEY.service, {k: v for k, v in params.items() if v is not None})


def directory(invokers: Sequence[Invoker], **params: Any) -> StaticDirectory:
    return StaticDirectory(KEY, consumer_url(**params), invokers)


def invocation(method: str = "find", *args: Any, timeout: float = 5.0) -> Invocation:
    return Invocation(KEY, method, args, {}, {}, time.monotonic() + timeout)


def fakes(n: int, outcome: Any = "ok", **params: Any) -> list[FakeInvoker]:
    return [FakeInvoker(20000 + i, outcome, **params) for i in range(n)]

