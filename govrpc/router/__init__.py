"""Routing: narrow a call's providers before the load balancer picks one.

Call path: ``ClusterInvoker`` -> ``Directory.list(invocation)`` -> ``RouterChain.route``
-> ``LoadBalancer.select``. Entry-point group: ``govrpc.router`` (a rule's ``kind``
names a ``Router`` class: ``condition``, ``script``, ``tag`` built in).

Layered one way: ``base.py`` holds the ``Router`` contract and the helpers routers
share; the routers build on it: ``condition.py`` (Dubbo's grammar), ``script.py``
(CEL), ``tag.py`` (grey releases) and ``local.py`` (prefer in-process and same-host
providers); ``chain.py`` orders them (tag, then rules by priority, then local-first)
and caches results per provider list and rule set. Rule documents (``rule.py``) live
in the registry under ``{service}/routers/{name}``.
"""

from govrpc.router.base import Reads, RouteFailed, Router
from govrpc.router.chain import DryRunInvoker, RouteStep, RouterChain, compile_rule, explain_route
from govrpc.router.condition import ConditionRouter, parse_condition
from govrpc.router.local import LocalFirstRouter
from govrpc.router.rule import RouteRule, parse_rule
from govrpc.router.script import ScriptRouter
from govrpc.router.tag import TagPassOnFilter, TagRouter

__all__ = [
    "ConditionRouter",
    "DryRunInvoker",
    "LocalFirstRouter",
    "Reads",
    "RouteFailed",
    "RouteRule",
    "RouteStep",
    "Router",
    "RouterChain",
    "ScriptRouter",
    "TagPassOnFilter",
    "TagRouter",
    "compile_rule",
    "explain_route",
    "parse_condition",
    "parse_rule",
]
