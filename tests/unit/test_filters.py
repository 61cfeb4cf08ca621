"""Filter chains: order, continuation, refusal (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest

import govrpc
from govrpc.invocation import Filter, Invocation, Invoker, build_filter_chain
from govrpc.url import URL, ServiceKey


class Recorder(Invoker):
    def __init__(self) -> None:
        self.url = URL.parse("grpc://127.0.0.1:1/s")
        self.seen: list[Invocation] = []

    def invoke(self, invocation: Invocation) -> Any:
        self.seen.append(invocation)
        return "done"


class Tracing(Filter):
    def __init__(self, name: str, order: int, log: list[str]) -> None:
        self.name, self.order, self.log = name, order, log  # type: ignore[misc]

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        self.log.append(f"{self.name}>")
        try:
            return invoker.invoke(invocation)
        finally:
            self.log.append(f"<{self.name}")


class Refuse(Filter):
    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        raise govrpc.RateLimitedError(f"{invocation}: refused", invocation=invocation)


def test_filters_run_in_order_around_the_invoker() -> None:
    log: list[str] = []
    end = Recorder()
    chain = build_filter_chain([Tracing("b", 20, log), Tracing("a", 10, log)], end)
    assert chain.invoke(Invocation(ServiceKey("s"), "m")) == "done"
    assert log == ["a>", "b>", "<b", "<a"]
    assert chain.url == end.url


def test_no_filters_means_the_invoker_itself() -> None:
    end = Recorder()
    assert build_filter_chain([], end) is end


def test_a_filter_can_refuse_a_call() -> None:
    end = Recorder()
    chain = build_filter_chain([Refuse()], end)
    with pytest.raises(govrpc.RateLimitedError):
        chain.invoke(Invocation(ServiceKey("s"), "m"))
    assert end.seen == []
