"""A reference's cluster: the configured strategy and balancer for each method.

``ConfiguredClusterInvoker`` is what ``Client.reference`` puts under the
consumer filters. It builds one cluster invoker (with its own load balancer)
per distinct configuration: the reference's settings, and each method's
``{method}.{key}`` settings (``methods={"find": {"loadbalance": "consistenthash"}}``
on the proxy). Every option is checked when the reference is made, so a bad
name or value fails at proxy creation, never at call time (each option is
checked by the extension that declares it, ``govrpc.options``). It subscribes
to the reference's ``ReferenceConfig``: when a registry configurator changes
the options, the table is rebuilt and swapped whole; an override that does not
build (say, an unknown balancer) is refused, logged, and the last good table kept. Outlier ejection and the retry budget are shared by
every method of the reference.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from govrpc.cluster.base import ClusterInvoker
from govrpc.cluster.directory import Directory
from govrpc.cluster.failover import RetryBudget
from govrpc.cluster.outlier import OutlierDetector
from govrpc.configurator import ReferenceConfig
from govrpc.exceptions import ConfigurationError
from govrpc.extension import get_extension
from govrpc.invocation import Invocation, Invoker
from govrpc.options import CLUSTER, LOADBALANCE, check_options, declared_options, known_options
from govrpc.url import URL

__all__ = ["ConfiguredClusterInvoker", "method_options"]

log = logging.getLogger("govrpc.cluster")

Routes = tuple[dict[str, ClusterInvoker], ClusterInvoker]
_SHARED = frozenset(o.name for o in OutlierDetector.options)  # one detector per reference, updated in place


def method_options(methods: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """``{"find": {"loadbalance": "x"}}`` -> ``{"find.loadbalance": "x"}`` (consumer URL params).

    Raises ``ConfigurationError`` for a method name that is not an identifier,
    an option that is not a per-method option, or a value the option refuses.
    """
    if not isinstance(methods, Mapping):
        raise ConfigurationError(f"methods= takes {{method: {{option: value}}}}, not {methods!r}")
    options = known_options()
    per_method = sorted(name for name, option in options.items() if option.per_method)
    params: dict[str, Any] = {}
    for method, settings in methods.items():
        if not isinstance(method, str) or not method.isidentifier():
            raise ConfigurationError(f"methods=: {method!r} is not a method name")
        if not isinstance(settings, Mapping):
            raise ConfigurationError(f"methods=[{method!r}] takes {{option: value}}, not {settings!r}")
        for key, value in settings.items():
            option = options.get(key)
            if option is None or not option.per_method:
                raise ConfigurationError(
                    f"methods=[{method!r}]: {key!r} is not a per-method option; options: {', '.join(per_method)}")
            params[f"{method}.{key}"] = value
    return check_options(params)


class ConfiguredClusterInvoker(Invoker):
    """Dispatches each call to its method's cluster invoker; rebuilt when the settings change.

    ``settings`` is the reference's ``ReferenceConfig`` (subscribed to: configurator
    changes rebuild the table), or a plain consumer URL (settings that never change).
    """

    def __init__(self, directory: Directory, settings: URL | ReferenceConfig) -> None:
        self.config = settings if isinstance(settings, ReferenceConfig) else ReferenceConfig(settings)
        self.directory = directory
        self.url = self.config.base
        self.outlier = OutlierDetector.from_url(self.config.url)
        self._made: dict[tuple[Any, ...], ClusterInvoker] = {}
        self._budgets: dict[tuple[float, float], RetryBudget] = {}
        self._route(self._build(self.config)[0])
        self.config.subscribe(self._reconfigure)

    def _make(self, view: URL, made: dict[tuple[Any, ...], ClusterInvoker]) -> ClusterInvoker:
        cluster_name = view.get("cluster") or CLUSTER.default
        lb_name = view.get("loadbalance") or LOADBALANCE.default
        cluster_cls = get_extension("govrpc.cluster", cluster_name)
        lb_cls = get_extension("govrpc.loadbalance", lb_name)
        # one invoker per distinct value of the options its strategy and balancer read
        names = {o.name for o in (*declared_options(cluster_cls), *declared_options(lb_cls))} - _SHARED
        key = (cluster_name, lb_name, tuple(sorted((n, view.params[n]) for n in names if n in view.params)))
        invoker = made.get(key) or self._made.get(key)
        if invoker is None:
            invoker = cluster_cls(self.directory, lb_cls(view), view)
            if not isinstance(invoker, ClusterInvoker):
                raise ConfigurationError(f"cluster {cluster_name!r} ({cluster_cls}) is not a ClusterInvoker")
            invoker.outlier = self.outlier
            budget = getattr(invoker, "budget", None)
            if isinstance(budget, RetryBudget):  # one retry budget per reference, as gRPC has one per channel
                shared = self._budgets.setdefault((budget.max_tokens, budget.ratio), budget)
                invoker.budget = shared  # type: ignore[attr-defined]
        made[key] = invoker
        return invoker

    def _build(self, config: ReferenceConfig) -> tuple[Routes, list[ClusterInvoker]]:
        """The routes for ``config``, and the invokers they no longer use (for ``_retire``)."""
        made: dict[tuple[Any, ...], ClusterInvoker] = {}
        default = self._make(config.url, made)
        methods = {method: self._make(view, made) for method, view in config.views.items()}
        retired = [old for key, old in self._made.items() if key not in made]
        self._made = made
        return ({m: i for m, i in methods.items() if i is not default}, default), retired

    def _retire(self, retired: list[ClusterInvoker]) -> None:
        """Stop invokers the new routes replaced, handing work they hold (failcache's queue) to
        a successor of the same kind."""
        for old in retired:
            successor = next((i for i in self._made.values() if type(i) is type(old)), None)
            old.stop(successor)

    def _reconfigure(self, config: ReferenceConfig) -> None:
        """Apply new settings; raises ``ConfigurationError`` (nothing changed) when they do not build."""
        outlier = OutlierDetector.from_url(config.url)
        routes, retired = self._build(config)
        self.outlier.configure(outlier)
        self._route(routes)  # new calls take the new routes before the old invokers stop
        self._retire(retired)
        if retired:
            log.info("%s: cluster options now %s", self.url.path, dict(config.url.params))

    def cluster_for(self, method: str) -> ClusterInvoker:
        """The cluster invoker that ``method``'s calls use now."""
        methods, default = self._routes
        return methods.get(method, default)

    def future(self, invocation: Invocation, run: Any) -> Any:
        """``ClusterInvoker.future`` of the method's cluster invoker."""
        return self.cluster_for(invocation.method).future(invocation, run)

    def _route(self, routes: Routes) -> None:
        self._routes = routes
        methods, default = routes
        # one cluster invoker for every method (the usual case): calls go straight to it, this
        # dispatcher adds no frame (the instance's ``invoke`` is the cluster invoker's own)
        self.invoke = self._dispatch if methods else default.invoke  # type: ignore[method-assign]

    def invoke(self, invocation: Invocation) -> Any:  # ``_route`` sets the instance's own
        return self._dispatch(invocation)

    def _dispatch(self, invocation: Invocation) -> Any:
        methods, default = self._routes
        return methods.get(invocation.method, default).invoke(invocation)

    @property
    def available(self) -> bool:
        return any(i.available for i in self.directory.invokers)

    def close(self) -> None:
        self.config.unsubscribe(self._reconfigure)
        for invoker in self._made.values():
            invoker.stop()
        self.directory.close()
