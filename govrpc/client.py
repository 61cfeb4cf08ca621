"""``govrpc.Client``: finds providers in the registry and calls them through governance.

``client.proxy(...)`` builds a *reference*: a directory subscribed to the
registry, a cluster invoker with its load balancer, and the consumer filter
chain around it. A proxy's method call is one ``Invocation`` sent down that chain::

    MethodProxy -> consumer filters -> ClusterInvoker -> Directory -> LoadBalancer -> GrpcInvoker
"""

from __future__ import annotations

import contextvars
import logging
import os
import socket
import threading
import time
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Mapping, Sequence

from govrpc.cluster.configured import ConfiguredClusterInvoker, method_options
from govrpc.cluster.consistenthash import check_hash_arguments
from govrpc.cluster.directory import Directory, RegistryDirectory, StaticDirectory
from govrpc.configurator import ReferenceConfig
from govrpc.context import _ATTACHMENTS
from govrpc.degrade.breaker import BreakerSettings
from govrpc.degrade.publish import ClientDegradation
from govrpc.exceptions import ConfigurationError, MethodNotFoundError
from govrpc.extension import get_extension
from govrpc.invocation import Filter, Invocation, Invoker, build_filter_chain, load_filters, starts_future
from govrpc.options import MAX_MESSAGE_SIZE, TIMEOUT, check_int, check_options, check_seconds
from govrpc.registry.base import Registry, acquire_registry, release_registry
from govrpc.net import local_address
from govrpc.router.chain import RouterChain
from govrpc.rpc.inprocess import InProcessInvoker, find_local
from govrpc.monitor.board import HealthBoard, HealthProber
from govrpc.monitor.health import MONITORS, CallSummaryFilter, CallWindow, HealthReporter
from govrpc.monitor.metrics import MetricsAttemptFilter, MetricsCallFilter, MetricsRecorder, serve_metrics
from govrpc.registry.multi import MultiRegistry, acquire_multi_registry, registry_states
from govrpc.rpc.invoker import ChannelPool, GrpcInvoker, accepted_pings
from govrpc.rpc.server import PING_INTERVAL_KEY, Keepalive
from govrpc.security import TLS, channel_credentials, check_token
from govrpc.url import CONSUMER, URL, ServiceKey

__all__ = ["Client", "MethodProxy", "Reference", "ServiceProxy"]

log = logging.getLogger("govrpc.client")

DEFAULT_TIMEOUT = 1.0

# bound once: they run on every call
current_attachments = _ATTACHMENTS.get
_monotonic = time.monotonic


class Reference:
    """Everything one consumer needs to call one service key: directory, cluster, filters.

    Its timeouts follow DESIGN.md's precedence: a registry configurator's
    ``timeout`` / ``{method}.timeout``, then the consumer's own (``timeout=``,
    ``methods={"m": {"timeout": ...}}``), then the client's default. They come
    from ``config``, the reference's settings, which it subscribes to.
    """

    def __init__(self, key: ServiceKey, url: URL, directory: Directory, cluster: Invoker,
                 timeout: float, config: ReferenceConfig | None = None, filters: Sequence[Filter] = ()) -> None:
        self.key = key
        self.url = url
        self.directory = directory
        self.filters = tuple(filters)  # reference-level filters, bound to the configured consumer URL
        self.config = config if config is not None else ReferenceConfig(url)
        self.default_timeout = timeout
        self.timeout = timeout
        self.timeouts: dict[str, float] = {}
        self._closed = False
        self._cluster = cluster
        self.health_board: Any = None  # the providers' health summaries (govrpc.monitor.board)
        self.health_prober: Any = None  # the client's probe of providers' grpc health, when on
        self.reconfigure(self.config)
        self.config.subscribe(self.reconfigure)

    def reconfigure(self, config: ReferenceConfig) -> None:
        """Take the timeouts of ``config`` and bind the reference filters to its URL again
        (called whenever configurators change it), so a stage switched on at run time runs."""
        timeout = TIMEOUT.read(config.url, self.default_timeout)
        timeouts = {method: TIMEOUT.check(params["timeout"], f"{method}.timeout")
                    for method, params in config.method_params.items() if "timeout" in params}
        invoker = build_filter_chain(self.filters, self._cluster, config.url) if self.filters else self._cluster
        # swapped whole: calls read one dict or the other, never a half-updated one
        self.timeout = timeout
        self.timeouts = timeouts
        self.invoker = invoker
        # .future() starts the cluster's first attempt without a thread when every filter above it can
        self.cluster: Any = invoker if starts_future(invoker, self._cluster) else None
        if not self._closed:
            self.invoke = invoker.invoke  # what proxies call; refuses once the client is closed

    def timeout_of(self, method: str) -> float:
        return self.timeouts.get(method, self.timeout)

    def invocation(self, method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any],
                   oneway: bool = False, timeout: float | None = None) -> Invocation:
        attachments = current_attachments()
        return Invocation(self.key, method, args, kwargs, dict(attachments) if attachments else {},
                          time.monotonic() + (timeout or self.timeout_of(method)), oneway)

    def methods(self) -> frozenset[str] | None:
        """The methods the listed providers publish, or None while none is listed."""
        names: set[str] = set()
        for invoker in self.directory.invokers:
            names.update(invoker.url.methods)
        return frozenset(names) if names else None

    def close(self) -> None:
        self._closed = True
        self.invoke = _closed  # calls made from now on are refused; those in flight go on
        self.config.unsubscribe(self.reconfigure)
        if self.health_board is not None:
            self.health_board.close()
        if self.health_prober is not None:
            self.health_prober.forget(self.directory)
        self.invoker.close()


def _closed(invocation: Invocation) -> Any:
    raise ConfigurationError(f"{invocation}: the client is closed")


class MethodProxy:
    """A remote method: call it, or use ``.future(...)`` / ``.oneway(...)``."""

    __slots__ = ("_reference", "_name", "_client", "_key")

    def __init__(self, client: Client, reference: Reference, name: str) -> None:
        self._client = client
        self._reference = reference
        self._name = name
        self._key = reference.key

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        attachments = current_attachments()
        reference = self._reference
        timeout = (reference.timeouts.get(self._name) if reference.timeouts else None) or reference.timeout
        return reference.invoke(Invocation(self._key, self._name, args, kwargs,
                                           dict(attachments) if attachments else {}, _monotonic() + timeout))

    def _invoke(self, invocation: Invocation) -> Any:
        return self._reference.invoke(invocation)

    def future(self, *args: Any, **kwargs: Any) -> Future[Any]:
        """Start the call and return a ``concurrent.futures.Future`` of its result.

        The first attempt goes out on gRPC's own non-blocking call (no thread waits for it)
        where the strategy and the provider allow it; a retry, and strategies or filters that
        must run around the call, run on the client's workers.
        """
        invocation = self._reference.invocation(self._name, args, kwargs)
        if self._client._closed:
            refused: Future[Any] = Future()
            refused.set_exception(ConfigurationError(f"{invocation}: the client is closed"))
            return refused
        cluster = self._reference.cluster
        if cluster is not None:
            try:
                started = cluster.future(invocation, self._client._run)
            except Exception as exc:  # noqa: BLE001 - no provider, bad arguments: the future says so
                failed: Future[Any] = Future()
                failed.set_exception(exc)
                return failed
            if started is not None:
                return started
        return self._client._submit(self._invoke, invocation)

    def oneway(self, *args: Any, **kwargs: Any) -> None:
        """Send the call without waiting for (or receiving) a response."""
        self._invoke(self._reference.invocation(self._name, args, kwargs, oneway=True))

    def __repr__(self) -> str:
        return f"<MethodProxy {self._key}.{self._name}>"


class UnknownMethodError(MethodNotFoundError, AttributeError):
    """A proxy attribute that names no method of the service (``hasattr(proxy, name)`` is False)."""


class ServiceProxy:
    """Attribute access gives a ``MethodProxy`` per remote method."""

    def __init__(self, client: Client, reference: Reference) -> None:
        self._client = client
        self._reference = reference

    def __getattr__(self, name: str) -> MethodProxy:
        """The remote method ``name``. Known methods are cached; a name the listed providers do
        not publish raises ``MethodNotFoundError`` (also an ``AttributeError``, so ``hasattr``
        tells the truth); while no provider is listed any name is allowed, and not cached.
        A ``url=`` reference's providers are fixed: what it allows once, it always will, so
        it is cached too (a provider URL that names no methods allows any)."""
        if name.startswith("_"):
            raise AttributeError(name)
        methods = self._reference.methods()
        if methods is not None and name not in methods:
            raise UnknownMethodError(f"service {self._reference.key} has no method {name!r}; "
                                     f"its methods: {', '.join(sorted(methods))}")
        method = MethodProxy(self._client, self._reference, name)
        if methods is not None or type(self._reference.directory) is StaticDirectory:
            self.__dict__[name] = method  # cached: later lookups skip __getattr__
        return method

    def __repr__(self) -> str:
        return f"<ServiceProxy {self._reference.key}>"


class Client:
    """A consumer: references to services found in a registry.

    Args:
        registry: registry URL (``memory://`` by default) or a ``Registry``.
        application: this consumer's application name (routing, statistics).
        timeout: default deadline, seconds, for every call (no call waits forever).
        filters: consumer filters (instances or ``govrpc.filter`` names).
        max_message_size: bytes; larger requests or responses are refused.
        local_first: call a provider served by a ``govrpc.Server`` of this process
            in-process, without the network, through the same provider filters
            (default True; False makes every call cross gRPC).
        prefer_same_host: among remote providers, prefer those on this host.
        metrics_port, metrics_registry, metrics: Prometheus metrics of the calls, as on ``Server``.
        keepalive_time, keepalive_timeout: HTTP/2 pings to providers (``govrpc.rpc.server.Keepalive``):
            a provider that does not answer is left out of the candidates until it does.
        zone, region, zone_force, zone_threshold: this consumer's locality; it prefers providers of
            its zone and spills over to others only as that zone's healthy share falls below
            ``zone_threshold`` (``govrpc.router.zone``); ``zone_force`` keeps it in its zone.
        A list of registries (``registry=[url1, url2]``) is read as one: the union of their
        providers, the first one preferred for rules and registration (``govrpc.registry.multi``).
        credentials: grpc ``ChannelCredentials`` (``grpc.ssl_channel_credentials(...)``): every
            provider is dialled with TLS (one that does not serve it fails its handshake).
        tls: ``govrpc.TLS(ca_file=..., cert_file=..., key_file=..., server_name=...)``, the
            file-based shorthand for ``credentials``. Without either, a provider that
            publishes ``tls=true`` is refused rather than dialled in plaintext.
        token: the token sent with every call to providers that require one (``Server(token=...)``).
        health_check: ask each provider's ``grpc.health.v1`` service every so many seconds
            (default 5; None: never) whether it serves; one answering NOT_SERVING, like one whose
            registry health summary says so, is used only when no other provider is left
            (``govrpc.monitor.board``).
        report_interval: publish a summary of this consumer's calls of each service it calls
            (QPS, p50/p99, success rate, in flight, CPU, memory) into the registry every so many
            seconds, as ``Server(report_interval=...)`` does for providers (``govrpc.monitor.health``);
            None (default): no summaries.
    """

    def __init__(self, registry: str | Registry | Sequence[str] | None = None, *,
                 application: str = "govrpc-consumer",
                 timeout: float = DEFAULT_TIMEOUT, filters: Iterable[Filter | str] = (),
                 max_message_size: int = 4 * 1024 * 1024, max_workers: int = 32,
                 local_first: bool = True, prefer_same_host: bool = False, credentials: Any = None,
                 tls: TLS | None = None, token: str | None = None, metrics_port: int | None = None,
                 metrics_registry: Any = None, metrics: bool = False, keepalive_time: float = 10.0,
                 keepalive_timeout: float = 2.0, zone: str = "", region: str = "", zone_force: bool = False,
                 zone_threshold: float = 0.7, health_check: float | None = 5.0,
                 report_interval: float | None = None) -> None:
        timeout = check_seconds(timeout, "timeout")
        if health_check is not None:
            health_check = check_seconds(health_check, "health_check")
        if report_interval is not None:
            report_interval = check_seconds(report_interval, "report_interval")
        for option, flag in (("metrics", metrics), ("zone_force", zone_force)):
            if not isinstance(flag, bool):
                raise ConfigurationError(f"{option} must be True or False, not {flag!r}")
        for option, text in (("zone", zone), ("region", region)):
            if not isinstance(text, str) or any(c in text for c in "&=,/ "):
                raise ConfigurationError(f"{option} must be a plain name, not {text!r}")
        if isinstance(zone_threshold, bool) or not isinstance(zone_threshold, (int, float)) \
                or not 0.0 < zone_threshold <= 1.0:
            raise ConfigurationError(f"zone_threshold must be a share above 0 and at most 1, not {zone_threshold!r}")
        if metrics_port is not None:
            metrics_port = check_int("metrics_port", metrics_port, minimum=0, maximum=65535)
        keepalive = Keepalive(keepalive_time, keepalive_timeout)
        max_message_size = check_int("max_message_size", max_message_size, minimum=1, maximum=MAX_MESSAGE_SIZE)
        max_workers = check_int("max_workers", max_workers, minimum=1)
        if not isinstance(application, str) or not application:
            raise ConfigurationError(f"application must be a non-empty string, not {application!r}")
        for option, flag in (("local_first", local_first), ("prefer_same_host", prefer_same_host)):
            if not isinstance(flag, bool):
                raise ConfigurationError(f"{option} must be True or False, not {flag!r}")
        self._token = check_token(token) if token is not None else ""
        self._transports: weakref.WeakSet[Any] = weakref.WeakSet()  # where rotate_token changes the token
        self._transport_lock = threading.Lock()
        channel_creds = channel_credentials(credentials, tls)
        self.application = application
        self.timeout = float(timeout)
        self.filters = load_filters(filters, "consumer")
        recorder = MetricsRecorder.on(metrics_registry) \
            if metrics or metrics_port is not None or metrics_registry is not None else None
        self.metrics_port = serve_metrics(recorder, metrics_port) \
            if recorder is not None and metrics_port is not None else None
        self.registry = acquire_registry(registry) if isinstance(registry, (str, Registry)) or registry is None \
            else acquire_multi_registry(registry)
        if recorder is not None:
            for f in self.filters:
                if isinstance(f, (MetricsCallFilter, MetricsAttemptFilter)):
                    f.recorder = recorder
            recorder.watch(self)
        self.locality = {k: v for k, v in (("zone", zone), ("region", region)) if v}
        if zone_force:
            self.locality["zone_force"] = "true"
        if self.locality and zone_threshold != 0.7:
            self.locality["zone_threshold"] = str(zone_threshold)
        self.pool = ChannelPool(max_message_size=max_message_size, credentials=channel_creds,
                                options=tls.channel_options() if tls is not None else None, keepalive=keepalive,
                                application=application)
        self.pool.listeners.append(self._links_changed)
        self.max_message_size = max_message_size
        self.host = socket.gethostname()
        self.local_first = local_first
        self.prefer_same_host = prefer_same_host
        self._max_workers = max_workers
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._references: dict[tuple[Any, ...], Reference] = {}
        self._closed = False
        self._degradation = ClientDegradation(self.registry, application, self.filters)  # breakers, switches
        self._windows: dict[str, CallWindow] | None = None  # service -> calls since the last report
        self._reporter: HealthReporter | None = None
        if report_interval is not None:
            self._windows = {}
            for f in self.filters:
                if isinstance(f, CallSummaryFilter):
                    f.windows = self._windows
            registry_ = self.registry
            self._reporter = HealthReporter(
                report_interval, address=f"{local_address()}:{os.getpid()}", application=application, zone=zone,
                services=lambda: dict(self._windows or {}), serving=lambda service: True,
                put=lambda service, name, text: registry_.put_rule(service, MONITORS, name, text),
                delete=lambda service, name: registry_.delete_rule(service, MONITORS, name), side="consumer")
            self._reporter.start()
        pool = self.pool  # the probe's own calls are sync ones, whatever transports the references use
        self._prober = HealthProber(health_check, lambda url: GrpcInvoker(url, pool, application=application)) \
            if health_check is not None else None

    def _links_changed(self) -> None:
        """A provider's link went down or came back: every reference lists its providers again."""
        with self._lock:
            directories = [r.directory for r in self._references.values()]
        for directory in directories:
            refresh = getattr(directory, "refresh", None)
            if refresh is not None:
                refresh()

    def directory_sizes(self) -> dict[str, int]:
        """Service -> providers listed, over this client's references (metrics)."""
        with self._lock:
            references = list(self._references.values())
        sizes: dict[str, int] = {}
        for reference in references:
            sizes[reference.key.service] = sizes.get(reference.key.service, 0) + len(reference.directory.invokers)
        return sizes

    def registry_states(self) -> dict[str, bool]:
        """Registry -> whether its session is up (metrics)."""
        return registry_states(self.registry)

    # -- references ------------------------------------------------------------
    def _consumer_url(self, key: ServiceKey, options: Mapping[str, Any]) -> URL:
        params = {"application": self.application, "pid": os.getpid(), "timestamp": int(time.time() * 1000)}
        if key.version:
            params["version"] = key.version
        if key.group:
            params["group"] = key.group
        params.update(self.locality)
        params.update({k: v for k, v in options.items() if v is not None})
        # the consumer's own address, so host-based route rules ("host = 10.20.* => ...") can match it
        return URL(CONSUMER, local_address(), 0, key.service, params)

    def reference(self, service: str, *, version: str = "", group: str = "", cluster: str = "failover",
                  loadbalance: str = "random", retries: int = 2, timeout: float | None = None,
                  url: str | Sequence[str] | None = None, routes: Mapping[str, str] | None = None,
                  transport: Callable[[URL], Invoker] | None = None, **options: Any) -> Reference:
        """The (cached) reference for a service key and options; see ``proxy``.

        ``transport`` makes each provider's invoker instead of the client's own (``channel``'s stubs)."""
        if self._closed:
            raise ConfigurationError("client is closed")
        if timeout is not None:
            timeout = check_seconds(timeout, "timeout")
        key = ServiceKey(service, version, group)
        methods = method_options(options.pop("methods", {}))  # per-method options become {method}.{key}
        if isinstance(options.get("breaker"), Mapping):  # breaker={"failures": 5} -> breaker.failures=5
            options.update(BreakerSettings.from_mapping(options.pop("breaker")))
        options = {**check_options({"retries": retries, **options}), **methods}  # each checked by its owner
        cache_key = (key, cluster, loadbalance, retries, timeout,
                     tuple(url) if isinstance(url, (list, tuple)) else url, tuple(sorted(options.items())),
                     tuple(sorted((routes or {}).items())), transport)
        with self._lock:
            existing = self._references.get(cache_key)
            if existing is not None:
                return existing
        get_extension("govrpc.cluster", cluster)  # unknown names fail here, listing the installed ones
        get_extension("govrpc.loadbalance", loadbalance)
        consumer_url = self._consumer_url(key, {"cluster": cluster, "loadbalance": loadbalance,
                                                "timeout": timeout, **options})
        chain = RouterChain(consumer_url, routes=routes, local_first=self.local_first,
                            prefer_same_host=self.prefer_same_host)  # raises RuleError for a bad route
        # invoker-level filters are bound to each provider by the directory, the others here
        per_provider = [f for f in self.filters if f.level == "invoker"]
        per_call = [f for f in self.filters if f.level != "invoker"]
        if self._windows is not None:  # before the reference filters bind: the summary filter finds it
            self._windows.setdefault(key.service, CallWindow())
        directory: Directory
        if url is not None:
            urls = [url] if isinstance(url, str) else list(url)
            invokers = [(transport or self._invoker_for)(_direct_url(u, key)) for u in urls]
            config = ReferenceConfig(consumer_url)  # not configured by the registry
            directory = StaticDirectory(key, consumer_url, invokers, per_provider, config)
        else:
            config = ReferenceConfig.watching(self.registry, consumer_url)
            directory = RegistryDirectory(self.registry, key, consumer_url, transport or self._invoker_for,
                                          per_provider, config)
        directory.router_chain = chain
        try:
            configured = ConfiguredClusterInvoker(directory, config)  # builds every strategy and balancer
        except Exception:
            directory.close()
            raise
        try:  # binding the reference filters may refuse the settings (a mask naming no mock)
            reference = Reference(key, consumer_url, directory, configured, timeout or self.timeout, config,
                                  per_call)
        except Exception:
            configured.close()
            raise
        with self._lock:
            existing = self._references.get(cache_key)
            if existing is not None:
                reference.close()
                return existing
            self._references[cache_key] = reference
        if isinstance(directory, RegistryDirectory):
            directory.start()
            try:  # the providers are known now: refuse hash arguments their methods do not have
                check_hash_arguments(consumer_url, directory.urls)
            except ConfigurationError:
                with self._lock:
                    self._references.pop(cache_key, None)
                reference.close()
                raise
            self.registry.register(consumer_url)
            # every balancer avoids a provider that reports itself unhealthy (govrpc.monitor.board)
            reference.health_board = HealthBoard(self.registry, directory)
            if self._prober is not None:
                self._prober.watch(directory)
                reference.health_prober = self._prober
        return reference

    def _invoker_for(self, url: URL) -> Invoker:
        if self.local_first:
            export = find_local(url)
            if export is not None:
                invoker: InProcessInvoker | GrpcInvoker = InProcessInvoker(
                    export, url, self.max_message_size, application=self.application, token=self._token)
                with self._transport_lock:
                    self._transports.add(invoker)
                return invoker
        invoker = GrpcInvoker(url, self.pool, application=self.application, token=self._token)
        with self._transport_lock:
            self._transports.add(invoker)
        return invoker

    def rotate_token(self, token: str) -> None:
        """Send ``token`` instead of the current one from the next call on, to every provider.

        Rotation without a dropped call: the providers accept old and new first
        (``Server.rotate_token([old, new])`` or ``Admin.accept_tokens``), then every consumer
        rotates, then the providers accept only the new one. Raises ``ConfigurationError``
        for a bad token.
        """
        with self._transport_lock:
            self._token = check_token(token)
            for invoker in list(self._transports):
                invoker.set_token(self._token)

    def proxy(self, service: str, **options: Any) -> ServiceProxy:
        """A proxy whose methods call ``service`` through governance.

        Options: ``version``, ``group``, ``cluster`` (default failover),
        ``loadbalance`` (default random), ``retries`` (default 2), ``timeout``
        (seconds), ``url`` (call these provider URLs directly, bypassing the registry),
        ``routes`` (this consumer's own route rules, name -> text; they hide registry
        rules of the same name), ``tag`` / ``tag_force`` (the tag of every call, see
        ``govrpc.router.tag``), ``methods`` (per-method cluster options, e.g.
        ``{"find": {"loadbalance": "consistenthash"}}``; see docs/cluster.md); other
        options (cluster options such as ``forks``, ``hash.arguments``) are published on the consumer URL.
        Raises ``ExtensionNotFoundError`` for an unknown cluster or balancer name.
        """
        return ServiceProxy(self, self.reference(service, **options))

    def channel(self, service: str, **options: Any) -> Any:
        """A ``grpc.Channel`` for generated stubs of ``service`` (``helloworld.Greeter``): every
        call goes through discovery, routing, balancing, failover and the filters. Options as
        ``proxy`` (``url=`` a plain grpcio server's address, or a list of them). See
        ``govrpc.rpc.channel``."""
        from govrpc.rpc.channel import GovernedChannel

        return GovernedChannel(self, service, options)

    def invoke(self, service: str, method: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
               *, timeout: float | None = None, **options: Any) -> Any:
        """Generic call: no class or stub needed."""
        reference = self.reference(service, **options)
        if timeout is not None:
            timeout = check_seconds(timeout, "timeout")
        return reference.invoke(reference.invocation(method, tuple(args), kwargs or {}, timeout=timeout))

    # -- async helpers -------------------------------------------------------------
    def _workers(self) -> ThreadPoolExecutor:
        if self._closed:
            raise ConfigurationError("the client is closed")
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(self._max_workers, thread_name_prefix="govrpc-client")
        return self._executor

    def _submit(self, fn: Any, invocation: Invocation) -> Future[Any]:
        context = contextvars.copy_context()
        return self._workers().submit(context.run, fn, invocation)

    def _run(self, fn: Any) -> Future[Any]:
        """Run ``fn`` on a worker in the caller's context (what follows a failed non-blocking attempt)."""
        return self._workers().submit(contextvars.copy_context().run, fn)

    # -- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        """Unsubscribe, deregister, then close channels once the calls in flight have ended
        (each within its deadline). Calls made after this fail with "the client is closed"."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            references = list(self._references.values())
            self._references.clear()
        longest = max((r.timeout for r in references), default=0.0)
        for reference in references:
            reference._closed = True
            reference.invoke = _closed  # refuse new calls first; those running go on
        if self._executor is not None:
            self._executor.shutdown(wait=True)  # .future() calls running finish, queued ones are refused
        for reference in references:
            if isinstance(reference.directory, RegistryDirectory):
                try:
                    self.registry.unregister(reference.url)
                except Exception:  # noqa: BLE001
                    log.exception("cannot deregister consumer %s", reference.url)
            reference.close()  # each provider's channel goes back to the pool once its calls end
        if self._prober is not None:
            self._prober.close()
        if self._reporter is not None:
            self._reporter.stop()  # its summaries are deleted
        # no call outlives its deadline: wait for the pool to empty at most that long
        end = time.monotonic() + longest
        while self.pool.addresses() and time.monotonic() < end:
            time.sleep(0.01)
        self.pool.close()
        self._degradation.close()
        release_registry(self.registry)
        if isinstance(self.registry, MultiRegistry):  # not shared: it releases its members
            self.registry.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _direct_url(text: str, key: ServiceKey) -> URL:
    """A provider URL given by hand (``grpc://host:port``), completed with the service key."""
    url = URL.parse(text)
    params = dict(url.params)
    if PING_INTERVAL_KEY in params and accepted_pings(url) is None:
        raise ConfigurationError(f"{text}: ping_interval must be a number of seconds from 0 to 86400, "
                                 f"not {params[PING_INTERVAL_KEY]!r}")
    if key.version and key.version != "*":
        params.setdefault("version", key.version)
    if key.group and key.group != "*":
        params.setdefault("group", key.group)
    return URL(url.scheme, url.host, url.port, url.path or key.service, params)
