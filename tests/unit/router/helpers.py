"""Providers known by URL only, and a one-call router runner, for router unit tests."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from govrpc.invocation import Invocation, Invoker
from govrpc.router import DryRunInvoker, compile_rule
from govrpc.router.base import Router
from govrpc.url import URL, ServiceKey

KEY = ServiceKey("demo.Greeter")


def provider(address: str, **params: str) -> DryRunInvoker:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return DryRunInvoker(URL.parse(f"grpc://{address}/demo.Greeter" + (f"?{query}" if query else "")))


def consumer(host: str = "10.20.153.10", **params: str) -> URL:
    return URL("consumer", host, 0, "demo.Greeter", {"application": "web", **params})


def invocation(method: str = "findUser", args: Sequence[Any] = (), attachments: Mapping[str, str] | None = None,
               kwargs: Mapping[str, Any] | None = None) -> Invocation:
    return Invocation(KEY, method, tuple(args), dict(kwargs or {}), dict(attachments or {}))


def run(routers: Sequence[Router], invokers: Sequence[Invoker], call: Invocation, who: URL) -> list[str]:
    current: Sequence[Invoker] = invokers
    for router in routers:
        current, _ = router.route(current, call, who)
        if not current:
            break
    return [i.url.host if i.url.port == 20880 else i.url.address for i in current]


def route(rule: str, invokers: Sequence[Invoker], call: Invocation | None = None, who: URL | None = None) -> list[str]:
    """Hosts (or host:port when the port is not 20880) the rule keeps."""
    _, routers = compile_rule(rule, "test")
    return run(routers, invokers, call or invocation(), who or consumer())
