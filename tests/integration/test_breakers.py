"""Circuit breakers over real gRPC: trip, stay open (no provider hit), probe, recover, re-trip;
slow calls; what does not count; failover and every balancer leaving an open provider out."""

from __future__ import annotations

import json
import time
from concurrent.futures import wait
from typing import Any

import pytest

import govrpc
from govrpc.cli import main
from tests.helpers import wait_until
from tests.integration.degrade_services import Flaky
from tests.integration.services import OutOfStock


def breaker_of(client: govrpc.Client, address: str, method: str = "get") -> Any:
    for reference in list(client._references.values()):
        for endpoint in reference.directory.invokers:
            if endpoint.url.address == address and endpoint.state.breaker is not None:
                return endpoint.state.breaker.get(method)
    raise AssertionError(f"no breaker for {address}")


def test_trip_stay_open_probe_recover_and_retrip_with_exact_provider_hits(
        memory_registry, start_server, client_factory) -> None:
    flaky = Flaky("a")
    server = start_server(memory_registry, flaky)
    client = client_factory(memory_registry)
    proxy = client.proxy("test.Flaky", cluster="failfast", breaker={"failures": 3, "open": 0.6, "probes": 2})
    assert proxy.get() == "a" and flaky.hits == 1
    flaky.mode = "down"
    for _ in range(3):
        with pytest.raises(govrpc.ProviderUnavailableError):
            proxy.get()
    assert flaky.hits == 4
    for _ in range(5):  # open: refused at once, nothing reaches the provider
        with pytest.raises(govrpc.CircuitOpenError, match=r"test\.Flaky\.get") as caught:
            proxy.get()
    assert caught.value.code == "UNAVAILABLE"
    assert flaky.hits == 4
    breaker = breaker_of(client, f"127.0.0.1:{server.port}")
    assert breaker.current_state == "open"
    # half-open after the open time: a failed probe opens it again at once (one hit only)
    wait_until(lambda: breaker.admits(), timeout=5, what="the open time to pass")
    with pytest.raises(govrpc.ProviderUnavailableError):
        proxy.get()
    assert flaky.hits == 5 and breaker.current_state == "open" and breaker.transitions["open"] == 2
    with pytest.raises(govrpc.CircuitOpenError):
        proxy.get()
    assert flaky.hits == 5
    # half-open again with a slow, healthy provider: of five concurrent calls exactly two probe
    flaky.mode, flaky.delay = "ok", 0.3
    wait_until(lambda: breaker.admits(), timeout=5, what="the open time to pass")
    futures = [proxy.get.future() for _ in range(5)]
    wait(futures, timeout=5)
    answered = [f for f in futures if f.exception() is None]
    refused = [f for f in futures if isinstance(f.exception(), govrpc.CircuitOpenError)]
    assert len(answered) == 2 and len(refused) == 3
    assert flaky.hits == 7 and breaker.current_state == "closed"
    flaky.delay = 0.0
    assert [proxy.get() for _ in range(3)] == ["a"] * 3 and flaky.hits == 10


def test_error_ratio_trips_only_after_the_minimum_number_of_calls(memory_registry, start_server,
                                                                  client_factory) -> None:
    flaky = Flaky("a")
    start_server(memory_registry, flaky)
    client = client_factory(memory_registry)
    proxy = client.proxy("test.Flaky", cluster="failfast",
                         breaker={"ratio": 0.5, "min_calls": 6, "window": 30, "open": 30})
    outcomes = []
    for i in range(5):  # 3 failures of 5 calls: over the ratio, under the minimum
        flaky.mode = "down" if i % 2 == 0 else "ok"
        try:
            outcomes.append(proxy.get())
        except govrpc.ProviderUnavailableError:
            outcomes.append("down")
    assert outcomes == ["down", "a", "down", "a", "down"]
    flaky.mode = "ok"
    assert proxy.get() == "a"  # 3 of 6 = 0.5: checked on the next failure
    flaky.mode = "down"
    with pytest.raises(govrpc.ProviderUnavailableError):
        proxy.get()  # 4 of 7: open
    with pytest.raises(govrpc.CircuitOpenError):
        proxy.get()
    assert flaky.hits == 7


def test_slow_calls_trip_the_breaker(memory_registry, start_server, client_factory) -> None:
    flaky = Flaky("a")
    start_server(memory_registry, flaky)
    client = client_factory(memory_registry)
    proxy = client.proxy("test.Flaky", cluster="failfast",
                         breaker={"slow": 0.05, "slow.ratio": 0.5, "min_calls": 2, "open": 30})
    flaky.delay = 0.15
    assert proxy.get() == "a" and proxy.get() == "a"  # both answered, both slow
    with pytest.raises(govrpc.CircuitOpenError):
        proxy.get()
    assert flaky.hits == 2


@pytest.mark.parametrize("mode, error", [("business", OutOfStock), ("limited", govrpc.RateLimitedError)])
def test_business_errors_and_limit_refusals_never_count(memory_registry, start_server, client_factory,
                                                        mode: str, error: type[Exception]) -> None:
    flaky = Flaky("a")
    flaky.mode = mode
    start_server(memory_registry, flaky)
    client = client_factory(memory_registry)
    proxy = client.proxy("test.Flaky", cluster="failfast", breaker={"failures": 2, "ratio": 0.1, "min_calls": 2})
    for _ in range(6):
        with pytest.raises(error):
            proxy.get()
    assert flaky.hits == 6  # never opened


def test_business_errors_count_when_configured(memory_registry, start_server, client_factory) -> None:
    flaky = Flaky("a")
    flaky.mode = "business"
    start_server(memory_registry, flaky)
    proxy = client_factory(memory_registry).proxy("test.Flaky", cluster="failfast",
                                                  breaker={"failures": 2, "business": True})
    for _ in range(2):
        with pytest.raises(OutOfStock):
            proxy.get()
    with pytest.raises(govrpc.CircuitOpenError):
        proxy.get()
    assert flaky.hits == 2


def test_failover_never_spends_an_attempt_on_an_open_provider(memory_registry, start_server,
                                                              client_factory) -> None:
    bad, good = Flaky("bad"), Flaky("good")
    bad.mode = "down"
    bad_server = start_server(memory_registry, bad)
    start_server(memory_registry, good)
    client = client_factory(memory_registry)
    proxy = client.proxy("test.Flaky", retries=2, loadbalance="roundrobin", breaker={"failures": 1, "open": 30})
    wait_until(lambda: len(client.reference("test.Flaky", retries=2, loadbalance="roundrobin",
                                            breaker={"failures": 1, "open": 30}).directory.invokers) == 2, timeout=5)
    answers = [proxy.get() for _ in range(4)]
    assert answers == ["good"] * 4
    assert bad.hits == 1  # one failure opened it; no attempt after that
    assert breaker_of(client, f"127.0.0.1:{bad_server.port}").current_state == "open"
    assert [proxy.get() for _ in range(10)] == ["good"] * 10
    assert bad.hits == 1 and good.hits == 14
    assert breaker_of(client, f"127.0.0.1:{bad_server.port}").rejected == 0  # never even picked


@pytest.mark.parametrize("loadbalance", ["random", "roundrobin", "leastactive", "shortestresponse",
                                         "consistenthash", "sticky"])
def test_every_balancer_leaves_an_open_provider_out(memory_registry, start_server, client_factory,
                                                    loadbalance: str) -> None:
    bad, good = Flaky("bad"), Flaky("good")
    bad.mode = "down"
    bad_server = start_server(memory_registry, bad)
    start_server(memory_registry, good)
    options = dict(cluster="failfast", loadbalance=loadbalance, breaker={"failures": 1, "open": 30})
    for _ in range(50):  # sticky keeps its first pick: new consumers until one picks the bad one
        client = client_factory(memory_registry)
        reference = client.reference("test.Flaky", **options)
        wait_until(lambda: len(reference.directory.invokers) == 2, timeout=5)
        proxy = client.proxy("test.Flaky", **options)
        for i in range(200):  # until the bad one was picked once (and opened)
            try:
                proxy.get(i)
            except govrpc.ProviderUnavailableError:
                break
        if bad.hits:
            break
    assert bad.hits == 1
    before = good.hits
    assert [proxy.get(i) for i in range(20)] == ["good"] * 20  # failfast: one pick of the bad one would fail
    assert bad.hits == 1 and good.hits == before + 20
    assert breaker_of(client, f"127.0.0.1:{bad_server.port}").current_state == "open"


def test_every_provider_open_fails_at_once_naming_service_and_method(memory_registry, start_server,
                                                                     client_factory) -> None:
    one, two = Flaky("one"), Flaky("two")
    one.mode = two.mode = "down"
    start_server(memory_registry, one)
    start_server(memory_registry, two)
    client = client_factory(memory_registry)
    proxy = client.proxy("test.Flaky", retries=1, breaker={"failures": 1, "open": 30})
    wait_until(lambda: len(client.reference("test.Flaky", retries=1, breaker={"failures": 1, "open": 30})
                           .directory.invokers) == 2, timeout=5)
    with pytest.raises(govrpc.ProviderUnavailableError):
        proxy.get()  # two attempts, both providers opened
    assert one.hits == 1 and two.hits == 1
    with pytest.raises(govrpc.CircuitOpenError, match=r"test\.Flaky\.get.*open on every provider"):
        proxy.get()
    assert one.hits == 1 and two.hits == 1
    one.mode = two.mode = "ok"
    assert proxy.items() == {"items": ["real"]}  # another method has its own breakers


def test_breaker_off_and_per_method_settings(memory_registry, start_server, client_factory) -> None:
    flaky = Flaky("a")
    flaky.mode = "down"
    start_server(memory_registry, flaky)
    client = client_factory(memory_registry)
    proxy = client.proxy("test.Flaky", cluster="failfast", breaker="off", methods={"items": {"breaker.failures": 1}})
    for _ in range(4):
        with pytest.raises(govrpc.ProviderUnavailableError):
            proxy.get()
    with pytest.raises(govrpc.ProviderUnavailableError):
        proxy.items()
    with pytest.raises(govrpc.CircuitOpenError):
        proxy.items()
    assert flaky.hits == 5


def test_unconfigured_references_bind_no_breaker(memory_registry, start_server, client_factory) -> None:
    start_server(memory_registry, Flaky("a"))
    client = client_factory(memory_registry)
    client.proxy("test.Flaky").get()
    reference = client.reference("test.Flaky")
    assert reference.invoker is reference.cluster  # no reference filter either
    assert all(e.chain is e.transport and e.state.breaker is None for e in reference.directory.invokers)


@pytest.mark.parametrize("settings, key", [({"ratio": 1.5}, "breaker.ratio"), ({"open": -1}, "breaker.open"),
                                           ({"probes": 0}, "breaker.probes")])
def test_thresholds_out_of_range_are_refused_where_written(memory_registry, client_factory,
                                                           settings: dict[str, Any], key: str) -> None:
    client = client_factory(memory_registry)
    with pytest.raises(govrpc.ConfigurationError, match=key.replace(".", r"\.")):
        client.proxy("test.Flaky", breaker=settings)
    with govrpc.Admin(memory_registry) as admin, pytest.raises(govrpc.RuleError, match=key.replace(".", r"\.")):
        admin.set_override("test.Flaky", "b", f"{key} = {list(settings.values())[0]}")
    assert admin.rules("test.Flaky", "configurators") == {}


def test_a_configurator_switches_breakers_on_for_a_running_consumer(file_registry, start_server,
                                                                    client_factory) -> None:
    flaky = Flaky("a")
    start_server(file_registry, flaky)
    client = client_factory(file_registry)
    proxy = client.proxy("test.Flaky", cluster="failfast")
    assert proxy.get() == "a"
    flaky.mode = "down"
    with govrpc.Admin(file_registry) as admin:
        admin.set_override("test.Flaky", "breakers", "get.breaker.failures = 2\nget.breaker.open = 30")

        def opened() -> bool:
            try:
                proxy.get()
            except govrpc.CircuitOpenError:
                return True
            except govrpc.ProviderUnavailableError:
                pass
            return False

        wait_until(opened, timeout=5, what="the breaker to open")


def test_breaker_states_are_published_for_admin_and_the_cli(file_registry, start_server, client_factory,
                                                            capsys: Any) -> None:
    _published(file_registry, start_server, client_factory, capsys)


def test_breaker_states_are_published_on_zookeeper(zk_url, start_server, client_factory, capsys: Any) -> None:
    _published(zk_url(), start_server, client_factory, capsys)


def _published(file_registry: str, start_server: Any, client_factory: Any, capsys: Any) -> None:
    flaky = Flaky("a")
    flaky.mode = "down"
    server = start_server(file_registry, flaky)
    client = client_factory(file_registry, application="web")
    proxy = client.proxy("test.Flaky", cluster="failfast", breaker={"failures": 1, "open": 0.5, "probes": 1})
    with pytest.raises(govrpc.ProviderUnavailableError):
        proxy.get()
    with govrpc.Admin(file_registry) as admin:
        documents = wait_until(lambda: admin.breakers("test.Flaky"), timeout=5, what="published states")
        [document] = documents
        assert document["consumer"].startswith("web@")
        [entry] = document["breakers"]
        assert entry["state"] == "open" and entry["method"] == "get"
        assert entry["address"] == f"127.0.0.1:{server.port}"
        assert abs(entry["since"] - time.time()) < 60
        assert main(["breakers", "test.Flaky", "--registry", file_registry]) == 0
        assert "open" in capsys.readouterr().out
        assert main(["breakers", "test.Flaky", "--json", "--registry", file_registry]) == 0
        assert json.loads(capsys.readouterr().out)[0]["breakers"][0]["state"] == "open"
        flaky.mode = "ok"  # recovery: the entry goes
        wait_until(lambda: breaker_of(client, f"127.0.0.1:{server.port}").admits(), timeout=5)
        assert proxy.get() == "a"
        wait_until(lambda: admin.breakers("test.Flaky") == [], timeout=5, what="the entry to go")
        flaky.mode = "down"
        with pytest.raises(govrpc.ProviderUnavailableError):
            proxy.get()
        wait_until(lambda: admin.breakers("test.Flaky"), timeout=5)
        client.close()  # a closing consumer removes its node
        assert admin.breakers("test.Flaky") == []


def test_the_call_recorder_hears_which_providers_were_left_out(memory_registry, start_server,
                                                               client_factory) -> None:
    from govrpc.context import _RECORDER, CallRecorder

    class Recorder(CallRecorder):
        def __init__(self) -> None:
            self.events: list[tuple[str, dict[str, object]]] = []

        def event(self, name: str, attributes: dict[str, object]) -> None:
            self.events.append((name, attributes))

    bad, good = Flaky("bad"), Flaky("good")
    bad.mode = "down"
    bad_server = start_server(memory_registry, bad)
    start_server(memory_registry, good)
    client = client_factory(memory_registry)
    options = dict(retries=2, loadbalance="roundrobin", breaker={"failures": 1, "open": 30})
    wait_until(lambda: len(client.reference("test.Flaky", **options).directory.invokers) == 2, timeout=5)
    proxy = client.proxy("test.Flaky", **options)
    for _ in range(3):
        proxy.get()
    recorder = Recorder()
    token = _RECORDER.set(recorder)
    try:
        assert proxy.get() == "good"
    finally:
        _RECORDER.reset(token)
    assert ("govrpc.breaker.open", {"method": "get", "skipped": f"127.0.0.1:{bad_server.port}"}) in recorder.events
