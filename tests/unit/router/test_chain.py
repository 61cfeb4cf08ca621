"""The router chain: order, caching, rule precedence, broken rules, local-first, explain."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from govrpc.exceptions import RuleError
from govrpc.invocation import Invocation, Invoker
from govrpc.router import LocalFirstRouter, RouterChain, TagRouter
from govrpc.router.chain import CACHE_LIMIT
from govrpc.router.condition import ConditionRouter
from govrpc.rpc.inprocess import InProcessInvoker, LocalExport
from govrpc.url import URL

from tests.unit.router.helpers import consumer, invocation, provider

P = (provider("10.0.0.1:1001"), provider("10.0.0.2:1002"), provider("10.0.0.3:1003"))


def ports(invokers: Any) -> list[int]:
    return [i.url.port for i in invokers]


def test_no_rules_returns_the_very_tuple_it_was_given() -> None:
    chain = RouterChain(consumer())
    assert chain.route(P, invocation()) is P
    assert chain.routers == ()


def test_results_are_cached_per_method_until_providers_or_rules_change() -> None:
    chain = RouterChain(consumer())
    chain.set_registry_rules({"r": "method = get* => port = 1001"})
    first = chain.route(P, invocation("getA"))
    assert ports(first) == [1001]
    assert chain.route(P, invocation("getA")) is first          # cached: the same tuple
    assert ports(chain.route(P, invocation("put"))) == [1001, 1002, 1003]
    fewer = P[1:]
    assert ports(chain.route(fewer, invocation("getA"))) == [1002, 1003]  # new providers: recomputed
    chain.set_registry_rules({"r": "method = get* => port = 1003"})
    assert ports(chain.route(fewer, invocation("getA"))) == [1003]     # new rule: recomputed


def test_the_cache_key_holds_only_what_rules_read() -> None:
    chain = RouterChain(consumer())
    chain.set_registry_rules({"r": "arguments[0] = vip => port = 1002"})
    first = chain.route(P, invocation(args=["vip", object()]))
    assert ports(first) == [1002]
    assert ports(chain.route(P, invocation(args=["basic", object()]))) == [1001, 1002, 1003]
    # the second argument (unhashable-by-value, different each call) is not in the key: a cache hit
    assert chain.route(P, invocation(args=["vip", object()])) is first
    assert chain.route(P, invocation(args=["vip"])) is first


def test_the_cache_is_bounded() -> None:
    chain = RouterChain(consumer())
    chain.set_registry_rules({"r": "arguments[0] = 1 => port = 1002"})
    for n in range(CACHE_LIMIT + 10):
        chain.route(P, invocation(args=[n]))
    assert len(chain._state.cache) <= CACHE_LIMIT


def test_unhashable_arguments_are_routed_without_the_cache() -> None:
    chain = RouterChain(consumer())
    chain.set_registry_rules({"s": "kind: script\nscript: 'size(invocation.arguments[0]) > 1 ? provider.port == 1001 : true'"})
    assert ports(chain.route(P, invocation(args=[[1, 2]]))) == [1001]
    assert ports(chain.route(P, invocation(args=[[1]]))) == [1001, 1002, 1003]


def test_runtime_rules_are_evaluated_on_every_call() -> None:
    chain = RouterChain(consumer())
    chain.set_registry_rules({"r": "runtime: true\nconditions:\n  - => port = 1001"})
    first = chain.route(P, invocation())
    assert chain._state.key_of is None  # no cache key: nothing is cached
    assert ports(first) == [1001] and chain.route(P, invocation()) is not first


def test_rules_run_by_priority_larger_first() -> None:
    chain = RouterChain(consumer())
    chain.set_registry_rules({
        "a-low": "priority: 1\nconditions:\n  - => port = 1001,1002",
        "b-high": "priority: 9\nconditions:\n  - => port = 1002,1003",
    })
    chain.route(P, invocation())
    assert [r.name for r in chain.routers] == ["b-high", "a-low"]
    assert ports(chain.route(P, invocation())) == [1002]


def test_consumer_rules_hide_provider_rules_which_hide_registry_rules() -> None:
    published = tuple(provider(f"10.0.0.{n}:100{n}", **{"route.pick": "=> port = 1002"}) for n in (1, 2, 3))
    chain = RouterChain(consumer())
    chain.set_registry_rules({"pick": "=> port = 1001", "other": "=> port != 1003"})
    assert ports(chain.route(published, invocation())) == [1002]           # provider's beats the registry's
    assert ports(chain.route(P, invocation())) == [1001]                     # no longer published
    local = RouterChain(consumer(), routes={"pick": "=> port = 1003"})
    local.set_registry_rules({"pick": "=> port = 1001"})
    assert ports(local.route(published, invocation())) == [1003]             # the consumer's beats both
    assert local.rules()["pick"].text == "=> port = 1003"


def test_a_broken_local_rule_is_refused_at_once() -> None:
    with pytest.raises(RuleError):
        RouterChain(consumer(), routes={"bad": "host == 1 =>"})


def test_a_broken_registry_rule_keeps_the_last_good_one_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    chain = RouterChain(consumer())
    chain.set_registry_rules({"r": "=> port = 1001"})
    assert ports(chain.route(P, invocation())) == [1001]
    with caplog.at_level(logging.WARNING, logger="govrpc.router"):
        chain.set_registry_rules({"r": "=> port ==", "new": "=> port != 1002"})
    assert ports(chain.route(P, invocation())) == [1001]
    assert any("keeping its last good version" in r.getMessage() and "'r'" in r.getMessage()
               for r in caplog.records)
    with caplog.at_level(logging.WARNING, logger="govrpc.router"):
        chain.set_registry_rules({"fresh": "kind: nosuchkind\nx: 1"})
    assert ports(chain.route(P, invocation())) == [1001, 1002, 1003]
    assert any("no good version" in r.getMessage() for r in caplog.records)


def test_disabled_rules_do_nothing() -> None:
    chain = RouterChain(consumer())
    chain.set_registry_rules({"r": "enabled: false\nconditions:\n  - => false"})
    assert chain.route(P, invocation()) is P


def test_tagged_providers_bring_in_the_tag_router_first() -> None:
    tagged = P + (provider("10.0.0.9:1009", tag="gray"),)
    chain = RouterChain(consumer())
    chain.set_registry_rules({"r": "=> port != 1001"})
    assert ports(chain.route(tagged, invocation(attachments={"tag": "gray"}))) == [1009]
    assert ports(chain.route(tagged, invocation())) == [1002, 1003]
    assert isinstance(chain.routers[0], TagRouter) and isinstance(chain.routers[1], ConditionRouter)


class _Provider(Invoker):
    def __init__(self, url: URL) -> None:
        self.url = url

    def invoke(self, invocation: Invocation) -> Any:
        return self.url.port


def test_local_first_keeps_in_process_providers_and_runs_last() -> None:
    local = InProcessInvoker(LocalExport(URL.parse("grpc://10.0.0.7:1007/demo.Greeter"),
                                         _Provider(URL.parse("grpc://10.0.0.7:1007/demo.Greeter"))))
    providers = P + (local,)
    chain = RouterChain(consumer(), local_first=True)
    assert chain.route(providers, invocation()) == (local,)
    assert isinstance(chain.routers[-1], LocalFirstRouter)
    chain.set_registry_rules({"r": "=> port = 1001"})  # a rule that excludes the local one wins
    assert ports(chain.route(providers, invocation())) == [1001]
    off = RouterChain(consumer(), local_first=False)
    assert off.route(providers, invocation()) is providers


def test_prefer_same_host_among_remote_providers() -> None:
    providers = P + (provider("127.0.0.1:2000"),)
    chain = RouterChain(consumer(), prefer_same_host=True)
    assert ports(chain.route(providers, invocation())) == [2000]
    assert ports(chain.route(P, invocation())) == [1001, 1002, 1003]


def test_explain_shows_what_each_router_keeps_and_why() -> None:
    tagged = P + (provider("10.0.0.9:1009", tag="gray"),)
    chain = RouterChain(consumer())
    chain.set_registry_rules({"reads": "method = get* => port = 1002,1003", "no-3": "=> port != 1003"})
    steps = chain.explain(tagged, invocation("getX"))
    assert [s.router for s in steps] == ["providers", "tag", "no-3", "reads"]
    assert [len(s.kept) for s in steps] == [4, 3, 2, 1]
    assert "untagged" in steps[1].why and "matching 'port = 1002,1003'" in steps[3].why


def test_conditions_run_in_written_order_past_nine() -> None:
    """r#2 runs before r#10: with force off the order decides what is left."""
    p = (provider("10.0.0.1:1"), provider("10.0.0.2:1"), provider("10.0.0.3:1"))
    filler = ["  - method = never => host = 9.9.9.9"] * 11
    filler[1] = "  - => host = 10.0.0.1,10.0.0.2"   # r#2
    filler[9] = "  - => host = 10.0.0.3"            # r#10: empties the list after r#2, so it is ignored
    chain = RouterChain(consumer(), routes={"r": "conditions:\n" + "\n".join(filler)}, local_first=False)
    assert [i.url.host for i in chain.route(p, invocation())] == ["10.0.0.1", "10.0.0.2"]


def test_a_forced_tag_keeps_no_provider_when_none_is_tagged() -> None:
    p = (provider("10.0.0.1:1"), provider("10.0.0.2:1"))
    chain = RouterChain(consumer(), local_first=False)
    assert chain.route(p, invocation(attachments={"tag": "gray"})) == p  # not forced: falls back to all
    assert tuple(chain.route(p, invocation(attachments={"tag": "gray", "tag-force": "true"}))) == ()
    assert chain.route(p, invocation()) == p


def test_the_chain_names_its_routers_in_force_as_they_change() -> None:
    """``names`` (what a call's span records as ``govrpc.routers``) follows the routers in force."""
    chain = RouterChain(consumer())
    assert chain.names == ()
    chain.set_registry_rules({"r": "method = get* => port = 1001"})
    chain.route(P, invocation("getA"))
    assert chain.names == ("r",)
    chain.set_registry_rules({})
    chain.route(P, invocation("getA"))
    assert chain.names == ()
