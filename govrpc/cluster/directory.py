"""Directories: the live list of invokers for one service key.

A ``RegistryDirectory`` subscribes to the registry; each push builds a new
immutable tuple of invokers (reusing those whose URL did not change) and swaps
it in whole, so ``list`` never locks. Invokers of providers that left are closed.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Callable, Sequence

from govrpc.configurator import ConfiguratorWatcher, ReferenceConfig
from govrpc.invocation import Invocation, Invoker
from govrpc.registry.base import Registry
from govrpc.url import PROVIDER_SCHEMES, URL, ServiceKey

if TYPE_CHECKING:
    from govrpc.router.chain import RouterChain

__all__ = ["Directory", "RegistryDirectory", "StaticDirectory"]

log = logging.getLogger("govrpc.cluster")

InvokerFactory = Callable[[URL], Invoker]


class Directory:
    """The invokers a cluster invoker may use for a call."""

    key: ServiceKey
    consumer_url: URL
    invokers: tuple[Invoker, ...] = ()
    router_chain: RouterChain | None = None  # set by the client; None: no routing at all

    def list(self, invocation: Invocation) -> Sequence[Invoker]:
        """The invokers for ``invocation`` (an immutable snapshot), after the router chain."""
        chain = self.router_chain
        if chain is None:
            return self.invokers
        return chain.route(self.invokers, invocation)

    def close(self) -> None:
        for invoker in self.invokers:
            invoker.close()
        self.invokers = ()


class StaticDirectory(Directory):
    """A fixed list of invokers (point-to-point ``url=`` references, tests)."""

    def __init__(self, key: ServiceKey, consumer_url: URL, invokers: Sequence[Invoker]) -> None:
        self.key = key
        self.consumer_url = consumer_url
        self.invokers = tuple(invokers)


class RegistryDirectory(Directory):
    """Providers of ``key`` as the registry announces them."""

    def __init__(self, registry: Registry, key: ServiceKey, consumer_url: URL,
                 invoker_factory: InvokerFactory, config: ReferenceConfig | None = None) -> None:
        self.registry = registry
        self.key = key
        self.consumer_url = consumer_url
        self._factory = invoker_factory
        self._lock = threading.RLock()  # re-entered when a configurator change re-applies the list
        self._by_url: dict[URL, Invoker] = {}
        self.invokers = ()
        self.urls: tuple[URL, ...] = ()
        self._closed = False
        self._raw: list[URL] = []  # as the registry pushed them, before configurators
        # the reference's settings, kept current by the registry's configurators (the directory starts them)
        self.config = config if config is not None else ReferenceConfig(
            consumer_url, ConfiguratorWatcher(registry, key.service, consumer_url.params.get("application", "")))

    def _reconfigure(self, _config: ReferenceConfig) -> None:
        with self._lock:
            self.notify(self._raw)

    def start(self) -> None:
        self.config.subscribe(self._reconfigure)
        self.config.start()  # overrides first, so the first list is already configured
        if self.router_chain is not None:  # rules first, so the first call is already routed
            self.registry.watch_rules(self.key.service, "routers", self.router_chain.set_registry_rules)
        self.registry.subscribe(self.key.service, self.notify)

    def notify(self, urls: list[URL]) -> None:
        """Apply a provider list pushed by the registry."""
        wanted = [u for u in urls if u.scheme in PROVIDER_SCHEMES and self.key.matches(u)]
        with self._lock:
            if self._closed:
                return
            self._raw = urls
            wanted = [u for u in map(self.config.provider, wanted) if u is not None]
            old = self._by_url
            fresh: dict[URL, Invoker] = {}
            for url in wanted:
                invoker = old.get(url)
                if invoker is None:
                    try:
                        invoker = self._factory(url)
                    except Exception:  # noqa: BLE001 - one bad provider must not hide the others
                        log.exception("cannot create an invoker for provider %s of %s", url, self.key)
                        continue
                fresh[url] = invoker
            self._by_url = fresh
            self.urls = tuple(fresh)
            self.invokers = tuple(fresh.values())
            gone = [inv for url, inv in old.items() if url not in fresh]
        for invoker in gone:
            invoker.close()
        if gone or len(fresh) != len(old):
            log.info("%s: %d provider(s)", self.key, len(fresh))

    def close(self) -> None:
        self.registry.unsubscribe(self.key.service, self.notify)
        self.config.close()
        if self.router_chain is not None:
            self.registry.unwatch_rules(self.key.service, "routers", self.router_chain.set_registry_rules)
        with self._lock:
            self._closed = True
            invokers = list(self._by_url.values())
            self._by_url = {}
            self.invokers = ()
        for invoker in invokers:
            invoker.close()
