"""``govrpc.Server``: hosts marked services on gRPC and registers them.

Start binds the port, then registers one provider URL per service. Stop is
the order a rolling deploy needs: deregister, wait for consumers to see it,
refuse new calls and drain in-flight ones, then stop.
"""

from __future__ import annotations

import enum
import functools
import logging
import os
import signal
import threading
import time
from typing import Any, Callable, Iterable, Mapping

from govrpc.cluster.configured import method_options
from govrpc.configurator import ConfiguratorWatcher, configure_server
from govrpc.degrade.switches import watch_switches
from govrpc.exceptions import ConfigurationError, MethodNotFoundError
from govrpc.extension import get_extension
from govrpc.invocation import (
    PEERS_KEY,
    PEERS_WEIGHT_KEY,
    Filter,
    Invocation,
    Invoker,
    build_filter_chain,
    load_filters,
    shortcut,
)
from govrpc.monitor.health import MONITORS, CallWindow, HealthReporter
from govrpc.monitor.metrics import MetricsProviderFilter, MetricsRecorder, serve_metrics
from govrpc.monitor.orca import OrcaFilter
from govrpc.options import MAX_MESSAGE_SIZE, check_int, check_options, check_seconds, known_options
from govrpc.registry.base import Registry, acquire_registry, release_registry
from govrpc.rpc.inprocess import LocalWorkers, export_local, find_local, withdraw_local
from govrpc.rpc.server import PING_INTERVAL_KEY, STOP_BOUND, ExportedService, GrpcServer, Keepalive
from govrpc.security import TLS, TLS_KEY, TokenAuthFilter, check_tokens, server_credentials
from govrpc.service import ServiceSpec, describe
from govrpc.url import PROVIDER_SCHEMES, URL, ServiceKey

__all__ = ["ProviderInvoker", "Server", "ServerState"]

log = logging.getLogger("govrpc.server")

SETTLE_SECONDS = 0.1


class ProviderInvoker(Invoker):
    """Calls the user's method on the service instance: the end of the provider chain."""

    def __init__(self, instance: Any, spec: ServiceSpec, url: URL) -> None:
        self.url = url
        self.spec = spec
        self.methods = {m.name: getattr(instance, m.name) for m in spec.methods}

    def invoke(self, invocation: Invocation) -> Any:
        method = self.methods.get(invocation.method)
        if method is None:
            raise MethodNotFoundError(
                f"service {self.spec.key} has no method {invocation.method!r}; "
                f"its methods: {', '.join(sorted(self.methods))}", invocation=invocation)
        return method(*invocation.args, **invocation.kwargs)


class _Hosted:
    """One hosted service: its published URL, the end of its chain, what the transport serves,
    and the configurators watched for it (``configured``: the URL its filters are bound to)."""

    __slots__ = ("url", "target", "exported", "watcher", "configured", "peers", "peers_listener")

    def __init__(self, url: URL, target: Any, watcher: ConfiguratorWatcher) -> None:
        self.peers: tuple[int, int] | None = None  # (instances, their weights): once a filter wants them
        self.peers_listener: Any = None
        self.url = url
        self.target = target
        self.exported: ExportedService | None = None
        self.watcher = watcher
        self.configured = url


def _servicer_target(url: URL, handlers: dict[str, Any]) -> Invoker:
    from govrpc.rpc.servicer import ServicerInvoker

    return ServicerInvoker(url, handlers)


def _set_shortcut(exported: ExportedService, chain: Invoker, target: Any) -> None:
    """Let calls skip the Invocation when nothing reads it: no filter bound, or only filters that
    run from the request metadata alone (their ``scope``s, nested). The methods go last: a call
    reads them first."""
    scope = shortcut(chain, target)
    exported.scope = scope
    if chain is target or scope is not None:
        exported.direct = target.methods


def _servicer_handlers(spec: ServiceSpec, handlers: dict[str, Any], exported: ExportedService) -> dict[str, Any]:
    from govrpc.rpc.servicer import servicer_handlers

    return servicer_handlers(spec, handlers, exported)


def _provider_options(options: Mapping[str, Any]) -> dict[str, str]:
    """``Server.add``'s settings as URL text, each checked by the option that owns it."""
    options = dict(options)
    methods = method_options(options.pop("methods", None) or {})
    known = known_options()
    for key in options:
        if key not in known:
            raise ConfigurationError(f"unknown provider option {key!r}; options: {', '.join(known)}")
    return {**check_options(options), **methods}


class ServerState(str, enum.Enum):
    """A ``Server``'s life: new -> started -> stopping -> stopped (a failed start goes straight to stopped)."""

    NEW = "new"
    STARTED = "started"
    STOPPING = "stopping"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value


class Server:
    """A gRPC server hosting govrpc services, registered in a registry.

    Args:
        registry: registry URL (``memory://`` by default) or a ``Registry``.
        host: address to bind (and to publish, unless ``advertise`` is given).
        port: port to bind; 0 picks a free one (see ``port`` after start).
        max_workers: threads serving calls.
        weight: published load-balancing weight (> 0).
        tags: free-form parameters published with every service (``zone``, ``tag``...).
        application: the application name published with every service.
        warmup: seconds over which consumers ramp this provider's weight up.
        serializer: name of the serializer for non-protobuf methods.
        max_message_size: bytes; larger requests or responses are refused.
        filters: provider filters (instances or ``govrpc.filter`` names).
        metrics_port: serve Prometheus metrics over HTTP on this port of ``host`` (0: a free
            one, see ``metrics_port`` after start); None (default) serves none.
        metrics_registry: a prometheus_client ``CollectorRegistry`` to record metrics on
            (default: the process's ``REGISTRY`` once metrics are on).
        metrics: record Prometheus metrics even without ``metrics_port`` (the user scrapes
            the registry); implied by ``metrics_port`` and ``metrics_registry``.
        health: serve ``grpc.health.v1.Health`` (per service and "" for the server), NOT_SERVING
            from the moment ``stop`` begins. Default (None): served when grpcio-health-checking
            is installed (the ``monitor`` extra; a warning says so once when it is not); True
            requires it (``ConfigurationError`` without it); False: not served.
        reflection: serve gRPC server reflection (default False).
        report_interval: publish a health summary of each service into the registry every
            so many seconds (``govrpc.monitor.health``); None (default): no summaries.
        keepalive_time, keepalive_timeout: HTTP/2 pings to consumers (``govrpc.rpc.server.Keepalive``).
        orca: True: every answer carries an ORCA load report of this process (gRFC A51,
            ``govrpc.monitor.orca``); a callable: the report it returns (the application's load).
        credentials: grpc ``ServerCredentials`` (``grpc.ssl_server_credentials(...)``): serve TLS
            only, published as ``tls=true`` so consumers dial it with TLS.
        tls: ``govrpc.TLS(cert_file=..., key_file=..., ca_file=...)``, the file-based shorthand
            for ``credentials`` (``ca_file`` given: mutual TLS, clients need a certificate).
        token: a token (or several, all accepted: a rotation's overlap) every call must carry
            (``Client(token=...)``); other calls get ``UnauthenticatedError`` and run nothing.
            ``rotate_token`` changes the accepted ones while serving.
    """

    def __init__(self, registry: str | Registry | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 max_workers: int = 16, weight: int = 100, tags: Mapping[str, str] | None = None,
                 application: str = "", warmup: int = 600, serializer: str = "msgpack",
                 max_message_size: int = 4 * 1024 * 1024, filters: Iterable[Filter | str] = (),
                 advertise: str | None = None, credentials: Any = None, tls: TLS | None = None,
                 token: str | Iterable[str] | None = None, metrics_port: int | None = None,
                 metrics_registry: Any = None, metrics: bool = False, health: bool | None = None,
                 reflection: bool = False, report_interval: float | None = None, keepalive_time: float = 10.0,
                 keepalive_timeout: float = 2.0,
                 orca: bool | Callable[[], Mapping[str, float]] = False) -> None:
        port = check_int("port", port, minimum=0, maximum=65535)
        for option, flag in (("metrics", metrics), ("health", health), ("reflection", reflection)):
            if not isinstance(flag, bool) and not (option == "health" and flag is None):
                raise ConfigurationError(f"{option} must be True or False, not {flag!r}")
        if metrics_port is not None:
            metrics_port = check_int("metrics_port", metrics_port, minimum=0, maximum=65535)
        if report_interval is not None:
            report_interval = check_seconds(report_interval, "report_interval")
        max_workers = check_int("max_workers", max_workers, minimum=1)
        weight = check_int("weight", weight, minimum=1)
        warmup = check_int("warmup", warmup, minimum=0)
        # grpc takes -1 as "unlimited" and cannot go past a signed 32-bit length
        max_message_size = check_int("max_message_size", max_message_size, minimum=1, maximum=MAX_MESSAGE_SIZE)
        for option, text in (("host", host), ("application", application), ("serializer", serializer)):
            if not isinstance(text, str):
                raise ConfigurationError(f"{option} must be a string, not {text!r}")
        if not host:
            raise ConfigurationError("host must name an address to bind, not ''")
        self._registry_address = registry
        self.registry: Registry | None = None
        self.host = host
        self.advertise = advertise or host
        self.weight = weight
        self.tags = dict(tags or {})
        self.application = application or "govrpc-provider"
        self.warmup = warmup
        self.serializer_name = serializer
        self._serializer = get_extension("govrpc.serializer", serializer)()
        self.filters = load_filters(filters, "provider")
        self.token_auth = next((f for f in self.filters if isinstance(f, TokenAuthFilter)), None)
        if token is not None:
            if self.token_auth is not None:
                raise ConfigurationError("give token= or a token filter, not both")
            self.token_auth = TokenAuthFilter(check_tokens(token))
            self.filters.insert(0, self.token_auth)
        credentials = server_credentials(credentials, tls)
        self.tls = credentials is not None
        self.max_message_size = max_message_size
        self.metrics_port = metrics_port
        self.report_interval = report_interval
        self._windows: dict[str, CallWindow] = {}
        self._recorder = MetricsRecorder.on(metrics_registry) \
            if metrics or metrics_port is not None or metrics_registry is not None else None
        for f in self.filters:
            if isinstance(f, MetricsProviderFilter):
                if self._recorder is not None:
                    f.recorder = self._recorder
                if report_interval is not None:
                    f.windows = self._windows
        if not isinstance(orca, bool) and not callable(orca):
            raise ConfigurationError(f"orca must be True, False or a callable returning load figures, not {orca!r}")
        if orca is not False:
            self.tags.setdefault("orca", "true")
            for f in self.filters:
                if isinstance(f, OrcaFilter) and callable(orca):
                    f.source = orca
        self._reporter: HealthReporter | None = None
        self._not_serving: set[str] = set()  # services the provider itself reports NOT_SERVING
        self._grpc = GrpcServer(host, port, max_workers=max_workers, max_message_size=max_message_size,
                                keepalive=Keepalive(keepalive_time, keepalive_timeout), health=health,
                                reflection=reflection, credentials=credentials)
        # in-process (local-first) calls get workers of their own, as many as remote ones (made on demand)
        self._local_workers = LocalWorkers(max_workers)
        self._services: dict[ServiceKey, tuple[Any, ServiceSpec]] = {}
        self._servicers: dict[ServiceKey, dict[str, Any]] = {}  # generated servicers' handlers
        self._settings: dict[ServiceKey, dict[str, str]] = {}
        self._hosted: dict[ServiceKey, _Hosted] = {}
        self._rebind_lock = threading.RLock()
        self.urls: list[URL] = []
        self.invokers: dict[ServiceKey, Invoker] = {}
        self._state: str = ServerState.NEW  # a str Enum: plain strings compare equal
        self._lock = threading.Lock()

    # -- configuration ------------------------------------------------------------
    def add(self, instance: Any, **options: Any) -> Server:
        """Host ``instance``, an object of a class marked with ``@govrpc.service``.

        Before ``start`` the service is registered on start; after it, at once.
        ``options`` are provider settings published on its URL and read by the provider
        filters, with the names configurators use (``tps=200``, ``concurrency=8``; per
        method through ``methods={"find": {"tps": 50}}``). Registry configurators override
        them at run time (see ``govrpc.configurator``): the filter chain is rebound then.

        Raises ``ConfigurationError`` naming an unknown option or a bad value.
        """
        return self._host(instance, describe(instance), _provider_options(options))

    def add_servicer(self, add_to_server: Any, servicer: Any, *, version: str = "", group: str = "",
                     **options: Any) -> Server:
        """Host a generated gRPC servicer (``add_GreeterServicer_to_server, GreeterServicer()``) under
        its gRPC service name, with the provider filters around its unary methods (``options`` as
        ``add``); see ``govrpc.rpc.servicer``. Raises ``ConfigurationError`` for what is not a
        generated servicer."""
        from govrpc.rpc.servicer import describe_servicer

        settings = _provider_options(options)
        spec, handlers = describe_servicer(add_to_server, servicer, version, group)
        with self._lock:
            if spec.key not in self._services:
                self._servicers[spec.key] = handlers
        return self._host(servicer, spec, settings)

    def _host(self, instance: Any, spec: ServiceSpec, settings: dict[str, str]) -> Server:
        with self._lock:
            if self._state in ("stopping", "stopped"):
                raise ConfigurationError(f"cannot add service {spec.key}: the server is {self._state}")
            if spec.key in self._services:
                other = type(self._services[spec.key][0]).__qualname__
                raise ConfigurationError(
                    f"service {spec.key} is already hosted by this server (class {other}); "
                    f"give {type(instance).__qualname__} another name, version or group")
            self._services[spec.key] = (instance, spec)
            self._settings[spec.key] = settings
            started = self._state == "started"
        if started:
            self._export(instance, spec)
        return self

    def _export(self, instance: Any, spec: ServiceSpec, publish: bool = True) -> URL:
        """Serve one service, watch its configurators, then register it; its filters are bound to
        the URL it is published with (configurators applied, see ``configured_url``)."""
        url = self._provider_url(spec)
        if self.report_interval is not None:
            self._windows.setdefault(spec.key.service, CallWindow())  # versions of a service share one
        assert self.registry is not None
        servicer = self._servicers.get(spec.key)
        provider: Any = self._provider(instance, spec, url) if servicer is None else _servicer_target(url, servicer)
        watcher = ConfiguratorWatcher(self.registry, spec.key.service, "")  # "": rules without application
        hosted = _Hosted(url, provider, watcher)
        invoker = self._chain(provider, url)
        self.invokers[spec.key] = invoker
        filtered = invoker is not provider  # else nothing reads the Invocation: calls skip building one
        hosted.exported = ExportedService(spec.key, spec.methods, invoker, self._serializer)
        _set_shortcut(hosted.exported, invoker, provider)
        if servicer is not None:  # its own handlers, around the chain the exported service holds now
            hosted.exported.handlers = _servicer_handlers(spec, servicer, hosted.exported)
        self._grpc.export(hosted.exported)
        # before registering: a consumer in this process may call it in-process (not a servicer,
        # which needs its grpc.ServicerContext, nor a streaming method: those cross gRPC)
        if servicer is None and self.in_process and not any(m.stream for m in spec.methods):
            export_local(url, invoker, self._serializer, spec.methods, self.max_message_size,
                         self._local_workers, filtered=filtered)
        self._hosted[spec.key] = hosted
        watcher.add_listener(functools.partial(self._reconfigured, spec.key))
        watcher.start()  # calls back at once with the rules stored now
        if any(f.wants_peers(url) for f in self.filters):  # set in code: no rule change would start the watch
            self._rebind(spec.key)
        if publish:
            self._register(url)
        return url

    def _register(self, url: URL) -> None:
        assert self.registry is not None
        self.registry.register(url)
        self.urls.append(url)

    # -- what the asyncio twin (govrpc.aio.server) changes; the rest of hosting is shared ----------
    in_process = True
    """Offer hosted services to consumers of this process in-process (local-first)."""

    def _provider(self, instance: Any, spec: ServiceSpec, url: URL) -> Invoker:
        """The end of a service's chain: what calls the user's method."""
        return ProviderInvoker(instance, spec, url)

    def _chain(self, target: Invoker, url: URL) -> Invoker:
        """The provider filters bound to ``url`` around ``target`` (on export and on every rebind)."""
        return build_filter_chain(self.filters, target, url)

    # -- run-time configuration: the provider side's seam ---------------------------
    def configured_url(self, key: ServiceKey) -> URL:
        """The URL the provider filters of ``key`` are bound to: its published URL with the
        provider-side settings of the registry's configurators meant for it applied (rules
        without ``application``: general ones, and ``address`` rules naming this provider)."""
        return self._hosted[key].configured

    def _reconfigured(self, key: ServiceKey, watcher: ConfiguratorWatcher) -> None:
        self._rebind(key)

    def _peers_changed(self, key: ServiceKey, urls: Any) -> None:
        hosted = self._hosted.get(key)
        if hosted is None:
            return
        own = hosted.url
        live = [u for u in urls if u.scheme in PROVIDER_SCHEMES and key.matches(u) and u.address != own.address]
        weights = [int(u.params.get("weight", 100)) if str(u.params.get("weight", "")).isdigit() else 100
                   for u in live]
        hosted.peers = (len(live) + 1, sum(weights) + self.weight)  # itself, registered or not yet
        self._rebind(key)

    def _rebind(self, key: ServiceKey) -> None:
        """Configurators (or the live instances) of a hosted service changed: bind the provider
        filters to the new URL and swap the chain whole (calls in flight finish on the old one).
        Settings a filter refuses leave the last good chain in force, with a warning. Any
        stage's provider options take effect this way: nothing here knows a stage."""
        subscribe = None
        with self._rebind_lock:
            hosted = self._hosted.get(key)
            if hosted is None or hosted.exported is None or self._state in ("stopping", "stopped"):
                return
            url = configure_server(hosted.url, hosted.watcher.rules)
            if hosted.peers is None and any(f.wants_peers(url) for f in self.filters):
                hosted.peers = (1, self.weight)
                hosted.peers_listener = subscribe = functools.partial(self._peers_changed, key)
            if hosted.peers is not None:
                url = url.with_params(**{PEERS_KEY: hosted.peers[0], PEERS_WEIGHT_KEY: hosted.peers[1]})
            if url != hosted.configured:
                try:
                    self._swap(key, hosted, url, self._chain(hosted.target, url))
                except ConfigurationError as exc:
                    log.warning("configurators of %s give provider settings that do not work (%s); "
                                "keeping the previous ones", key, exc)
        if subscribe is not None and self.registry is not None:  # outside the lock: it calls back
            self.registry.subscribe(key.service, subscribe)

    def _swap(self, key: ServiceKey, hosted: _Hosted, url: URL, invoker: Invoker) -> None:
        hosted.configured = url
        self.invokers[key] = invoker
        filtered = invoker is not hosted.target
        exported = hosted.exported
        assert exported is not None
        # a call reads the invoker, then the shortcut: clear the shortcut before, set it after
        exported.direct = {}
        exported.invoker = invoker
        _set_shortcut(exported, invoker, hosted.target)
        local = find_local(hosted.url)
        if local is not None:
            local.invoker, local.filtered = invoker, filtered
        log.info("provider filters of %s bound to %s", key, url)

    # -- lifecycle ---------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._grpc.port

    def _provider_url(self, spec: ServiceSpec) -> URL:
        params: dict[str, Any] = {}
        if spec.key.version:
            params["version"] = spec.key.version
        if spec.key.group:
            params["group"] = spec.key.group
        params.update(
            methods=",".join(m.name for m in spec.methods),
            application=self.application,
            weight=self.weight,
            warmup=self.warmup,
            serialization=self.serializer_name,
            timestamp=int(time.time() * 1000),
            pid=os.getpid(),
        )
        if self._grpc.keepalive.time:  # how often consumers may ping it, idle or not
            params[PING_INTERVAL_KEY] = f"{self._grpc.keepalive.min_ping_interval:g}"
        for m in spec.methods:
            if m.is_protobuf:
                params[f"{m.name}.response"] = m.response_type.DESCRIPTOR.full_name  # type: ignore[union-attr]
            if m.idempotent:
                params[f"{m.name}.idempotent"] = "true"
            if m.arity is not None:  # lets consumers check hash.arguments when they are configured
                params[f"{m.name}.args"] = m.arity
            if m.stream:  # consumers open the right kind of call
                params[f"{m.name}.stream"] = m.stream
        if self.tls:
            params[TLS_KEY] = "true"
        if self._grpc.hosts(spec.key.service):  # another version/group is served already: calls name theirs
            params["dispatch"] = "key"
        params.update(self.tags)
        params.update(self._settings.get(spec.key, {}))
        return URL("grpc", self.advertise, self.port, spec.key.service, params)

    def rotate_token(self, tokens: str | Iterable[str]) -> None:
        """Accept ``tokens`` from now on (give old and new together first, so no call is dropped).

        Raises ``ConfigurationError`` when the server was made without ``token`` or a token is bad.
        """
        if self.token_auth is None:
            raise ConfigurationError("this server was made without token=: it checks no token to rotate")
        self.token_auth.rotate(tokens)

    @property
    def state(self) -> ServerState:
        """Where the server is in its life: new, started, stopping or stopped (a failed start ends stopped)."""
        return ServerState(self._state)

    def start(self) -> Server:
        """Bind, serve, then register every service added so far. Returns the server.

        A start that fails (the port is taken, the registry refuses a service...) leaves
        nothing behind: the services it registered are deregistered, the port is released,
        the server is ``STOPPED`` and ``stop()`` does nothing.
        """
        with self._lock:
            if self._state != ServerState.NEW:
                raise ConfigurationError(f"server already {self._state}")
            self.registry = acquire_registry(self._registry_address, provider=True)
            try:
                self._grpc.bind()  # the port, for the URLs; it serves once the services below are in
            except BaseException:
                release_registry(self.registry)
                self._local_workers.shutdown(wait=False)
                self._state = ServerState.STOPPED
                raise
            services = self._begin()
        try:
            self._publish(services)
        except BaseException:
            log.warning("start of %s:%d failed: deregistering and stopping", self.host, self.port)
            for _, spec in services:  # the one that failed may be published in-process already
                withdraw_local(self._provider_url(spec))
            self.stop(grace=0)
            raise
        log.info("serving %s on %s:%d", ", ".join(str(k) for k in self._services) or "nothing yet",
                 self.host, self.port)
        return self

    def _begin(self) -> list[tuple[Any, ServiceSpec]]:
        """(Under ``_lock``, the port bound) the server is started: its filters get the registry;
        returns the services added so far, for ``_publish``."""
        self._state = ServerState.STARTED
        self._switches = watch_switches(self.registry)  # business switches reach provider code too
        for f in self.filters:
            f.use_registry(self.registry)
        return list(self._services.values())

    def _publish(self, services: Iterable[tuple[Any, ServiceSpec]]) -> None:
        """Serve metrics, export and register ``services``, start the health summaries (blocking:
        registry writes)."""
        if self._recorder is not None and self.metrics_port is not None:
            self.metrics_port = serve_metrics(self._recorder, self.metrics_port, self.host)
        urls = [self._export(instance, spec, publish=False) for instance, spec in services]
        self._serve()  # grpc serves them before any consumer can find them in the registry
        for url in urls:
            self._register(url)
        if self.report_interval is not None:
            self._start_reports()

    def _serve(self) -> None:
        """Start the bound grpc server: what is exported now is given to grpc as registered
        methods (found without a lookup). (The asyncio twin serves from its start.)"""
        self._grpc.serve()

    def set_serving(self, serving: bool, service: str = "") -> None:
        """The provider's own verdict on its health: False reports ``service`` ("" : every service)
        NOT_SERVING on grpc.health.v1 and in its next health summary, published at once, so
        consumers balancing by health (``healthweighted``) leave it within moments; True undoes it."""
        if not isinstance(serving, bool):
            raise ConfigurationError(f"serving must be True or False, not {serving!r}")
        services = [service] if service else sorted({k.service for k in self._services})
        with self._lock:
            for name in services:
                if serving:
                    self._not_serving.discard(name)
                else:
                    self._not_serving.add(name)
        for name in services if service else ["", *services]:
            self._grpc.set_serving(name, serving)
        if self._reporter is not None and self._state == ServerState.STARTED:
            self._reporter.report()

    def _start_reports(self) -> None:
        registry = self.registry
        assert registry is not None and self.report_interval is not None

        self._reporter = HealthReporter(
            self.report_interval, address=f"{self.advertise}:{self.port}", application=self.application,
            zone=str(self.tags.get("zone", "")), services=lambda: dict(self._windows),
            serving=lambda service: self._state == ServerState.STARTED and service not in self._not_serving,
            put=lambda service, name, text: registry.put_rule(service, MONITORS, name, text),
            delete=lambda service, name: registry.delete_rule(service, MONITORS, name))
        self._reporter.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops (or ``timeout`` passes); True if it stopped."""
        return self._grpc.wait(timeout)

    def serve(self, grace: float = 5.0,
              signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT)) -> None:
        """Serve until one of ``signals`` arrives, then deregister, drain and stop: a provider's main loop.

        A rolling deploy's SIGTERM (or Ctrl-C) thus means deregister, drain in-flight calls
        for up to ``grace`` seconds, stop; ``serve`` returns at most ``STOP_BOUND`` seconds
        after the grace even when a provider method is still running, and nothing waits for
        that method, so the process can exit. Starts the server if it is new; returns too when
        ``stop()`` is called elsewhere; puts the previous signal handlers back on return.

        Raises:
            ConfigurationError: a bad grace, or not on the main thread (only it gets signals).
        """
        if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not 0 <= grace < float("inf"):
            raise ConfigurationError(f"grace must be a non-negative number of seconds, not {grace!r}")
        if threading.current_thread() is not threading.main_thread():
            raise ConfigurationError("serve() handles signals, so it runs on the main thread; "
                                     "elsewhere use start(), wait() and stop()")
        requested = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: requested.set()) for sig in signals}
        try:
            if self._state == ServerState.NEW:
                self.start()
            while self._state == ServerState.STARTED and not requested.wait(0.2):
                pass
        finally:
            try:
                self.stop(grace)
                self.wait(grace + STOP_BOUND)  # a stop begun elsewhere
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    def stop(self, grace: float = 5.0) -> None:
        """Deregister, let consumers notice, drain in-flight calls for up to ``grace`` s, stop."""
        with self._lock:
            if self._state != "started":
                self._state = "stopped"
                return
            self._state = "stopping"
        deadline = time.monotonic() + (grace or 0)  # the whole stop fits in the grace (+ STOP_BOUND)
        self._grpc.enter_graceful_shutdown()  # health checks say NOT_SERVING before anything else changes
        delay = self._withdraw()
        if grace:
            time.sleep(min(delay, grace))
        for url in self.urls:
            withdraw_local(url)  # new in-process calls fail over from here
        self._grpc.stop(max(0.0, deadline - time.monotonic()))
        # in-process calls drain within the same grace as gRPC ones; those still queued after it are
        # cancelled (their callers fail over), those running are left behind on their worker threads
        if not self._local_workers.drain(deadline - time.monotonic()):
            log.warning("in-process calls still running after the %s s grace", grace)
        self._local_workers.shutdown(wait=False)
        self._release()
        log.info("stopped %s:%d", self.host, self.port)

    def _withdraw(self) -> float:
        """The first steps of a stop (state "stopping"): summaries, configurator watches and
        registrations end; returns the seconds consumers need to notice (blocking: registry writes)."""
        registry = self.registry
        assert registry is not None
        if self._reporter is not None:
            self._reporter.stop()
        # not under the rebind lock: a rebind running on the registry's delivery thread would wait
        # for it while this waits for that thread (the state is "stopping": no rebind starts now)
        for hosted in self._hosted.values():
            hosted.watcher.close()
            if hosted.peers_listener is not None:
                registry.unsubscribe(hosted.url.path, hosted.peers_listener)
        for url in self.urls:
            try:
                registry.unregister(url)
            except Exception:  # noqa: BLE001 - stopping must go on
                log.exception("cannot deregister %s", url)
        # let consumers stop picking this provider before it refuses calls: the registry's own
        # propagation time, and at least a moment for calls already routed here to arrive
        return max(registry.propagation_delay, SETTLE_SECONDS)

    def _release(self) -> None:
        """The last step of a stop, once nothing is served: filters and switches let go of the registry."""
        registry = self.registry
        assert registry is not None
        self._switches.close()
        for f in self.filters:
            try:
                f.use_registry(None)
            except Exception:  # noqa: BLE001 - stopping must go on
                log.exception("filter %r failed to let go of the registry", f)
        release_registry(registry)
        self._state = "stopped"

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
