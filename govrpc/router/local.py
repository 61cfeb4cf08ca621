"""Local-first: prefer a provider served in this process, else (optionally) one on this host.

A client with ``local_first=True`` gives a provider of this process an
``InProcessInvoker`` (``govrpc.rpc.inprocess``: the same provider filters and
method, encoded as on the wire but with no socket). ``LocalFirstRouter`` then
keeps the in-process providers when there are any; with ``prefer_same_host`` it
otherwise keeps the providers on this host.
"""

from __future__ import annotations

from typing import Sequence

from govrpc.invocation import Invocation, Invoker
from govrpc.net import local_hosts
from govrpc.router.base import Router
from govrpc.url import URL

__all__ = ["LocalFirstRouter"]


class LocalFirstRouter(Router):
    """Keeps in-process providers when there are any; else, if configured, those on this host.

    Built by the chain from the client's options (``local_first``, ``prefer_same_host``),
    not from rules; it runs last, among the providers the rules kept.
    """

    name = "local-first"
    priority = -1000

    def __init__(self, *, prefer_same_host: bool = False) -> None:
        self.prefer_same_host = prefer_same_host
        self.hosts = local_hosts()

    def route(self, invokers: Sequence[Invoker], invocation: Invocation,
              consumer: URL) -> tuple[Sequence[Invoker], str]:
        local = [i for i in invokers if getattr(i, "in_process", False)]
        if local:
            return local, "in-process provider(s): called without the network"
        if self.prefer_same_host:
            same = [i for i in invokers if i.url.host in self.hosts]
            if same:
                return same, "no in-process provider; kept the providers on this host"
        return invokers, "no in-process provider" + (" nor one on this host" if self.prefer_same_host else "") \
            + ": all kept"
