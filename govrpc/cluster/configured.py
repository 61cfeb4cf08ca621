"""A reference's cluster: the configured strategy and balancer for each method.

``ConfiguredClusterInvoker`` is what ``Client.reference`` puts under the
consumer filters. It builds one cluster invoker (with its own load balancer)
per distinct configuration: the reference's settings, and each method's
``{method}.{key}`` settings (``methods={"find": {"loadbalance": "consistenthash"}}``
on the proxy). Every option is checked when the reference is made, so a bad
name or value fails at proxy creation, never at call time. When a registry
configurator changes the options, the table is rebuilt and swapped whole; an
override that does not build (say, an unknown balancer) is logged and the
last good table kept. Outlier ejection and the retry budget are shared by
every method of the reference.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from govrpc.cluster.base import ClusterInvoker
from govrpc.cluster.directory import Directory
from govrpc.cluster.outlier import OutlierDetector
from govrpc.configurator import CLUSTER_KEYS, ConfiguratorWatcher, split_method_key
from govrpc.exceptions import ConfigurationError
from govrpc.extension import get_extension
from govrpc.invocation import Invocation, Invoker
from govrpc.url import URL

__all__ = ["ConfiguredClusterInvoker", "method_options"]

log = logging.getLogger("govrpc.cluster")

Routes = tuple[dict[str, ClusterInvoker], ClusterInvoker]


def method_options(methods: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """``{"find": {"loadbalance": "x"}}`` -> ``{"find.loadbalance": "x"}`` (consumer URL params).

    Raises ``ConfigurationError`` for a method name that is not an identifier
    or an option that is not a cluster option.
    """
    if not isinstance(methods, Mapping):
        raise ConfigurationError(f"methods= takes {{method: {{option: value}}}}, not {methods!r}")
    params: dict[str, str] = {}
    for method, options in methods.items():
        if not isinstance(method, str) or not method.isidentifier():
            raise ConfigurationError(f"methods=: {method!r} is not a method name")
        if not isinstance(options, Mapping):
            raise ConfigurationError(f"methods=[{method!r}] takes {{option: value}}, not {options!r}")
        for key, value in options.items():
            if key not in CLUSTER_KEYS:
                raise ConfigurationError(
                    f"methods=[{method!r}]: {key!r} is not a per-method option; options: {', '.join(sorted(CLUSTER_KEYS))}")
            params[f"{method}.{key}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return params


def _method_views(url: URL) -> dict[str, URL]:
    """Each method with its own settings -> the URL it sees (its ``{method}.key`` as ``key``)."""
    per: dict[str, dict[str, str]] = {}
    for key, value in url.params.items():
        method, base = split_method_key(key)
        if method is not None:
            per.setdefault(method, {})[base] = value
    return {method: url.with_params(**options) for method, options in per.items()}


class ConfiguredClusterInvoker(Invoker):
    """Dispatches each call to its method's cluster invoker; rebuilt when configurators change."""

    def __init__(self, directory: Directory, url: URL) -> None:
        self.directory = directory
        self.url = url
        self.outlier = OutlierDetector.from_url(url)
        self._made: dict[tuple[tuple[str, str], ...], ClusterInvoker] = {}
        self._shared: dict[str, Any] = {}
        self._routes: Routes = self._build(url)[0]
        self.watcher: ConfiguratorWatcher | None = getattr(directory, "configurators", None)
        if self.watcher is not None:
            self.watcher.add_listener(self._reconfigure)

    def _make(self, view: URL, made: dict[tuple[tuple[str, str], ...], ClusterInvoker]) -> ClusterInvoker:
        key = tuple(sorted((k, v) for k, v in view.params.items() if k in CLUSTER_KEYS))
        invoker = made.get(key) or self._made.get(key)
        if invoker is None:
            cluster_cls = get_extension("govrpc.cluster", view.get("cluster") or "failover")
            lb_cls = get_extension("govrpc.loadbalance", view.get("loadbalance") or "random")
            invoker = cluster_cls(self.directory, lb_cls(view), view)
            if not isinstance(invoker, ClusterInvoker):
                raise ConfigurationError(f"cluster {view.get('cluster')!r} ({cluster_cls}) is not a ClusterInvoker")
            invoker.outlier = self.outlier
            budget = getattr(invoker, "budget", None)
            if budget is not None:  # one retry budget per reference, as gRPC has one per channel
                invoker.budget = self._shared.setdefault("budget", budget)  # type: ignore[attr-defined]
        made[key] = invoker
        return invoker

    def _build(self, url: URL) -> tuple[Routes, list[ClusterInvoker]]:
        """The routes for ``url``, and the invokers they no longer use (for ``_retire``)."""
        made: dict[tuple[tuple[str, str], ...], ClusterInvoker] = {}
        default = self._make(url, made)
        methods = {method: self._make(view, made) for method, view in _method_views(url).items()}
        retired = [old for key, old in self._made.items() if key not in made]
        self._made = made
        return ({m: i for m, i in methods.items() if i is not default}, default), retired

    def _retire(self, retired: list[ClusterInvoker]) -> None:
        """Stop invokers the new routes replaced, handing work they hold (failcache's queue) to
        a successor of the same kind."""
        for old in retired:
            successor = next((i for i in self._made.values() if type(i) is type(old)), None)
            old.stop(successor)

    def _reconfigure(self, watcher: ConfiguratorWatcher) -> None:
        url = watcher.consumer(self.url)
        try:
            routes, retired = self._build(url)
        except ConfigurationError as exc:
            log.error("configurators of %s give options that do not work (%s); keeping the previous ones",
                      self.url.path, exc)
            return
        self._routes = routes  # new calls take the new routes before the old invokers stop
        self._retire(retired)
        log.info("%s: cluster options now %s", self.url.path,
                 {k: v for k, v in url.params.items() if split_method_key(k)[1] in CLUSTER_KEYS})

    def cluster_for(self, method: str) -> ClusterInvoker:
        """The cluster invoker that ``method``'s calls use now."""
        methods, default = self._routes
        return methods.get(method, default)

    def future(self, invocation: Invocation, run: Any) -> Any:
        """``ClusterInvoker.future`` of the method's cluster invoker."""
        return self.cluster_for(invocation.method).future(invocation, run)

    def invoke(self, invocation: Invocation) -> Any:
        methods, default = self._routes
        if methods:
            return methods.get(invocation.method, default).invoke(invocation)
        return default.invoke(invocation)

    @property
    def available(self) -> bool:
        return any(i.available for i in self.directory.invokers)

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.remove_listener(self._reconfigure)
        for invoker in self._made.values():
            invoker.stop()
        self.directory.close()
