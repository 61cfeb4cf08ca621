"""``govrpc.AsyncClient``: the asyncio twin of ``govrpc.Client``, on ``grpc.aio``.

A reference is built exactly as ``Client.reference`` builds it (the same
``RegistryDirectory``, ``RouterChain``, ``ConfiguredClusterInvoker`` with its
balancers, retry budget and outlier ejection, the same ``ReferenceConfig`` fed by
the registry's configurators, the same filter instances); only the I/O differs:
transports are ``AsyncGrpcInvoker``s, the cluster's steps are carried out by the
asyncio driver (``govrpc.aio.cluster``) and filters run through their ``ainvoke``.

Registry deliveries arrive on the registry's own threads; what they change is swapped
whole (the directory's endpoint tuple, the reference's routes) and read by the loop
without a lock, and a channel they retire is closed on the loop (``call_soon_threadsafe``).

    async with govrpc.AsyncClient(registry) as client:
        greeter = client.proxy("demo.Greeter")
        await greeter.hello("ann")
        await asyncio.gather(*(greeter.hello(n) for n in names))   # the parallel call model
        await greeter.hello.oneway("ann")                          # sent, no response awaited
        await client.invoke("demo.Greeter", "hello", ["ann"])      # no class needed
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Iterable, Mapping, Sequence

from govrpc.aio.cluster import AsyncClusterInvoker
from govrpc.aio.transport import AsyncChannelPool, AsyncGrpcInvoker
from govrpc.client import Client, Reference, UnknownMethodError
from govrpc.configurator import ReferenceConfig
from govrpc.context import _ATTACHMENTS
from govrpc.exceptions import ConfigurationError
from govrpc.invocation import Filter, Invocation, Invoker, async_chain
from govrpc.options import check_seconds
from govrpc.registry.base import Registry
from govrpc.security import TLS
from govrpc.rpc.inprocess import InProcessInvoker, find_local
from govrpc.url import URL

__all__ = ["AsyncClient", "AsyncMethodProxy", "AsyncServiceProxy"]

current_attachments = _ATTACHMENTS.get
_monotonic = time.monotonic


class _ThreadedInvoker(Invoker):
    """A provider of this process served by a sync ``govrpc.Server``: called in-process on a thread."""

    in_process = True

    def __init__(self, invoker: InProcessInvoker) -> None:
        self.inner = invoker
        self.url = invoker.url

    def invoke(self, invocation: Invocation) -> Any:
        return self.inner.invoke(invocation)

    async def ainvoke(self, invocation: Invocation) -> Any:
        return await asyncio.to_thread(self.inner.invoke, invocation)

    @property
    def available(self) -> bool:
        return self.inner.available

    def close(self) -> None:
        self.inner.close()


class _Core(Client):
    """The sync client's reference machinery with asyncio transports."""

    def __init__(self, *args: Any, tls: TLS | None = None, **kwargs: Any) -> None:
        super().__init__(*args, tls=tls, **kwargs)  # checks credentials/tls/token, builds the credentials
        self.pool = AsyncChannelPool(max_message_size=self.max_message_size, credentials=self.pool.credentials,
                                     options=tls.channel_options() if tls is not None else None,
                                     application=self.application)

    def _invoker_for(self, url: URL) -> Invoker:
        invoker: InProcessInvoker | AsyncGrpcInvoker
        if self.local_first:
            export = find_local(url)
            if export is not None:
                invoker = InProcessInvoker(export, url, self.max_message_size, application=self.application,
                                           token=self._token)
                self._track(invoker)
                return _ThreadedInvoker(invoker)
        invoker = AsyncGrpcInvoker(url, self.pool, application=self.application, token=self._token)
        self._track(invoker)
        return invoker

    def _track(self, invoker: InProcessInvoker | AsyncGrpcInvoker) -> None:
        with self._transport_lock:  # where Client.rotate_token changes the token
            self._transports.add(invoker)


class AsyncReference:
    """A ``Reference`` awaited: its reference filters' ``ainvoke`` around the asyncio cluster driver,
    bound again (as the sync chain is) whenever configurators change the reference's settings."""

    def __init__(self, reference: Reference) -> None:
        self.reference = reference
        self.key = reference.key
        self.directory = reference.directory
        self.cluster = AsyncClusterInvoker(reference._cluster)  # type: ignore[arg-type]
        self._bind(reference.config)
        reference.config.subscribe(self._bind)

    def _bind(self, config: ReferenceConfig) -> None:
        # the sync reference's bound filters (bound again by it on every change), awaited
        self.ainvoke = async_chain(self.reference.invoker, self.cluster).ainvoke  # type: ignore[attr-defined]

    def invocation(self, method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], oneway: bool = False,
                   timeout: float | None = None) -> Invocation:
        return self.reference.invocation(method, args, kwargs, oneway, timeout)

    def close(self) -> None:
        self.reference.config.unsubscribe(self._bind)


class AsyncMethodProxy:
    """A remote method: ``await proxy.name(...)``, or ``await proxy.name.oneway(...)``."""

    __slots__ = ("_reference", "_name", "_key", "_client")

    def __init__(self, client: AsyncClient, reference: AsyncReference, name: str) -> None:
        self._client = client
        self._reference = reference
        self._name = name
        self._key = reference.key

    def __call__(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        if self._client._closed:
            raise ConfigurationError(f"{self._key}.{self._name}: the client is closed")
        attachments = current_attachments()
        reference = self._reference.reference
        timeout = (reference.timeouts.get(self._name) if reference.timeouts else None) or reference.timeout
        return self._reference.ainvoke(Invocation(self._key, self._name, args, kwargs,
                                                  dict(attachments) if attachments else {}, _monotonic() + timeout))

    async def oneway(self, *args: Any, **kwargs: Any) -> None:
        """Send the call without waiting for (or receiving) a response."""
        if self._client._closed:
            raise ConfigurationError(f"{self._key}.{self._name}: the client is closed")
        await self._reference.ainvoke(self._reference.invocation(self._name, args, kwargs, oneway=True))

    def __repr__(self) -> str:
        return f"<AsyncMethodProxy {self._key}.{self._name}>"


class AsyncServiceProxy:
    """Attribute access gives an ``AsyncMethodProxy`` per remote method (as ``ServiceProxy``)."""

    def __init__(self, client: AsyncClient, reference: AsyncReference) -> None:
        self._client = client
        self._reference = reference

    def __getattr__(self, name: str) -> AsyncMethodProxy:
        if name.startswith("_"):
            raise AttributeError(name)
        methods = self._reference.reference.methods()
        if methods is not None and name not in methods:
            raise UnknownMethodError(f"service {self._reference.key} has no method {name!r}; "
                                     f"its methods: {', '.join(sorted(methods))}")
        method = AsyncMethodProxy(self._client, self._reference, name)
        if methods is not None:
            self.__dict__[name] = method
        return method

    def __repr__(self) -> str:
        return f"<AsyncServiceProxy {self._reference.key}>"


class AsyncClient:
    """An asyncio consumer: the same arguments as ``govrpc.Client`` (see there), awaited verbs.

    ``credentials`` / ``tls`` and ``token`` behave as on ``Client``: TLS providers are dialled
    on ``grpc.aio.secure_channel``s (a ``tls=true`` provider is refused without them, never
    dialled in plaintext) and the token travels with every call. ``metrics_port``,
    ``metrics_registry`` and ``metrics`` (or ``metrics=True`` on one reference) record the
    Prometheus metrics of the awaited calls, as on ``Client``; ``health_check`` (providers'
    grpc health asked every so many seconds, None: not asked) and ``report_interval`` (this
    consumer's call summaries published into the registry) too.

    Use it on one event loop (grpc.aio channels belong to the loop of their first call).
    """

    def __init__(self, registry: str | Registry | None = None, *, application: str = "govrpc-consumer",
                 timeout: float = 1.0, filters: Iterable[Filter | str] = (),
                 max_message_size: int = 4 * 1024 * 1024, local_first: bool = True,
                 prefer_same_host: bool = False, credentials: Any = None, tls: TLS | None = None,
                 token: str | None = None, metrics_port: int | None = None, metrics_registry: Any = None,
                 metrics: bool = False, health_check: float | None = 5.0,
                 report_interval: float | None = None) -> None:
        self._core = _Core(registry, application=application, timeout=timeout, filters=filters,
                           max_message_size=max_message_size, local_first=local_first,
                           prefer_same_host=prefer_same_host, credentials=credentials, tls=tls, token=token,
                           metrics_port=metrics_port, metrics_registry=metrics_registry, metrics=metrics,
                           health_check=health_check, report_interval=report_interval)
        self.registry = self._core.registry
        self.metrics_port = self._core.metrics_port  # where metrics are served (metrics_port=0: the one picked)
        self.application = application
        self._references: dict[int, AsyncReference] = {}
        self._closed = False

    def reference(self, service: str, **options: Any) -> AsyncReference:
        """The (cached) reference for a service key and options; see ``govrpc.Client.proxy``.

        (failcache's timer thread re-sends queued calls through this client's event loop.)"""
        if self._closed:
            raise ConfigurationError("client is closed")
        return self._wrap(self._core.reference(service, **options))

    def _wrap(self, reference: Reference) -> AsyncReference:
        made = self._references.get(id(reference))
        if made is None or made.reference is not reference:
            made = self._references[id(reference)] = AsyncReference(reference)
        return made

    def rotate_token(self, token: str) -> None:
        """Send ``token`` from the next call on, to every provider (see ``govrpc.Client.rotate_token``)."""
        self._core.rotate_token(token)

    def channel(self, service: str, **options: Any) -> Any:
        """A channel for grpc.aio stubs of ``service``: the twin of ``govrpc.Client.channel``
        (``govrpc.aio.channel``)."""
        from govrpc.aio.channel import AsyncGovernedChannel

        if self._closed:
            raise ConfigurationError("client is closed")
        return AsyncGovernedChannel(self, service, options)

    def proxy(self, service: str, **options: Any) -> AsyncServiceProxy:
        """A proxy whose methods are awaited; options as ``govrpc.Client.proxy``."""
        return AsyncServiceProxy(self, self.reference(service, **options))

    async def invoke(self, service: str, method: str, args: Sequence[Any] = (),
                     kwargs: Mapping[str, Any] | None = None, *, timeout: float | None = None,
                     **options: Any) -> Any:
        """Generic call: no class or stub needed."""
        reference = self.reference(service, **options)
        if timeout is not None:
            timeout = check_seconds(timeout, "timeout")
        return await reference.ainvoke(reference.invocation(method, tuple(args), kwargs or {}, timeout=timeout))

    async def close(self) -> None:
        """Unsubscribe, deregister, close channels once the calls in flight have ended (each
        within its deadline). Calls made after this fail with "the client is closed"."""
        if self._closed:
            return
        self._closed = True
        for reference in self._references.values():
            reference.close()
        # the sync close waits for in-flight calls to end: on a thread, so the loop runs them
        await asyncio.to_thread(self._core.close)
        await asyncio.sleep(0)  # the channels it retired are closed by callbacks on this loop
        pool = self._core.pool
        assert isinstance(pool, AsyncChannelPool)
        await pool.aclose()

    aclose = close

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
