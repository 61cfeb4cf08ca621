"""Routing: narrow a call's providers before the load balancer picks one.

Call path: ``ClusterInvoker`` -> ``Directory.list(invocation)`` -> ``RouterChain.route``
(``chain.py``: tag, then rules by priority, then local-first; results cached per
provider list and rule set) -> ``LoadBalancer.select``. Rule documents
(``rule.py``) live in the registry under ``{service}/routers/{name}``; their
``kind`` names a router class in the entry-point group ``govrpc.router``:
``condition`` (``condition.py``, Dubbo's grammar), ``script`` (``script.py``, CEL)
and ``tag`` (``tag.py``). ``local.py`` calls providers of this process in-process.
"""

from govrpc.router.chain import DryRunInvoker, Reads, RouteStep, Router, RouterChain, compile_rule, explain_route
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
