"""Directories: the live list of providers for one service key.

A ``RegistryDirectory`` subscribes to the registry; each push builds a new
immutable tuple of ``Endpoint``s and swaps it in whole, so ``list`` never locks.
An endpoint is one provider as the cluster sees it: its URL with configurators
applied, its ``ProviderState`` (statistics, ejection, breaker and permit slots),
and its invoker chain: the consumer's invoker-level filters, each bound to that
provider, around the transport invoker. A configurator change rebuilds endpoints
but keeps each provider's transport and state; a provider that left is closed
once its last call has ended. Building an endpoint is cheap (transports connect
on their first call), so a registry's delivery thread never waits on it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

from govrpc.cluster.stats import ProviderState, stats_of
from govrpc.configurator import ConfiguratorWatcher, ReferenceConfig
from govrpc.invocation import Filter, Invocation, Invoker, async_chain, build_filter_chain
from govrpc.registry.base import Registry
from govrpc.url import PROVIDER_SCHEMES, URL, ServiceKey

if TYPE_CHECKING:
    from govrpc.router.chain import RouterChain

__all__ = ["Directory", "Endpoint", "RegistryDirectory", "StaticDirectory"]

log = logging.getLogger("govrpc.cluster")

InvokerFactory = Callable[[URL], Invoker]


class Endpoint(Invoker):
    """One provider as a directory hands it out: URL as configured, state, invoker chain.

    ``invoke`` is the chain's own bound method (set on the instance), so an endpoint
    adds no frame to a call. ``in_process`` tells routers a provider of this process.
    """

    def __init__(self, url: URL, state: ProviderState, transport: Invoker, filters: Sequence[Filter] = (),
                 consumer: URL | None = None) -> None:
        self.url = url
        self.state = state
        self.transport = transport
        self.in_process = bool(getattr(transport, "in_process", False))
        self.chain = build_filter_chain(filters, transport, bind_url(url, consumer)) if filters else transport
        link: Any = self.chain
        listeners = []
        while link is not transport:  # a bound filter that keeps per-provider state (breakers) gets it
            attach = getattr(link.filter, "attach_state", None)
            if attach is not None:
                attach(state)
            listen = getattr(link.filter, "on_trailers", None)  # a stage reading answers' trailers
            if listen is not None:
                listeners.append(listen)
            link = link.next
        read_trailers = getattr(transport, "read_trailers", None)
        if read_trailers is not None:  # decided here, at bind time: without a listener no trailer is read
            read_trailers(listeners[0] if len(listeners) == 1 else _fan_out(listeners) if listeners else None)
        self.invoke = self.chain.invoke  # type: ignore[method-assign]
        # the transport's non-blocking call, when nothing runs between it and the cluster
        self.start = getattr(transport, "start", None) if self.chain is transport else None
        if getattr(transport, "ainvoke", None) is not None:  # an asyncio transport: the same filters, awaited
            self.ainvoke = async_chain(self.chain, transport).ainvoke  # type: ignore[attr-defined]

    def invoke(self, invocation: Invocation) -> Any:  # replaced per instance in __init__
        return self.chain.invoke(invocation)

    @property
    def available(self) -> bool:
        return not self.state.retiring and self.transport.available

    def close(self) -> None:
        """Close the transport once no call is in flight on it."""
        self.state.retire(self.transport.close)

    def __repr__(self) -> str:
        return f"Endpoint({self.url.address}/{self.url.path})"


def _fan_out(listeners: Sequence[Callable[[Any], None]]) -> Callable[[Any], None]:
    def heard(metadata: Any) -> None:
        for listener in listeners:
            listener(metadata)
    return heard


IDENTITY_KEYS = frozenset({"application", "pid", "timestamp", "version", "group", "methods", "side"})


def bind_url(provider: URL, consumer: URL | None) -> URL:
    """What an invoker-level filter is bound to: the provider's URL with the consumer's own
    settings over it (DESIGN.md section 4: the consumer's setting beats the provider's
    published one), leaving out what identifies the consumer (application, pid...)."""
    if consumer is None:
        return provider
    settings = {k: v for k, v in consumer.params.items() if k not in IDENTITY_KEYS}
    return provider.with_params(**settings) if settings else provider


class Directory:
    """The providers (``Endpoint``s) a cluster invoker may use for a call."""

    key: ServiceKey
    consumer_url: URL
    invokers: tuple[Invoker, ...] = ()
    router_chain: RouterChain | None = None  # set by the client; None: no routing at all
    filters: Sequence[Filter] = ()  # the consumer's invoker-level filters

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
    """A fixed list of providers (point-to-point ``url=`` references, tests).

    Transport invokers are given endpoints (invoker filters, and the state
    ``stats_of`` keeps for that invoker) here; an ``Endpoint`` is used as it is.
    """

    def __init__(self, key: ServiceKey, consumer_url: URL, invokers: Sequence[Invoker],
                 filters: Sequence[Filter] = (), config: ReferenceConfig | None = None) -> None:
        self.key = key
        self.consumer_url = consumer_url
        self.filters = tuple(filters)
        consumer = config.url if config is not None else consumer_url
        self.invokers = tuple(i if getattr(i, "state", None) is not None
                              else Endpoint(i.url, stats_of(i), i, self.filters, consumer)
                              for i in invokers)


class RegistryDirectory(Directory):
    """Providers of ``key`` as the registry announces them."""

    def __init__(self, registry: Registry, key: ServiceKey, consumer_url: URL,
                 invoker_factory: InvokerFactory, filters: Sequence[Filter] = (),
                 config: ReferenceConfig | None = None) -> None:
        self.registry = registry
        self.key = key
        self.consumer_url = consumer_url
        self.filters = tuple(filters)
        self._factory = invoker_factory
        self._lock = threading.RLock()  # re-entered when a configurator change re-applies the list
        # per provider as the registry published it: its transport and state, kept across overrides
        self._providers: dict[URL, tuple[Invoker, ProviderState]] = {}
        self._by_url: dict[URL, Endpoint] = {}  # configured URL -> endpoint
        self.invokers = ()
        self.urls: tuple[URL, ...] = ()
        self._closed = False
        self._raw: list[URL] = []  # as the registry pushed them, before configurators
        self._bound_to: URL | None = None  # the consumer settings the endpoints' filters were bound to
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
            old_providers, old_endpoints = self._providers, self._by_url
            consumer = self.config.url
            if consumer is not self._bound_to:  # the consumer's settings changed: bind filters again
                old_endpoints, self._bound_to = {}, consumer
            providers: dict[URL, tuple[Invoker, ProviderState]] = {}
            endpoints: dict[URL, Endpoint] = {}
            for raw in wanted:
                provider = old_providers.get(raw) or providers.get(raw)
                if provider is None:
                    try:
                        provider = (self._factory(raw), ProviderState())
                    except Exception:  # noqa: BLE001 - one bad provider must not hide the others
                        log.exception("cannot create an invoker for provider %s of %s", raw, self.key)
                        continue
                providers[raw] = provider
                url = self.config.provider(raw)
                if url is None:  # disabled by a configurator: kept (with its state), not listed
                    continue
                endpoint = old_endpoints.get(url)
                if endpoint is None or endpoint.transport is not provider[0]:
                    provider[1].configure(url.params)
                    endpoint = Endpoint(url, provider[1], provider[0], self.filters, consumer)
                endpoints[url] = endpoint
            self._providers, self._by_url = providers, endpoints
            self.urls = tuple(endpoints)
            # a provider whose link is down (keepalive unanswered) is left out while another one is up,
            # and so is one that reports itself unhealthy (govrpc.monitor.board): every balancer avoids it
            listed = tuple(endpoints.values())
            live = tuple(e for e in listed if e.available)
            now = time.time()
            well = tuple(e for e in live if not e.state.reports_unhealthy(now))
            self.invokers = well or live or listed
            gone = [(transport, state) for raw, (transport, state) in old_providers.items() if raw not in providers]
        for transport, state in gone:
            state.retire(transport.close)
        if gone or len(endpoints) != len(old_endpoints):
            log.info("%s: %d provider(s)", self.key, len(endpoints))

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """Every provider as configured, listed or not (left out while its link is down or it reports
        itself unhealthy)."""
        return tuple(self._by_url.values())

    def refresh(self) -> None:
        """List the providers again (a provider's link went down or came back)."""
        with self._lock:
            if not self._closed:
                self.notify(self._raw)

    def close(self) -> None:
        self.registry.unsubscribe(self.key.service, self.notify)
        self.config.close()
        if self.router_chain is not None:
            self.registry.unwatch_rules(self.key.service, "routers", self.router_chain.set_registry_rules)
        with self._lock:
            self._closed = True
            providers = list(self._providers.values())
            self._providers, self._by_url = {}, {}
            self.invokers = ()
        for transport, state in providers:
            state.retire(transport.close)
