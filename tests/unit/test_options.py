"""Options declared by their owners: limits that can be honoured, per-method keys, shared options.

No sockets: the memory registry and fake invokers.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

import govrpc
from govrpc.client import Reference
from govrpc.cluster.configured import ConfiguredClusterInvoker
from govrpc.cluster.directory import RegistryDirectory
from govrpc.cluster.failcache import FailcacheClusterInvoker, RetryAccepted, on_give_up
from govrpc.cluster.loadbalance import RandomLoadBalancer
from govrpc.configurator import ReferenceConfig, parse_configurator
from govrpc.exceptions import ConfigurationError, ProviderUnavailableError, RuleError
from govrpc.options import MAX_SECONDS, Option, known_options, split_method_key
from govrpc.registry.base import acquire_registry, release_registry
from govrpc.url import URL

from tests.unit.cluster.fakes import KEY, FakeInvoker, consumer_url, directory, invocation


@pytest.fixture
def registry():
    registry = acquire_registry(f"memory://options-{uuid.uuid4().hex[:8]}")
    yield registry
    release_registry(registry)


def registry_directory(registry, **params: Any) -> RegistryDirectory:
    registry.register(URL("grpc", "10.0.0.1", 1, KEY.service, {"methods": "find,save"}))
    return RegistryDirectory(registry, KEY, consumer_url(application="web", **params),
                             lambda u: FakeInvoker(u.port, "ok"))


# -- issue 9.7: a timeout that cannot be honoured is refused where it is written -----------------

@pytest.mark.parametrize("text", ["timeout = 1e10", "find.timeout = 1e10", "failcache.timeout = 1e10",
                                  "failcache.period = 1e10", "retry.backoff.max = 1e10", "timeout = 86401"])
def test_a_rule_with_a_duration_beyond_one_day_is_refused(text: str) -> None:
    with pytest.raises(RuleError, match=r"at most 86400, one day") as caught:
        parse_configurator(text)
    assert caught.value.position == text.index("=") + 2
    assert text.split(" =")[0] in str(caught.value)


def test_one_day_itself_is_accepted() -> None:
    assert parse_configurator(f"timeout = {MAX_SECONDS:.0f}").params["timeout"] == "86400"


def test_a_timeout_beyond_one_day_is_refused_in_code() -> None:
    with pytest.raises(ConfigurationError, match=r"timeout must be a positive number of seconds \(at most 86400"):
        govrpc.Client(f"memory://t-{uuid.uuid4().hex[:8]}", timeout=1e10)
    with govrpc.Client(f"memory://t-{uuid.uuid4().hex[:8]}") as client:
        with pytest.raises(ConfigurationError, match="^timeout must be"):
            client.proxy("demo.Svc", timeout=1e10)
        with pytest.raises(ConfigurationError, match="^find.timeout must be"):
            client.proxy("demo.Svc", methods={"find": {"timeout": 1e10}})
        with pytest.raises(ConfigurationError, match="^find.timeout must be"):
            client.proxy("demo.Svc", **{"find.timeout": 1e10})
        with pytest.raises(ConfigurationError, match="^failcache.timeout must be"):
            client.proxy("demo.Svc", cluster="failcache", **{"failcache.timeout": 1e10})
        with pytest.raises(ConfigurationError, match="^timeout must be"):
            client.invoke("demo.Svc", "find", [], timeout=1e10)  # per call
        assert client._references == {} or all(r.timeout <= MAX_SECONDS for r in client._references.values())


# -- issue 9.11: hash.nodes is bounded -----------------------------------------------------------

def test_hash_nodes_beyond_the_bound_is_refused_by_admin_and_in_code(registry) -> None:
    admin = govrpc.Admin(registry)
    with pytest.raises(RuleError, match=r"hash.nodes must be an integer from 1 to 10000") as caught:
        admin.set_override(KEY.service, "ring", "loadbalance = consistenthash\nhash.nodes = 1000000000000")
    assert caught.value.position == len("loadbalance = consistenthash\nhash.nodes = ")
    assert admin.rules(KEY.service, "configurators") == {}  # nothing stored
    with pytest.raises(RuleError, match="find.hash.nodes must be"):
        admin.set_override(KEY.service, "ring", "find.hash.nodes = 10001")
    admin.set_override(KEY.service, "ring", "hash.nodes = 10000")
    with govrpc.Client(registry) as client:
        with pytest.raises(ConfigurationError, match="hash.nodes must be an integer from 1 to 10000"):
            client.proxy("demo.Svc", loadbalance="consistenthash", **{"hash.nodes": 10**12})


# -- issue 9.17: failcache survives a moment with no provider; *.timeout keys ---------------------

def test_failcache_keeps_a_call_while_no_provider_is_listed() -> None:
    reports: list[Any] = []
    remove = on_give_up(lambda inv, exc: reports.append(inv.args))
    provider = FakeInvoker(1, ProviderUnavailableError("10.0.0.1:1: connection reset"))
    params = {"failcache.period": "60", "failcache.retries": "3"}
    static = directory([provider], **params)
    url = consumer_url(**params)
    cluster = FailcacheClusterInvoker(static, RandomLoadBalancer(url), url)
    try:
        assert isinstance(cluster.invoke(invocation("notify", "e1")), RetryAccepted)
        static.invokers = ()           # every provider left
        cluster.resend()
        assert cluster.pending == 1 and cluster.given_up == 0 and reports == []
        provider.outcome = "ok"
        static.invokers = (provider,)  # ...and one came back
        cluster.resend()
        assert cluster.recovered == 1 and cluster.pending == 0 and reports == []
        # still bounded: with no provider for failcache.retries re-sends, the call is given up and reported
        provider.outcome = ProviderUnavailableError("down again")
        assert isinstance(cluster.invoke(invocation("notify", "e2")), RetryAccepted)
        static.invokers = ()
        for _ in range(3):
            cluster.resend()
        assert cluster.pending == 0 and cluster.given_up == 1 and reports == [("e2",)]
    finally:
        remove()
        cluster.close()


def test_an_option_named_like_method_timeout_is_not_a_method_timeout(registry) -> None:
    url = consumer_url(cluster="failcache", **{"failcache.timeout": "3", "find.timeout": "2"})
    reference = Reference(KEY, url, directory([]), FakeInvoker(1), 1.0)
    assert reference.timeouts == {"find": 2.0}
    assert reference.timeout_of("failcache") == 1.0 and reference.timeout_of("other") == 1.0
    assert split_method_key("failcache.timeout") == (None, "failcache.timeout")
    assert split_method_key("notify.failcache.timeout") == ("notify", "failcache.timeout")
    # and as a registry override
    dir_ = registry_directory(registry)
    config = dir_.config
    reference = Reference(KEY, dir_.consumer_url, dir_, FakeInvoker(1), 1.0, config)
    dir_.start()
    try:
        registry.put_rule(KEY.service, "configurators", "t", "failcache.timeout = 3\nsave.timeout = 4")
        assert reference.timeouts == {"save": 4.0} and reference.timeout_of("failcache") == 1.0
    finally:
        dir_.close()


# -- options every cluster shares: outlier.* and retry.budget* --------------------------------------

def test_outlier_and_retry_budget_options_are_set_by_configurators(registry) -> None:
    rule = parse_configurator("outlier.failures = 2\noutlier.max_share = 1\nretry.budget = 10")
    assert dict(rule.params) == {"outlier.failures": "2", "outlier.max_share": "1", "retry.budget": "10"}
    with pytest.raises(RuleError, match="unknown key 'find.outlier.failures'"):
        parse_configurator("find.outlier.failures = 2")  # one detector per reference: not per method
    with pytest.raises(RuleError, match="outlier.max_share must be"):
        parse_configurator("outlier.max_share = 2")
    dir_ = registry_directory(registry)
    cluster = ConfiguredClusterInvoker(dir_, dir_.config)
    dir_.start()
    try:
        detector = cluster.outlier
        assert detector.failures == 5 and cluster.cluster_for("find").budget.max_tokens == 100
        registry.put_rule(KEY.service, "configurators", "ops", "outlier.failures = 2\nretry.budget = 10")
        assert cluster.outlier is detector and detector.failures == 2  # the same detector: ejections kept
        assert cluster.cluster_for("find").outlier is detector
        assert cluster.cluster_for("find").budget.max_tokens == 10
        assert cluster.cluster_for("find").budget is cluster.cluster_for("save").budget  # one per reference
    finally:
        cluster.close()


def test_settings_a_subscriber_refuses_are_rolled_back_for_every_subscriber(registry, caplog) -> None:
    dir_ = registry_directory(registry)
    config = dir_.config
    cluster = ConfiguredClusterInvoker(dir_, config)
    reference = Reference(KEY, dir_.consumer_url, dir_, cluster, 1.0, config)
    dir_.start()
    try:
        registry.put_rule(KEY.service, "configurators", "ok", "timeout = 2")
        assert reference.timeout == 2.0
        with caplog.at_level(logging.ERROR, "govrpc.configurator"):
            # parses, but failover refuses a backoff above its maximum: nothing of it is applied
            registry.put_rule(KEY.service, "configurators", "ok", "timeout = 3\nretry.backoff = 1")
        assert "keeping the previous ones" in caplog.text and "retry.backoff" in caplog.text
        assert reference.timeout == 2.0 and config.url.params["timeout"] == "2"
        assert cluster.cluster_for("find").wait.max == 0.2
    finally:
        cluster.close()


def test_every_subscriber_is_told_explicitly() -> None:
    config = ReferenceConfig(consumer_url(**{"find.retries": "1"}))
    seen: list[Any] = []
    config.subscribe(seen.append)
    assert config.view("find").params["retries"] == "1" and config.view("save") is config.url
    assert dict(config.method_params) == {"find": {"retries": "1"}}
    config.unsubscribe(seen.append)
    config.close()
    assert seen == []  # a config without a watcher never changes


# -- the option model ------------------------------------------------------------------------------

def test_every_builtin_option_is_known_with_its_owner() -> None:
    options = known_options()
    for name in ("timeout", "cluster", "loadbalance", "retries", "idempotent", "weight", "disabled", "forks",
                 "hash.arguments", "hash.nodes", "failcache.timeout", "outlier.failures", "retry.budget.ratio",
                 "shortestresponse.reprobe", "failback.codes", "failsafe.default", "broadcast.fail.percent"):
        assert isinstance(options[name], Option), name
    assert not options["weight"].per_method and options["timeout"].per_method


def test_an_unknown_key_lists_the_known_ones() -> None:
    with pytest.raises(RuleError, match="unknown key 'colour'") as caught:
        parse_configurator("retries = 1\ncolour = red")
    assert caught.value.position == len("retries = 1\n")
    assert "hash.nodes" in str(caught.value) and "outlier.failures" in str(caught.value)


@pytest.mark.parametrize("text, value", [("idempotent = TRUE", "true"), ("find.idempotent = False", "false"),
                                         ("failsafe.default = {\"a\": 1}", "{\"a\": 1}")])
def test_values_are_stored_as_their_option_writes_them(text: str, value: str) -> None:
    assert list(parse_configurator(text).params.values()) == [value]


def test_a_bad_json_default_names_the_option() -> None:
    with pytest.raises(RuleError, match="failsafe.default: 'nope' is not JSON"):
        parse_configurator("failsafe.default = nope")
