"""Per-method choice, run-time configurators and bad options, without sockets."""

from __future__ import annotations

import logging
import uuid

import pytest

import govrpc
from govrpc.cluster.configured import ConfiguredClusterInvoker
from govrpc.cluster.consistenthash import ConsistentHashLoadBalancer
from govrpc.cluster.directory import RegistryDirectory
from govrpc.cluster.failfast import FailfastClusterInvoker
from govrpc.cluster.failover import FailoverClusterInvoker
from govrpc.cluster.loadbalance import LeastActiveLoadBalancer, RoundRobinLoadBalancer
from govrpc.configurator import ConfiguratorWatcher, parse_configurator
from govrpc.exceptions import ConfigurationError, ExtensionNotFoundError, RuleError
from govrpc.registry.base import acquire_registry, release_registry
from govrpc.url import URL

from tests.unit.cluster.fakes import KEY, FakeInvoker, consumer_url, directory, invocation

# -- the rule format -------------------------------------------------------------------------


def test_a_configurator_parses_scope_and_overrides() -> None:
    rule = parse_configurator("# slow box\naddress = 10.0.0.5:50051, 10.0.0.6:50051\nweight = 50\n")
    assert rule.addresses == {"10.0.0.5:50051", "10.0.0.6:50051"} and dict(rule.params) == {"weight": "50"}
    rule = parse_configurator("application = web\nloadbalance = roundrobin\nfind.loadbalance = consistenthash\n"
                              "retries = 0\nfind.hash.arguments = 1\nenabled = false")
    assert rule.application == "web" and not rule.enabled
    assert rule.params["find.loadbalance"] == "consistenthash" and rule.params["retries"] == "0"


@pytest.mark.parametrize("text, message, position", [
    ("weight = 0", "weight must be a positive integer", 9),
    ("retries = 1\nweight = -5", "weight must be a positive integer", 21),
    ("loadbalance = fastest", "installed: consistenthash, healthweighted, leastactive, random", 14),
    ("cluster = nope", "no govrpc.cluster extension named 'nope'", 10),
    ("retries = -1", "retries must be an integer >= 0", 10),
    ("forks = 0", "forks must be an integer >= 1", 8),
    ("  just words", "expected 'key = value'", 2),
    ("address = nothost\nweight = 1", "is not host:port", 10),
    ("address = 10.0.0.1:1\nloadbalance = random", "changes providers only", 21),
    ("find.bogus = 1", "unknown key 'find.bogus'", 0),
    ("disabled = maybe", "true or false", 11),
    ("weight = 5\nweight = 6", "set twice", 11),
    ("# only a comment\n", "overrides nothing", 0),
    ("retries =", "retries has no value", 9),
])
def test_a_broken_configurator_names_the_mistake_and_its_position(text: str, message: str, position: int) -> None:
    with pytest.raises(RuleError, match=message) as caught:
        parse_configurator(text)
    assert caught.value.position == position, caught.value


# -- a registry to play operator on (memory, no sockets) ----------------------------------------

@pytest.fixture
def registry():
    registry = acquire_registry(f"memory://cluster-{uuid.uuid4().hex[:8]}")
    yield registry
    release_registry(registry)


def provider(port: int, weight: int = 100) -> URL:
    return URL("grpc", "10.0.0.1", port, KEY.service, {"weight": weight, "methods": "find,save"})


def directory_for(registry, *ports: int, **params) -> RegistryDirectory:
    for port in ports:
        registry.register(provider(port))
    url = consumer_url(application="web", **params)
    return RegistryDirectory(registry, KEY, url, lambda u: FakeInvoker(u.port, "ok", weight=u.params["weight"],
                                                                         **{k: v for k, v in u.params.items()
                                                                            if k != "weight"}))


def test_a_watcher_keeps_the_last_good_rule(registry, caplog: pytest.LogCaptureFixture) -> None:
    watcher = ConfiguratorWatcher(registry, KEY.service, "web")
    watcher.start()
    registry.put_rule(KEY.service, "configurators", "lb", "loadbalance = roundrobin")
    assert [dict(r.params) for r in watcher.rules] == [{"loadbalance": "roundrobin"}]
    with caplog.at_level(logging.ERROR, "govrpc.configurator"):
        registry.put_rule(KEY.service, "configurators", "lb", "loadbalance = ???")
    assert [dict(r.params) for r in watcher.rules] == [{"loadbalance": "roundrobin"}]
    assert "keeping its last good version" in caplog.text and "'???'" in caplog.text
    registry.put_rule(KEY.service, "configurators", "new", "no equals sign")  # broken, never good: ignored
    assert len(watcher.rules) == 1
    registry.delete_rule(KEY.service, "configurators", "lb")
    assert watcher.rules == ()
    watcher.close()


def test_weight_and_disabled_overrides_change_the_provider_list(registry) -> None:
    directory = directory_for(registry, 1, 2, 3)
    directory.start()
    try:
        assert sorted(i.url.port for i in directory.invokers) == [1, 2, 3]
        registry.put_rule(KEY.service, "configurators", "heavy", "address = 10.0.0.1:2\nweight = 300")
        weights = {i.url.port: i.url.params["weight"] for i in directory.invokers}
        assert weights == {1: "100", 2: "300", 3: "100"}
        registry.put_rule(KEY.service, "configurators", "off", "address = 10.0.0.1:3\ndisabled = true")
        assert sorted(i.url.port for i in directory.invokers) == [1, 2]
        registry.put_rule(KEY.service, "configurators", "elsewhere", "application = other\ndisabled = true")
        assert sorted(i.url.port for i in directory.invokers) == [1, 2]  # another application's rule
        registry.delete_rule(KEY.service, "configurators", "off")
        registry.delete_rule(KEY.service, "configurators", "heavy")
        assert {i.url.port: i.url.params["weight"] for i in directory.invokers} == {1: "100", 2: "100", 3: "100"}
    finally:
        directory.close()


def test_methods_choose_their_own_strategy() -> None:
    url = consumer_url(cluster="failover", loadbalance="leastactive",
                       **{"find.loadbalance": "consistenthash", "find.hash.arguments": "1",
                          "save.cluster": "failfast"})
    cluster = ConfiguredClusterInvoker(directory([FakeInvoker(1, "ok")]), url)
    assert isinstance(cluster.cluster_for("find").loadbalance, ConsistentHashLoadBalancer)
    assert cluster.cluster_for("find").loadbalance.arguments == (1,)
    assert isinstance(cluster.cluster_for("save"), FailfastClusterInvoker)
    assert isinstance(cluster.cluster_for("other"), FailoverClusterInvoker)
    assert isinstance(cluster.cluster_for("other").loadbalance, LeastActiveLoadBalancer)
    assert cluster.invoke(invocation("find", "a", "b")) == "ok"


def test_configurators_change_strategy_at_run_time_with_precedence(registry, caplog) -> None:
    directory = directory_for(registry, 1, 2, loadbalance="leastactive", retries="2")
    cluster = ConfiguredClusterInvoker(directory, directory.config)  # subscribes to its settings
    directory.start()
    try:
        assert isinstance(cluster.cluster_for("find").loadbalance, LeastActiveLoadBalancer)
        registry.put_rule(KEY.service, "configurators", "ops", "loadbalance = roundrobin\nretries = 5\n"
                                                               "save.cluster = failfast")
        assert isinstance(cluster.cluster_for("find").loadbalance, RoundRobinLoadBalancer)  # override > consumer
        assert cluster.cluster_for("find").retries == 5
        assert isinstance(cluster.cluster_for("save"), FailfastClusterInvoker)
        with caplog.at_level(logging.ERROR):
            registry.put_rule(KEY.service, "configurators", "ops", "loadbalance = roundrobin\nretries = many")
        assert cluster.cluster_for("find").retries == 5  # the broken version is not applied
        registry.put_rule(KEY.service, "configurators", "bad-hash", "hash.arguments = 1,1")  # refused...
        registry.put_rule(KEY.service, "configurators", "zz-hash", "loadbalance = consistenthash")
        # ...so it cannot spoil a later, valid rule
        assert isinstance(cluster.cluster_for("find").loadbalance, ConsistentHashLoadBalancer)
        registry.delete_rule(KEY.service, "configurators", "ops")
        registry.delete_rule(KEY.service, "configurators", "bad-hash")
        registry.delete_rule(KEY.service, "configurators", "zz-hash")
        assert isinstance(cluster.cluster_for("find").loadbalance, LeastActiveLoadBalancer)  # consumer's own
        assert cluster.cluster_for("find").retries == 2
        registry.put_rule(KEY.service, "configurators", "theirs", "application = billing\nloadbalance = random")
        assert isinstance(cluster.cluster_for("find").loadbalance, LeastActiveLoadBalancer)
    finally:
        cluster.close()


# -- bad options fail at proxy creation ------------------------------------------------------------

@pytest.mark.parametrize("options, error, message", [
    ({"cluster": "nope"}, ExtensionNotFoundError, "installed: broadcast, failback, failcache"),
    ({"loadbalance": "nope"}, ExtensionNotFoundError, "installed: consistenthash"),
    ({"retries": -1}, ConfigurationError, "retries must be an integer >= 0"),
    ({"cluster": "forking", "forks": 0}, ConfigurationError, "forks must be an integer >= 1"),
    ({"loadbalance": "consistenthash", "hash.arguments": "first"}, ConfigurationError, "not an argument index"),
    ({"methods": {"find": {"loadbalance": "consistenthash", "hash.arguments": "-1"}}}, ConfigurationError,
     "not an argument index"),
    ({"methods": {"find": {"loadbalance": "fastest"}}}, ExtensionNotFoundError, "'fastest'"),
    ({"methods": {"find": {"colour": "red"}}}, ConfigurationError, "'colour' is not a per-method option"),
    ({"methods": {"find": {"cluster": "forking", "forks": 0}}}, ConfigurationError,
     "find.forks must be an integer >= 1"),
    ({"methods": ["find"]}, ConfigurationError, "methods= takes"),
])
def test_bad_options_fail_when_the_proxy_is_made(options, error, message) -> None:
    with govrpc.Client(f"memory://bad-{uuid.uuid4().hex[:8]}") as client:
        with pytest.raises(error, match=message):
            client.proxy("demo.Svc", **options)


def test_per_method_options_through_the_proxy() -> None:
    with govrpc.Client(f"memory://ok-{uuid.uuid4().hex[:8]}") as client:
        client.proxy("demo.Svc", methods={"find": {"loadbalance": "roundrobin", "idempotent": True}})
        reference = next(iter(client._references.values()))
        assert reference.url.params["find.loadbalance"] == "roundrobin"
        assert reference.url.params["find.idempotent"] == "true"
        cluster = reference.invoker
        while not isinstance(cluster, ConfiguredClusterInvoker):  # under the consumer filters
            cluster = cluster.next
        assert isinstance(cluster.cluster_for("find").loadbalance, RoundRobinLoadBalancer)
        assert cluster.cluster_for("find").idempotent is True


@pytest.mark.parametrize("text, message", [
    ("hash.arguments = 1,1", "names an argument twice"),
    ("failcache.period = inf", "positive number of seconds"),
    ("retry.backoff = nan", "number of seconds >= 0"),
    ("broadcast.fail.percent = 150", "percentage > 0 and <= 100"),
    ("find.timeout = 0", "positive number of seconds"),
])
def test_bad_cluster_option_values_are_rule_errors(text: str, message: str) -> None:
    from govrpc.configurator import parse_configurator
    from govrpc.exceptions import RuleError

    with pytest.raises(RuleError, match=message) as info:
        parse_configurator(text, "bad")
    assert info.value.position == text.index("=") + 2
